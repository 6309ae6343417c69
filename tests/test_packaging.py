"""The built-in data works after a plain, non-editable `pip install .` (no repo on the path).

The inner environment must see the dependencies of the environment running the tests (a venv in CI), not
the base interpreter's: `--system-site-packages` on a venv made from a venv inherits the *base* interpreter's
packages. So the package is installed with `--target` into a folder, and that folder is put first on
PYTHONPATH for the current interpreter, whose own site-packages hold typer, pydantic, numpy...
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_non_editable_install_has_data(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(ROOT)],
                   check=True, cwd=tmp_path, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import planner; print(planner.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, env=env, check=True).stdout.strip()
    assert str(target) in where, f"imported {where}, not the installed copy"
    assert (target / "planner" / "_data" / "hw_specs" / "h100-sxm.yaml").is_file()
    cli = [sys.executable, "-m", "planner"]
    out = subprocess.run(cli + ["estimate", "-m", "llama-3.1-70b", "-H", "h100-sxm", "--gpus", "4", "--weights", "fp8",
                                "--json"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["output_tokens_per_s"] > 0
    val = subprocess.run(cli + ["validate", "--json"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert val.returncode == 0, val.stderr
    assert len(json.loads(val.stdout)["rows"]) > 300  # the published sets ship inside the package
