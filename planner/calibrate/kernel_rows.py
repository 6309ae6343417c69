"""Published kernel timings of one MoE layer (``moe_kernel_vllm.csv``), predicted by the cost model's own MoE ops.

vLLM's tuned-config pull requests print what ``benchmarks/kernels/benchmark_moe.py`` times for its Triton fused_moe
kernel at ``tokens`` tokens: one layer's routed experts for a model's shape (top-k selection, the token alignment,
both grouped GEMMs, the activation and the weighted sum over the chosen experts; the gate GEMM is an input, not timed).
The planner prices the same work as one layer's ``moe_permute``, ``experts`` and ``moe_act`` ops. Two conditions of the benchmark
are the row's, not a served model's:

- routing is even: the benchmark draws random gating logits, so the model's routing skew (Model.moe.routing_skew,
  which fewer experts touched and the busiest rank follow) is set to 0;
- the benchmark times one layer in a loop, so a layer whose touched experts fit in the GPU's cache reads them from
  there; the bundled rows are those whose tokens route at least two to every expert on average (tokens x top-k >= 2
  x experts), when every expert's weights are read, hundreds of MB a layer.

Nothing is fitted to these rows; like the memory logs they are validated on their own and are not in the speed
error tables (crossval)."""

from __future__ import annotations

from planner.errors import PlannerError


def predict_moe_kernel(rows: list[dict], file: str = "moe_kernel_vllm.csv") -> list[tuple[int, str, str, float, float | None, str]]:
    """(row index, "kernel_us", config, measured us, predicted us or None, note) for each row."""
    from planner.calibrate.published_fit import engine_of
    from planner.costmodel.plans import make_plans
    from planner.costmodel.step import CostModel, Op, Step
    from planner.serving.published import _count, _num
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware, get_model

    out = []
    for i, r in enumerate(rows):
        where = f"{file}:{i + 2}"
        measured = _num(r, "kernel_us", where)
        try:
            model, hw = get_model(r["model"]), get_hardware(r["hardware"])
            if model.moe is None:
                raise PlannerError(f"{model.id} has no MoE layer")
            tp, tokens = _count(r, "tp", where, 1), int(_num(r, "tokens", where))
            weights = (r.get("weights") or "").strip() or "bf16"
            even = model.model_copy(update={"moe": model.moe.model_copy(update={"routing_skew": 0.0})})
            eng = get_engine(engine_of(r)).for_hardware(hw, tp)
            plans = make_plans(even, hw, tp=tp, weights=weights, kv="bf16", engine=eng)
            step = CostModel(even, hw, engine=eng).step(plans, Step(decode_seqs=float(tokens), decode_ctx=1.0))
        except PlannerError as e:
            out.append((i, "kernel_us", "", measured, None, f"unpredictable: {e}"))
            continue
        layer_s = sum(float(o.time_s[0]) for o in step.ops if o.name in (Op.MOE_PERMUTE, Op.EXPERTS, Op.MOE_ACT))
        cfg = f"{eng.name} tp{tp} {weights} fused_moe {tokens} tokens"
        out.append((i, "kernel_us", cfg, measured, layer_s * 1e6, (r.get("note") or "").strip()))
    return out
