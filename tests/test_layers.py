"""The package's imports follow the layering of the design card (../shared/DESIGN.md): an import may only go down
or sideways. Every import is checked, including the ones inside functions (a lazy import is still a dependency).

Ranks, low to high: units/errors; specs; costmodel, cap, harness; serving, calibrate; search; api; report,
studies; cli. The package's ``__init__`` and ``__main__`` are the top-level facade and entry point.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "planner"

RANK = {
    "units": 0, "errors": 0,
    "specs": 1,
    "costmodel": 2, "cap": 2, "harness": 2,
    "serving": 3, "calibrate": 3,
    "search": 4,
    "api": 5,
    "report": 6, "studies": 6,
    "cli": 7,
    "__init__": 8, "__main__": 8,
}


def _layer(module: str) -> str:
    """planner.costmodel.step -> costmodel; planner.api -> api; planner -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1 and len(parts) > 2:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg_parts = module.split(".")
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "planner"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = pkg_parts if is_pkg else pkg_parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "planner":
                if name == "planner":  # from planner import x: x is a subpackage or a facade name
                    out += [(node.lineno, f"planner.{a.name}") if a.name in RANK else (node.lineno, "planner")
                            for a in node.names]
                else:
                    out.append((node.lineno, name))
    return out


def test_every_module_has_a_layer():
    for path in PKG.rglob("*.py"):
        module = _module_name(path)
        assert _layer(module) in RANK, f"{path}: {module} is in no layer of DESIGN.md; add it to RANK"


def test_no_import_runs_up_the_layers():
    bad = []
    checked = 0
    for path in sorted(PKG.rglob("*.py")):
        module = _module_name(path)
        me = RANK[_layer(module)]
        for line, target in _imports(path, module):
            checked += 1
            layer = _layer(target)
            if layer not in RANK:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} imports unknown {target}")
            elif RANK[layer] > me:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} ({_layer(module)}) imports {target} ({layer})")
    assert checked > 100  # the walk really saw the package's imports
    assert not bad, "imports that run up the layering:\n" + "\n".join(bad)


def test_the_check_catches_an_upward_import(tmp_path):
    # the walker itself: a costmodel module importing the search layer must be reported
    f = tmp_path / "planner" / "costmodel" / "x.py"
    f.parent.mkdir(parents=True)
    f.write_text("def g():\n    from planner.search.run import search\n    return search\n")
    found = [t for _, t in _imports(f, "planner.costmodel.x")]
    assert found == ["planner.search.run"]
    assert RANK[_layer(found[0])] > RANK["costmodel"]
