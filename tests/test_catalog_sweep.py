"""Every built-in model on a spread of built-in devices, engines, weight formats and TP sizes, as a user would try
them: `planner estimate ... --json` either answers (exit 0, a finite positive throughput and latency where the plan
fits) or refuses in one line on stderr starting 'error:' (exit 2), never a traceback. A deterministic sample of the
catalog's cross product (the whole product, 31,200 runs, found none either; see docs/accuracy.md)."""

import json
import math
import random

from cli_helpers import run
from planner.specs.loader import hardware_ids, model_ids

ENGINES = ("trtllm", "vllm", "sglang", "llamacpp")
WEIGHTS = (None, "fp8", "fp4")
TPS = (1, 2, 8)


def _cases(n: int = 160) -> list[list[str]]:
    rng = random.Random(7)
    models, devices = sorted(model_ids()), sorted(hardware_ids())
    out = []
    for _ in range(n):
        args = ["estimate", "-m", rng.choice(models), "-H", rng.choice(devices), "--engine", rng.choice(ENGINES),
                "--isl", "1024", "--osl", "256", "--json"]
        w, tp = rng.choice(WEIGHTS), rng.choice(TPS)
        args += (["--weights", w] if w else []) + (["--tp", str(tp)] if tp > 1 else [])
        out.append(args)
    return out


def test_the_catalog_answers_or_refuses_in_one_line(capsys):
    bad, answered = [], 0
    for args in _cases():
        code, out, err = run(args, capsys)
        if code == 0:
            d = json.loads(out)
            ok = (not d["fits"]) or all(isinstance(d[k], (int, float)) and math.isfinite(d[k]) and d[k] > 0
                                        for k in ("output_tokens_per_s", "ttft_s", "tpot_s"))
            answered += 1
            if not ok or "Traceback" in err:
                bad.append((args, code, out[:200]))
        else:
            lines = err.strip().splitlines()
            if code != 2 or "Traceback" in err or len(lines) != 1 or not lines[0].startswith("error: "):
                bad.append((args, code, err[-300:]))
    assert not bad, f"{len(bad)} invocations broke the contract, e.g. {bad[:3]}"
    assert answered >= 40  # the sample is not all refusals
