"""Build hook: the built-in data folders at the repository root ship inside the wheel as planner/_data/.

The repository keeps one copy of the data (hw_specs/, model_specs/, measurements/, accuracy/, engines/ at the
root, as the design card lays out); a non-editable install copies them next to the code, and
planner.specs.loader.data_dir() finds them there. An editable install reads them from the checkout.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_DIRS = ("hw_specs", "model_specs", "measurements", "accuracy", "engines")
DATA_SUFFIXES = {".yaml", ".yml", ".csv", ".md"}


class BuildWithData(build_py):
    def run(self):
        super().run()
        dest = Path(self.build_lib) / "planner" / "_data"
        for name in DATA_DIRS:
            src = ROOT / name
            if not src.is_dir():
                continue
            for f in src.rglob("*"):
                if f.is_file() and f.suffix in DATA_SUFFIXES:
                    out = dest / f.relative_to(ROOT)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, out)


setup(cmdclass={"build_py": BuildWithData})
