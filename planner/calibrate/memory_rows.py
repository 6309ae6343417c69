"""Published engine startup logs of weight and KV-cache memory per device (``vllm_kv_memory.csv``), predicted by the
memory model (planner.costmodel.memory) with the row's engine release, parallelism, formats and memory settings.

A row gives what the engine logged for one rank: ``weights_gib`` ("Model loading took X GiB") and ``kv_cache_gib``
("Available KV cache memory: X GiB"); the planner predicts both from the same plan. Settings left empty take the
engine's defaults for the device (vLLM: 1,024 sequences and 8,192 batched tokens on a GPU of 70 GiB or more that is
not an A100, else 256 / 2,048). Nothing is fitted to these rows."""

from __future__ import annotations

from planner.errors import PlannerError

GiB = 2.0**30
METRICS = (("weights_gib", "weights_bytes"), ("kv_cache_gib", "kv_capacity_bytes"))


def _num(row: dict, key: str, where: str, cast=float):
    """An optional number column (None where the cell is empty), read as the other published files' columns are."""
    from planner.serving.published import _num as number

    return cast(number(row, key, where)) if (row.get(key) or "").strip() else None


def predict_kv_memory(rows: list[dict], file: str = "vllm_kv_memory.csv") -> list[tuple[int, str, str, float, float | None, str]]:
    """(row index, metric, config, measured, predicted or None, note) for each logged figure of each row."""
    from planner.calibrate.published_fit import engine_of
    from planner.costmodel.memory import memory
    from planner.costmodel.plans import make_plans
    from planner.specs.engine import get_engine
    from planner.specs.loader import get_hardware, get_model
    from planner.specs.quant import default_kv, kv_asked

    out = []
    for i, r in enumerate(rows):
        where = f"{file}:{i + 2}"
        measured = [(col, attr, _num(r, col, where)) for col, attr in METRICS]
        measured = [(c, a, v) for c, a, v in measured if v is not None]
        try:
            model, hw = get_model(r["model"]), get_hardware(r["hardware"])
            tp = _num(r, "tp", where, int) or 1
            eng = get_engine(engine_of(r)).for_hardware(hw, tp)
            util, seqs, mbt = (_num(r, k, where, c) for k, c in (("gpu_memory_utilization", float), ("max_num_seqs", int),
                                                                 ("max_num_batched_tokens", int)))
            eng = eng.with_(**{k: v for k, v in (("utilization", util), ("max_seqs", seqs), ("max_batched_tokens", mbt))
                               if v is not None})
            weights = (r.get("weights") or "").strip() or model.released_weights() or "bf16"
            kv = kv_asked(r.get("kv")) or default_kv(weights, eng, model)
            cfg = (f"{eng.name} tp{tp} {weights}/kv-{kv} utilization {eng.utilization:g}, {eng.max_seqs} sequences, "
                   f"{eng.max_batched_tokens} batched tokens")
            mem = memory(model, hw, make_plans(model, hw, tp=tp, weights=weights, kv=kv, engine=eng), eng)
        except PlannerError as e:
            out += [(i, col, "", v, None, f"unpredictable: {e}") for col, _, v in measured]
            continue
        for col, attr, v in measured:
            out.append((i, col, cfg, v, float(getattr(mem, attr)[0]) / GiB, (r.get("note") or "").strip()))
    return out
