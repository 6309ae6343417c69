"""The per-SM streaming ceiling (kernel parameter ``sm_stream``, engine setting ``sm_stream_limited``).

Little's law: a kernel that keeps B bytes in flight per SM streams at most B / latency per SM, so an engine whose
memory-bound kernels keep few bytes in flight (llama.cpp's 2023-24 CUDA builds) cannot use the bandwidth an HBM GPU
has per SM. The ceiling is SMs x sm_stream bytes/s beside the STREAM bandwidth, only for engines that declare it."""

from dataclasses import replace

import numpy as np
import pytest

from planner.costmodel.params import PARAM_BY_NAME, builtin_calibration, kernels_for
from planner.costmodel.plans import make_plans
from planner.costmodel.step import CostModel, Step
from planner.specs.engine import get_engine, profiles
from planner.specs.loader import get_hardware, get_model


def _stream(hw):
    """The device's STREAM copy bandwidth, bytes/s."""
    return hw.memory_bandwidth_bytes_per_s * hw.achievable.memory.fraction


def test_the_ceiling_is_sms_times_the_per_sm_rate_and_binds_only_below_stream():
    eng = get_engine("llamacpp@unpinned")
    assert eng.sm_stream_limited
    a100, rtx4090 = get_hardware("a100-pcie-80gb"), get_hardware("rtx-4090")
    m = get_model("llama-3-8b")
    for hw in (a100, rtx4090):
        k = kernels_for(eng, hw).with_values(sm_stream=1.0e10)  # 10 GB/s a SM
        cm = CostModel(m, hw, engine=eng, kernels=k)
        # units: SMs x (bytes/s per SM) = bytes/s
        assert cm.sm_stream_cap == pytest.approx(hw.sm_count.value * 1.0e10)
        assert cm.bw == pytest.approx(min(_stream(hw) * k.memory, cm.sm_stream_cap))
    # the A100 PCIe (HBM2e, 1,935 GB/s over 108 SMs: 14 GB/s of STREAM a SM) is held to 1.08 TB/s; the RTX 4090
    # (GDDR6X, 1,008 GB/s over 128 SMs: 6.7 a SM) keeps its STREAM rate
    assert CostModel(m, a100, engine=eng, kernels=kernels_for(eng, a100).with_values(sm_stream=1.0e10)).bw == \
        pytest.approx(1.08e12)
    assert CostModel(m, rtx4090, engine=eng, kernels=kernels_for(eng, rtx4090).with_values(sm_stream=1.0e10)).bw == \
        pytest.approx(_stream(rtx4090))


def test_a_batch1_decode_step_slows_by_the_bandwidth_ratio_only_on_the_capped_part():
    """Batch-1 decode reads every weight once: where the ceiling binds, its weight-streaming time grows by STREAM /
    ceiling; the per-kernel host gaps and the compute do not change, so the whole step grows by less."""
    m = get_model("llama-3-8b")
    hw = get_hardware("a100-pcie-80gb")
    eng = get_engine("llamacpp@unpinned").for_hardware(hw)
    off = replace(eng, sm_stream_limited=False)
    k = kernels_for(eng, hw).with_values(sm_stream=1.0e10)
    p = make_plans(m, hw, tp=1, weights="fp16", kv="fp16", check=False, engine=eng)
    step = Step(decode_seqs=1, decode_ctx=512)
    on_cost = CostModel(m, hw, engine=eng, kernels=k).step(p, step)
    off_cost = CostModel(m, hw, engine=off, kernels=k).step(p, step)
    t_on, t_off = float(np.ravel(on_cost.time_s)[0]), float(np.ravel(off_cost.time_s)[0])
    ratio = _stream(hw) * k.memory / (108 * 1.0e10)
    assert ratio > 1.3
    assert 1.0 < t_on / t_off < ratio
    # the 16 GB of weights alone take at least their bytes over the ceiling
    assert t_on >= 15e9 / (108 * 1.0e10)


def test_engines_that_do_not_declare_it_stream_at_stream_and_carry_no_value():
    """TensorRT-LLM, vLLM and SGLang keep their STREAM bandwidth on every part; their calibration files hold no
    sm_stream (no row of theirs could inform one), the 2023-24 llama.cpp builds' file does, within its bounds."""
    hw = get_hardware("h100-sxm")
    m = get_model("llama-3-8b")
    for name in ("trtllm@0.14", "vllm@0.15", "sglang@0.5", "llamacpp@b3000"):
        eng = get_engine(name)
        assert not eng.sm_stream_limited
        cm = CostModel(m, hw, engine=eng)
        assert cm.sm_stream_cap is None
    cal = builtin_calibration()
    spec = PARAM_BY_NAME["sm_stream"]
    for key, c in cal.items():
        eng = profiles()[key]
        has = "sm_stream" in c.engine_wide
        assert has == bool(eng.sm_stream_limited), key
        if has:
            assert spec.lo <= c.engine_wide["sm_stream"][0] <= spec.hi


def test_devices_without_an_sm_count_have_no_ceiling():
    """Apple's GPUs have no SM count in their spec (and run Metal kernels): nothing caps them."""
    eng = get_engine("llamacpp@unpinned")
    hw = get_hardware("m2-ultra")
    assert getattr(hw, "sm_count", None) is None
    assert CostModel(get_model("llama-3-8b"), hw, engine=eng).sm_stream_cap is None


def test_the_fitted_ceiling_binds_on_the_hbm_gpus_and_on_no_gddr_part_with_rows():
    """The physics the fit found: with the fitted per-SM rate, the ceiling sits below STREAM on the three HBM GPUs the
    2023-24 builds have rows on that feed each SM more than it (A100s, H100 PCIe: 15-18 GB/s of STREAM an SM) and above
    it on every GDDR NVIDIA part they have rows on, and on the V100 (HBM2 over 80 SMs: 9.7 GB/s an SM)."""
    from planner.calibrate.published_fit import load_rows
    from planner.calibrate.validate import builtin_published

    eng = get_engine("llamacpp@unpinned")
    rows = load_rows(builtin_published())[0]
    devices = sorted({r.hardware for r in rows if r.engine == "llamacpp@unpinned"})
    hbm, gddr = [], []
    for d in devices:
        hw = get_hardware(d)
        if hw.vendor != "nvidia" or getattr(hw, "sm_count", None) is None:
            continue
        cap = CostModel(get_model("llama-3-8b"), hw, engine=eng).sm_stream_cap
        (hbm if "HBM" in hw.memory.type and d != "v100-pcie-16gb" else gddr).append((d, cap < _stream(hw)))
    assert {d for d, _ in hbm} >= {"a100-pcie-80gb", "a100-sxm-80gb", "h100-pcie"}
    assert all(b for _, b in hbm), hbm
    assert len(gddr) >= 8 and not any(b for _, b in gddr), gddr


def test_a_state_written_before_a_parameter_was_added_still_warm_starts(tmp_path):
    """load_state maps a fit vector written with fewer parameters into the current layout: the old parameters where
    they were, the new one at its prior."""
    import yaml

    from planner.calibrate import joint

    layout = joint.Layout.of([("llamacpp@unpinned", "ampere"), ("trtllm@0.14", "hopper")])
    names = [p.name for p in joint.FIT]
    old = [n for n in names if n != "sm_stream"]
    rng = np.random.default_rng(0)
    x_old = rng.normal(0.0, 0.1, len(layout.blocks) * len(old))
    (tmp_path / joint.STATE_FILE).write_text(yaml.safe_dump(
        {"params": old, "blocks": joint._layout_key(layout), "x": [float(v) for v in x_old]}))
    x = joint.load_state(tmp_path, layout).reshape(len(layout.blocks), len(names))
    assert np.array_equal(x[:, [names.index(n) for n in old]], x_old.reshape(len(layout.blocks), len(old)))
    i = names.index("sm_stream")
    assert x[0, i] == pytest.approx(np.log(PARAM_BY_NAME["sm_stream"].prior)) and not x[1:, i].any()


def test_estimate_says_when_the_ceiling_holds_the_stream():
    """An estimate on a part where the ceiling binds names it with its figures; where it does not, says nothing."""
    from planner.serving.predict import PlanSpec, estimate

    eng = get_engine("llamacpp@unpinned")

    def said(hw_id):
        e = estimate("llama-3-8b", hw_id, PlanSpec(weights="fp16"), isl=512, osl=16, engine=eng)
        return [n for n in e.notes if "few bytes in flight" in n]

    a100 = said("a100-pcie-80gb")
    k = kernels_for(eng, get_hardware("a100-pcie-80gb"))
    assert len(a100) == 1 and "108 SMs" in a100[0] and f"{k.sm_stream / 1e9:.1f} GB/s" in a100[0]
    assert said("rtx-4090") == []
    assert not any("few bytes in flight" in n for n in estimate("llama-3-8b", "a100-pcie-80gb", PlanSpec(weights="fp16"),
                                                                 isl=512, osl=16, engine=get_engine("vllm")).notes)
