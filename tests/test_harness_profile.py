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
    # below the smallest row measured: that row's time (its fixed costs do not shrink with the work)
    got, src = prof.decode_attention_time(f1 / 10, g_mla, d, dv, "fp32")
    assert src == 2 and float(got) == pytest.approx(float(t1), rel=1e-9)


def _expert_rows(h, e, t_of_m, ms=range(1, 33)):
    """gemm rows of one expert's gate+up (2e x h) and down (h x e) at every m, timed by t_of_m(m, n, k)."""
    rs, t = [], []
    for n, k in ((2 * e, h), (h, e)):
        for m in ms:
            rs.append({"op": "gemm", "dtype": "fp32", "m": m, "n": n, "k": k, "flops": 2 * m * n * k,
                       "bytes": (m * k + k * n) * 4})
            t.append(t_of_m(m, n, k))
    return rs, t


def _gemv_then_gemm(m, n, k):
    """BLAS streams the weight once at m = 1 (matrix-vector); from m = 2 it packs, then computes; m beyond a multiple
    of 4 runs slower remainder code."""
    base = n * k * 4 / BW
    return base if m == 1 else base * (2.0 + 0.05 * m + (0.3 if m % 4 else 0.0))


def test_routed_counts_are_the_binomial_of_uniform_top_k_routing():
    from planner.costmodel.profile import routed_counts

    for T, E, k in ((1, 8, 2), (8, 8, 2), (64, 8, 2), (300, 64, 6)):
        j, pj = routed_counts(T, E, k)
        assert np.all(j >= 1) and np.all(pj >= 0)
        assert pj.sum() == pytest.approx(1 - (1 - k / E) ** T, rel=1e-9)  # chance an expert is touched
        assert (j * pj).sum() == pytest.approx(T * k / E, rel=1e-9)  # assignments per expert
    j, pj = routed_counts(5, 4, 4)  # every token picks every expert
    assert list(j) == [5.0] and list(pj) == [1.0]
    assert len(routed_counts(0, 8, 2)[0]) == 0


def test_expert_loop_time_is_the_expected_time_of_the_routed_counts(tmp_path):
    """An expert loop's GEMM time under uniform top-k routing, checked against drawing the routing itself: each token
    picks k distinct experts, each expert runs its GEMMs over the tokens it got. A one-token expert runs the cheap
    matrix-vector path, so the mean count alone (m = T k / touched) misprices a small batch."""
    h, e, E, k = 768, 512, 8, 2
    rs, t = _expert_rows(h, e, _gemv_then_gemm)
    prof = _profile(tmp_path, rs, t)
    expert = 3 * h * e
    rng = np.random.default_rng(0)
    for T in (1, 4, 8, 16):
        got, src = prof.expert_loop_time(T, E, k, E, expert, 3, "fp32")
        assert src == 1  # every count measured
        draws = []
        for _ in range(4000):
            counts = np.bincount(np.argsort(rng.random((T, E)), axis=1)[:, :k].ravel(), minlength=E)
            draws.append(sum(_gemv_then_gemm(c, 2 * e, h) + _gemv_then_gemm(c, h, e) for c in counts if c))
        assert float(got) == pytest.approx(np.mean(draws), rel=0.02)
    T = 8
    touched = E * (1 - (1 - k / E) ** T)
    m_mean = T * k / touched
    at_mean = touched * (np.interp(m_mean, range(1, 33), t[:32]) + np.interp(m_mean, range(1, 33), t[32:]))
    assert abs(float(prof.expert_loop_time(T, E, k, E, expert, 3, "fp32")[0]) / at_mean - 1) > 0.05


def test_moe_loop_rows_are_looked_up_by_shape_and_tokens(tmp_path):
    h, f, E, k = 768, 512, 8, 2
    rs = [{"op": "moe_loop", "dtype": "fp32", "m": T, "n": h, "k": f, "heads": E, "kv_heads": k} for T in (1, 4, 16, 64)]
    t = [1e-4 + 3e-6 * r["m"] for r in rs]  # a fixed part (top-k, a test per expert) and a part per token
    prof = _profile(tmp_path, rs, t)
    for r, ti in zip(rs, t):
        got, src = prof.moe_loop_time(r["m"], h, f, E, k, "fp32")
        assert src == 1 and float(got) == pytest.approx(ti, rel=1e-9)
    mid, src = prof.moe_loop_time(8, h, f, E, k, "fp32")  # log-log between 4 and 16 tokens
    assert src == 2 and float(mid) == pytest.approx(np.sqrt(t[1] * t[2]), rel=1e-9)
    above, _ = prof.moe_loop_time(128, h, f, E, k, "fp32")  # beyond the rows: the largest row's time per token
    assert float(above) == pytest.approx(2 * t[3], rel=1e-9)
    assert float(prof.moe_loop_time(0, h, f, E, k, "fp32")[0]) == 0.0
    for other in ((1024, f, E, k), (h, 256, E, k), (h, f, 16, k), (h, f, E, 1)):  # no rows of another shape
        got, src = prof.moe_loop_time(16, *other, "fp32")
        assert src == 0 and np.isnan(got)


def test_the_moe_loop_row_runs_the_layers_loop_less_its_gemms():
    """The harness's moe_loop row calls the transformer's own routing and expert loop, with GEMMs that hand back a
    ready output: same calls, same shapes, no GEMM arithmetic. With real GEMMs the same loop is the MoE layer."""
    from planner.harness.backends import NumpyOps
    from planner.harness.kernels import Slot, moe_loop_cases
    from planner.harness.transformer import Config, Transformer, expert_loop, route

    model = moe(256)
    grid = make_grid("tiny", model, 32 << 20)
    assert grid.moe_loop and all(mo.moe for mo in grid.e2e_models if mo.id.startswith("ref-moe"))
    ops = NumpyOps("fp32", 1)
    try:
        cases = moe_loop_cases(ops, grid, np.random.default_rng(0), Slot())
        assert len(cases) == len(grid.moe_loop) * len(grid.moe_tokens)
        for c in cases:
            assert c.row["op"] == "moe_loop" and (c.row["n"], c.row["k"], c.row["heads"], c.row["kv_heads"]) in grid.moe_loop
            c.prepare()()  # runs
        cfg = Config.from_model(model)
        net = Transformer(cfg, ops, seed=0)
        layer = net.layers[0]
        x = np.random.default_rng(1).standard_normal((5, cfg.dim)).astype(np.float32)
        weights, chosen = route(ops, x @ layer.router, cfg.top_k)
        loop = expert_loop(ops, x, weights, chosen, layer.experts, net._mlp(x, *layer.shared))
        assert np.array_equal(loop, net._moe(layer, x))
        by_hand = net._mlp(x, *layer.shared)
        for t in range(5):  # each token: its experts' MLPs weighted by the softmax over its chosen logits
            for slot in range(cfg.top_k):
                w13, w2 = layer.experts[chosen[t, slot]]
                by_hand[t] += weights[t, slot] * net._mlp(x[t:t + 1], w13, w2)[0]
        assert np.allclose(loop, by_hand, rtol=1e-5, atol=1e-5)
    finally:
        ops.close()


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
    """With GEMM rows of the expert shapes the loop's GEMMs are their expected time over the routed counts, and their
    calls pay no gap (their rows hold their host time); with moe_loop rows as well, the routing and the loop's other
    calls are that row, and nothing of the layer pays a gap on top. Without a profile the loop keeps its calls' gaps."""
    from planner.costmodel.step import LOOP_CALLS_PER_EXPERT

    model = moe(768)
    mo, h = model.moe, model.hidden_size
    e, E, k = mo.expert_intermediate_size, mo.num_experts, mo.top_k
    rs, t = _expert_rows(h, e, _gemv_then_gemm)
    for n, kk in ((E, h), (2 * e * mo.num_shared_experts, h), (h, e * mo.num_shared_experts)):  # router, shared
        for m in (1, 8, 64):
            rs.append({"op": "gemm", "dtype": "fp32", "m": m, "n": n, "k": kk, "flops": 2 * m * n * kk, "bytes": (m * kk + kk * n) * 4})
            t.append(2e-6 + n * kk * 4 / BW)
    loop_rows = [{"op": "moe_loop", "dtype": "fp32", "m": T, "n": h, "k": e, "heads": E, "kv_heads": k} for T in (1, 8, 64)]
    loop_t = [5e-5 + 2e-6 * r["m"] for r in loop_rows]
    hw = _hardware()
    plans = make_plans(model, hw, weights="fp32", kv="fp32", engine="harness")
    engine = Engine(id="harness", runtime_bytes=0.0, grouped_moe_gemm=False)
    T = 8  # decode batch
    touched = E * (1 - (1 - k / E) ** T)
    st = Step(decode_seqs=T, decode_ctx=128)

    gemms_only = _profile(tmp_path / "a", rs, t)
    cm = CostModel(model, hw, engine=engine, profile=gemms_only)
    experts = cm.step(plans, st).op(Op.EXPERTS)
    expected, _ = gemms_only.expert_loop_time(T, E, k, E, model.expert_params(), 3, "fp32")
    calls = E + touched * (LOOP_CALLS_PER_EXPERT - 2)  # membership tests and the calls besides the two GEMMs
    assert float(experts.launches.ravel()[0]) == pytest.approx(calls, rel=1e-9)
    assert float(experts.time_s.ravel()[0]) == pytest.approx(float(expected) + (calls - 1) * cm.kernel_s, rel=1e-9)
    assert experts.source == "measured"

    both = _profile(tmp_path / "b", rs + loop_rows, t + loop_t)
    cm = CostModel(model, hw, engine=engine, profile=both)
    cost = cm.step(plans, st)
    permute, experts, router = cost.op(Op.MOE_PERMUTE), cost.op(Op.EXPERTS), cost.op(Op.ROUTER)
    assert float(permute.time_s.ravel()[0]) == pytest.approx(loop_t[1], rel=1e-9) and permute.source == "measured"
    assert float(experts.time_s.ravel()[0]) == pytest.approx(float(expected), rel=1e-9)
    for o in (permute, experts, router):
        assert float(np.ravel(o.launches)[0]) == 1.0

    plain = CostModel(model, hw, engine=engine)  # no capture: the loop's every call pays the gap
    experts = plain.step(plans, st).op(Op.EXPERTS)
    assert float(experts.launches.ravel()[0]) == pytest.approx(E + touched * LOOP_CALLS_PER_EXPERT, rel=1e-9)


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
    for n, k in ((2 * e, h), (h, e)):  # every count of tokens an expert of the loop gets, up to 32
        assert set(range(1, 33)) <= {r["m"] for r in gemms if (r["n"], r["k"]) == (n, k)}
    ref_mla = next(m for m in grid.e2e_models if m.attention.mla)
    ml = ref_mla.attention.mla
    mla_rows = [r for r in attn if r["op"] == "attn_decode" and r["kv_heads"] == 1]
    assert len(mla_rows) == len(grid.attn_decode)
    for r in mla_rows:
        assert (r["heads"], r["head_dim"], r["head_dim_v"]) == (ref_mla.num_heads, ml.kv_lora_rank + ml.qk_rope_head_dim,
                                                               ml.kv_lora_rank)
        assert r["flops"] == 2 * r["batch"] * r["heads"] * r["seq_kv"] * (r["head_dim"] + r["head_dim_v"])
