"""What MLA and MoE run on a CPU, measured and consulted: MLA's absorbed decode attention (every head over one
cached latent) and the few-token GEMMs of an expert loop are kernel rows of their own; the fit gives decode
attention its own compute fraction when those rows separate it from the KV read; the cost model times the
harness's decode attention and expert loop from the capture's rows."""

import csv

import numpy as np
import pytest

from planner.calibrate.kernel_fit import BOUNDS, KernelData, fit_capture, predict
from planner.costmodel.plans import make_plans
from planner.costmodel.profile import KernelProfile
from planner.costmodel.step import CostModel, Op, Step
from planner.harness.capture import KERNEL_COLUMNS
from planner.harness.grids import make_grid, mla_decode_shapes
from planner.harness.refmodels import mla, moe
from planner.specs.engine import Engine
from planner.specs.hardware import Hardware

PEAK, BW = 100e9, 20e9  # a small CPU: fp32 GEMM peak (FLOP/s) and streaming bandwidth (bytes/s)
TRUE = {"matmul:fp32": 0.9, "half_m": 12.0, "memory": 0.8, "attention": 0.25, "kv_read": 0.2, "kernel_s": 1.5e-6,
        "elementwise": 0.02, "attention_decode": 0.08}
MLA_SHAPE = (16, 288, 256)  # heads, latent (kv_lora_rank + rope), values (kv_lora_rank)


def decode_row(b, L, heads, kvh, d, dv):
    shared = dv < d  # MLA: the values are the latent's first dv dims, read once
    kv = b * L * kvh * (d if shared else d + dv) * 4
    return {"op": "attn_decode", "batch": b, "heads": heads, "kv_heads": kvh, "head_dim": d, "head_dim_v": dv,
            "seq_q": 1, "seq_kv": L, "flops": 2 * b * heads * L * (d + dv), "bytes": kv + b * heads * (d + dv) * 4}


def rows(mla_rows=True):
    out = []
    for n, k in ((4096, 4096), (1536, 1024), (1024, 768), (768, 512)):
        for m in (1, 8, 64, 256):
            out.append({"op": "gemm", "m": m, "n": n, "k": k, "flops": 2 * m * n * k, "bytes": (m * k + k * n + m * n) * 4})
    for s in (128, 512):
        out.append({"op": "attn_prefill", "batch": 1, "heads": 32, "kv_heads": 8, "head_dim": 128, "head_dim_v": 128,
                    "seq_q": s, "seq_kv": s, "flops": 4 * 32 * 128 * s * (s + 1) // 2, "bytes": s * 128 * 80 * 4})
    for b, L in ((1, 256), (8, 256), (1, 2048), (8, 2048)):
        out.append(decode_row(b, L, 32, 8, 128, 128))
        if mla_rows:
            out.append(decode_row(b, L, MLA_SHAPE[0], 1, MLA_SHAPE[1], MLA_SHAPE[2]))
    for op, nbytes in (("copy", 2 << 27), ("read", 1 << 27), ("write", 1 << 27)):
        out.append({"op": op, "m": nbytes // 4, "bytes": nbytes})
    for m in (1, 256):
        for op, n, fpe, passes in (("rmsnorm", 4096, 4, 2), ("silu_mul", 14336, 5, 3), ("add", 4096, 1, 3)):
            out.append({"op": op, "m": m, "n": n, "flops": fpe * m * n, "bytes": passes * m * n * 4})
    calls = {"attn_prefill": 11, "attn_decode": 8, "rmsnorm": 7, "silu_mul": 5}
    return [r | {"backend": "numpy", "device": "cpu", "dtype": "fp32", "calls": calls.get(r["op"], 1)} for r in out]


def write(folder, rs, times):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "kernels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, KERNEL_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r, t in zip(rs, times):
            w.writerow(r | {"repeats": 5, "median_s": t, "p10_s": t, "p90_s": t, "threads": 2, "busy": 0})
    (folder / "meta.yaml").write_text("device: cpu\nstatus: complete\nlast_level_cache_bytes: 33554432\n")


def true_times(rs, params=TRUE):
    d = KernelData.of([r | {"median_s": "1"} for r in rs])
    return predict(d, {"fp32": PEAK}, BW, params)


def test_mla_decode_rows_read_the_latent_once():
    """An absorbed-MLA row reads b x L x latent elements (the values are a slice of it), a GQA row K and V."""
    d = KernelData.of([decode_row(2, 100, *MLA_SHAPE[:1], 1, *MLA_SHAPE[1:]) | {"dtype": "fp32", "median_s": "1"},
                       decode_row(2, 100, 32, 8, 128, 128) | {"dtype": "fp32", "median_s": "1"}])
    assert d.kv_bytes[0] == 2 * 100 * MLA_SHAPE[1] * 4
    assert d.kv_bytes[1] == 2 * 100 * 8 * (128 + 128) * 4


def test_decode_attention_gets_its_own_compute_fraction_when_mla_rows_separate_it(tmp_path):
    rs = rows()
    write(tmp_path / "cap", rs, true_times(rs))
    fit = fit_capture(tmp_path / "cap")
    assert "attention_decode" in fit.params
    lo, hi = BOUNDS["attention_decode"]
    assert lo <= fit.params["attention_decode"] <= hi
    # fractions are relative to the capture's own fastest GEMM, so compare their ratio to the truth's
    ratio = fit.params["attention_decode"] / fit.params["attention"]
    assert ratio == pytest.approx(TRUE["attention_decode"] / TRUE["attention"], rel=0.05)
    assert fit.residuals["attn_decode"]["median_ape"] < 0.02 and fit.residuals["attn_prefill"]["median_ape"] < 0.02


def test_without_mla_rows_decode_shares_the_attention_fraction(tmp_path):
    """Grouped-query rows alone are KV-read bound: they cannot tell a decode compute ceiling apart."""
    rs = rows(mla_rows=False)
    write(tmp_path / "cap", rs, true_times(rs, {k: v for k, v in TRUE.items() if k != "attention_decode"}))
    assert "attention_decode" not in fit_capture(tmp_path / "cap").params


def _profile(tmp_path, rs, times):
    write(tmp_path / "cap", rs, times)
    return KernelProfile.load(tmp_path / "cap")


def test_decode_attention_lookup(tmp_path):
    rs = [r | {"dtype": "fp32"} for r in rows() if r["op"] == "attn_decode"]
    t = np.array([1e-4 * (1 + r["flops"] / 1e8) for r in rs])  # a fixed cost plus a FLOP rate
    prof = _profile(tmp_path, rs, t)
    g_mla, d, dv = MLA_SHAPE[0], MLA_SHAPE[1], MLA_SHAPE[2]
    for r, ti in zip(rs, t):  # measured points come back as measured, in their own family
        g = r["heads"] / r["kv_heads"]
        got, src = prof.decode_attention_time(r["flops"], g, r["head_dim"], r["head_dim_v"], "fp32")
        assert src == 1 and float(got) == pytest.approx(ti, rel=1e-9)
    # between two measured FLOP counts of a family: log-log interpolation, between the neighbours
    f1, f2 = 2 * 1 * g_mla * 256 * (d + dv), 2 * 1 * g_mla * 2048 * (d + dv)
    mid, src = prof.decode_attention_time(np.sqrt(f1 * f2), g_mla, d, dv, "fp32")
    t1, _ = prof.decode_attention_time(f1, g_mla, d, dv, "fp32")
    t2, _ = prof.decode_attention_time(f2, g_mla, d, dv, "fp32")
    assert src == 2 and float(mid) == pytest.approx(float(np.sqrt(t1 * t2)), rel=1e-9)
    # a grouped-query shape nobody measured (g = 4, 128 wide) borrows the measured g = 4 family's rate
    got, src = prof.decode_attention_time(f2, 4, 128, 128, "fp32")
    ref, _ = prof.decode_attention_time(f2, 4.0, 128, 128, "fp32")
    assert src in (1, 2) and float(got) == float(ref)
    _, src = prof.decode_attention_time(f2, 6, 128, 128, "fp32")
    assert src == 3
    # below the smallest row measured: nothing (the roofline and its per-op gap take over)
    got, _ = prof.decode_attention_time(f1 / 10, g_mla, d, dv, "fp32")
    assert np.isnan(got)


def test_expert_loop_time_is_its_few_token_gemms_per_expert(tmp_path):
    """BLAS runs m = 1 as a matrix-vector product and m >= 2 as a packed GEMM: a loop over experts at 2 tokens
    each costs the m = 2 rows, far more than interpolating between m = 1 and m = 8 would say."""
    shapes = ((1024, 768), (768, 512))  # gate+up and down of an expert of width 512 on hidden 768
    rs, t = [], []
    for n, k in shapes:
        for m in (1, 2, 4, 8):
            rs.append({"op": "gemm", "dtype": "fp32", "m": m, "n": n, "k": k, "flops": 2 * m * n * k,
                       "bytes": (m * k + k * n) * 4})
            t.append(n * k * 4 / BW * (1.0 if m == 1 else 2.0 + 0.05 * m))  # gemv streams; gemm packs then computes
    prof = _profile(tmp_path, rs, t)
    expert = 3 * 768 * 512
    got, src = prof.experts_time(2.0, 7.0, expert, 3, "fp32")
    assert src == 1
    assert float(got) == pytest.approx(7.0 * (t[1] + t[5]), rel=1e-9)
    loglog = np.exp(np.log(t[0]) + np.log(2) / np.log(8) * np.log(t[3] / t[0]))  # what m = 1..8 alone would say
    assert float(got) > 7.0 * 1.2 * loglog


def _hardware():
    return Hardware.model_validate({
        "id": "cpu-test", "name": "test CPU", "vendor": "measured", "kind": "cpu",
        "memory": {"capacity": {"value": 16e9, "source": "test"}, "bandwidth": {"value": BW, "source": "test"}},
        "peak_flops": {"fp32": {"value": PEAK, "source": "test"}},
        "achievable": {"matmul": {"fp32": {"fraction": 0.9, "source": "test"}}, "memory": {"fraction": 0.8, "source": "test"},
                       "attention": {"fraction": 0.25, "source": "test"}, "kv_read": {"fraction": 0.2, "source": "test"},
                       "matmul_half_m": 12.0}})


def test_cost_model_times_mla_decode_attention_from_the_capture(tmp_path):
    model = mla(1024)
    H, latent, dv = mla_decode_shapes([model])[0]
    rs = [r | {"dtype": "fp32"} for r in rows() if r["op"] == "attn_decode" and r["kv_heads"] == 1]
    assert {(r["heads"], r["head_dim"], r["head_dim_v"]) for r in rs} == {(H, latent, dv)}
    t = np.array([3e-5 + r["flops"] / 9e9 for r in rs])  # a one-thread einsum: a FLOP rate, not the KV read
    prof = _profile(tmp_path, rs, t)
    hw = _hardware()
    plans = make_plans(model, hw, weights="fp32", kv="fp32", engine="harness")
    cm = CostModel(model, hw, engine=Engine(id="harness", runtime_bytes=0.0, grouped_moe_gemm=False), profile=prof)
    for r, ti in zip(rs, t):
        att = cm.step(plans, Step(decode_seqs=r["batch"], decode_ctx=r["seq_kv"])).op(Op.ATTENTION)
        assert float(att.time_s.ravel()[0]) == pytest.approx(ti, rel=1e-9) and att.source == "measured"
    # prefill is not what the decode rows measured: the roofline stays
    plain = CostModel(model, hw, engine=Engine(id="harness", runtime_bytes=0.0, grouped_moe_gemm=False))
    pre = Step(prefill_seqs=1, prefill_tokens=256)
    assert float(cm.step(plans, pre).op(Op.ATTENTION).time_s.ravel()[0]) == float(plain.step(plans, pre).op(Op.ATTENTION).time_s.ravel()[0])


def test_cost_model_times_an_expert_loop_from_the_capture(tmp_path):
    model = moe(768)
    mo, h = model.moe, model.hidden_size
    e = mo.expert_intermediate_size
    rs, t = [], []
    for n, k in ((2 * e, h), (h, e)):
        for m in (1, 2, 4, 8, 16, 64):
            rs.append({"op": "gemm", "dtype": "fp32", "m": m, "n": n, "k": k, "flops": 2 * m * n * k, "bytes": (m * k + k * n) * 4})
            t.append(2e-6 + n * k * 4 / BW + 2 * m * n * k / 50e9)
    prof = _profile(tmp_path, rs, t)
    hw = _hardware()
    plans = make_plans(model, hw, weights="fp32", kv="fp32", engine="harness")
    cm = CostModel(model, hw, engine=Engine(id="harness", runtime_bytes=0.0, grouped_moe_gemm=False), profile=prof)
    T = 8  # decode batch: tokens x top-k spread over the experts a batch touches (uniform routing)
    touched = mo.num_experts * (1 - (1 - mo.top_k / mo.num_experts) ** T)
    m_pe = T * mo.top_k / touched
    experts = cm.step(plans, Step(decode_seqs=T, decode_ctx=128)).op(Op.EXPERTS)
    up, _ = prof.gemm_time(m_pe, 2 * e * h, "fp32")
    down, _ = prof.gemm_time(m_pe, e * h, "fp32")
    gemms = touched * (float(up) + float(down))
    loop = float(experts.launches.ravel()[0]) - 1.0  # the loop's other calls, each paying the per-op gap
    assert float(experts.time_s.ravel()[0]) == pytest.approx(gemms + loop * cm.kernel_s, rel=1e-9)
    assert experts.source == "interpolated"


def test_quick_grid_measures_what_mla_and_moe_run():
    from planner.harness.kernels import attention_cases, gemm_cases, Slot
    from planner.harness.backends import NumpyOps
    from planner.specs.loader import get_model

    grid = make_grid("quick", get_model("llama-3.1-8b"), 32 << 20)
    ref_moe = next(m for m in grid.e2e_models if m.moe)
    e, h = ref_moe.moe.expert_intermediate_size, ref_moe.hidden_size
    ops = NumpyOps("fp32", 1)
    try:
        gemms = [c.row for c in gemm_cases(ops, grid, np.random.default_rng(0), Slot())]
        attn = [c.row for c in attention_cases(ops, get_model("llama-3.1-8b"), grid, np.random.default_rng(0), Slot())]
    finally:
        ops.close()
    for n, k in ((2 * e, h), (h, e)):  # the expert loop's per-expert m (tokens x top-k / experts touched)
        assert {1, 2, 4, 8, 16} <= {r["m"] for r in gemms if (r["n"], r["k"]) == (n, k)}
    ref_mla = next(m for m in grid.e2e_models if m.attention.mla)
    ml = ref_mla.attention.mla
    mla_rows = [r for r in attn if r["op"] == "attn_decode" and r["kv_heads"] == 1]
    assert len(mla_rows) == len(grid.attn_decode)
    for r in mla_rows:
        assert (r["heads"], r["head_dim"], r["head_dim_v"]) == (ref_mla.num_heads, ml.kv_lora_rank + ml.qk_rope_head_dim,
                                                               ml.kv_lora_rank)
        assert r["flops"] == 2 * r["batch"] * r["heads"] * r["seq_kv"] * (r["head_dim"] + r["head_dim_v"])
