"""The built-in data works after a plain, non-editable `pip install .` (no repo on the path)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_non_editable_install_has_data(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    # dependencies come from the outer environment; the package itself is built and copied
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", str(ROOT)],
                   check=True, cwd=tmp_path, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import planner, sys; print(planner.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path, env=env, check=True).stdout.strip()
    assert str(venv) in where, f"imported {where}, not the installed copy"
    out = subprocess.run([str(venv / "bin" / "planner"), "estimate", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "4",
                          "--weights", "fp8", "--json"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["output_tokens_per_s"] > 0
    val = subprocess.run([str(venv / "bin" / "planner"), "validate", "--json"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert val.returncode == 0, val.stderr
    assert len(json.loads(val.stdout)["rows"]) > 300  # the published sets ship inside the package
