"""The parsed-data cache: same data as parsing, never stale, survives an unwritable cache folder, and hands out
copies a caller cannot corrupt."""

import os

import pytest
import yaml

from planner.specs import datacache
from planner.specs.loader import _data_roots, data_dir, read_yaml


@pytest.fixture
def data(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.yaml").write_text("id: a\nvalue: 1\n")
    (root / "sub" / "b.yml").write_text("id: b\nitems: [1, 2, 3]\n")
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PLANNER_NO_CACHE", raising=False)
    datacache.clear()
    yield root, (str(root),)
    datacache.clear()


def parse(path):
    return yaml.safe_load(path.read_text())


def test_bundle_is_written_once_and_read_by_a_later_process(data, tmp_path):
    root, roots = data
    assert datacache.read(root / "a.yaml", roots, parse) == {"id": "a", "value": 1}
    bundles = list((tmp_path / "cache").glob("specs-*.pickle"))
    assert len(bundles) == 1
    datacache.clear()  # a new process: only the file on disk remains

    def refuse(path):
        raise AssertionError(f"parsed {path} although the bundle holds it")

    assert datacache.read(root / "sub" / "b.yml", roots, refuse) == {"id": "b", "items": [1, 2, 3]}


def test_an_edited_file_is_never_served_stale(data, tmp_path):
    root, roots = data
    f = root / "a.yaml"
    assert datacache.read(f, roots, parse)["value"] == 1
    f.write_text("id: a\nvalue: 2\n")  # same size: only the modification time tells
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert datacache.read(f, roots, parse)["value"] == 2  # this process: the per-read check
    datacache.clear()
    assert datacache.read(f, roots, parse)["value"] == 2  # a new process: a new bundle name
    assert len(list((tmp_path / "cache").glob("specs-*.pickle"))) == 2  # the old one is kept (another installation's?)
    for v in range(3, 3 + datacache.KEEP + 2):  # more versions than are kept: the oldest bundles go
        f.write_text(f"id: a\nvalue: {v}\n")
        st = os.stat(f)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + v * 1_000_000))
        datacache.clear()
        assert datacache.read(f, roots, parse)["value"] == v
    assert len(list((tmp_path / "cache").glob("specs-*.pickle"))) == datacache.KEEP


def test_new_and_removed_files_change_the_bundle(data):
    root, roots = data
    datacache.read(root / "a.yaml", roots, parse)
    (root / "c.yaml").write_text("id: c\n")
    datacache.clear()
    assert datacache.read(root / "c.yaml", roots, parse) == {"id": "c"}
    (root / "c.yaml").unlink()
    with pytest.raises(FileNotFoundError):
        datacache.read(root / "c.yaml", roots, parse)


def test_unwritable_cache_folder_still_reads(data, tmp_path, monkeypatch):
    root, roots = data
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(blocker / "cache"))  # cannot be created, even as root
    assert datacache.read(root / "a.yaml", roots, parse) == {"id": "a", "value": 1}
    monkeypatch.setenv("PLANNER_NO_CACHE", "1")
    datacache.clear()
    assert datacache.cache_dir() is None
    assert datacache.read(root / "a.yaml", roots, parse) == {"id": "a", "value": 1}


def test_a_corrupt_bundle_is_rebuilt(data, tmp_path):
    root, roots = data
    datacache.read(root / "a.yaml", roots, parse)
    (bundle,) = (tmp_path / "cache").glob("specs-*.pickle")
    bundle.write_bytes(b"\x80\x05garbage")
    datacache.clear()
    assert datacache.read(root / "a.yaml", roots, parse) == {"id": "a", "value": 1}


def test_callers_get_copies(data):
    root, roots = data
    d = datacache.read(root / "sub" / "b.yml", roots, parse)
    d["items"].append(99)
    assert datacache.read(root / "sub" / "b.yml", roots, parse)["items"] == [1, 2, 3]


def test_builtin_files_read_the_same_as_a_fresh_safe_load():
    assert _data_roots()
    for p in sorted(data_dir("hw_specs").glob("*.yaml"))[:10] + sorted(data_dir("model_specs").glob("*.yaml"))[:10]:
        assert read_yaml(p) == yaml.safe_load(p.read_text()), p


# ------------------------------------------------------------------ validated specs

class Item:
    """A stand-in spec class: validation counts its calls."""

    def __init__(self, data):
        self.data = data

    def __eq__(self, other):
        return isinstance(other, Item) and other.data == self.data


def test_a_validated_spec_is_kept_and_a_later_process_does_not_validate_again(data, tmp_path):
    root, roots = data
    calls = []

    def validate(d):
        calls.append(d["id"])
        if "value" not in d:
            raise ValueError(f"{d['id']}: no value")
        return Item(d)

    assert datacache.validated(root / "a.yaml", roots, parse, Item, validate) == Item({"id": "a", "value": 1})
    assert len(list((tmp_path / "cache").glob("models-*.pickle"))) == 1
    datacache.clear()  # a new process
    assert datacache.validated(root / "a.yaml", roots, parse, Item, validate) == Item({"id": "a", "value": 1})
    assert calls == ["a"]
    with pytest.raises(ValueError):  # a file that does not validate is not kept: it fails the same way every time
        datacache.validated(root / "sub" / "b.yml", roots, parse, Item, validate)
    datacache.clear()
    with pytest.raises(ValueError):
        datacache.validated(root / "sub" / "b.yml", roots, parse, Item, validate)
    assert calls == ["a", "b", "b"]
    f = root / "a.yaml"  # an edit (same size): validated again
    f.write_text("id: a\nvalue: 3\n")
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    datacache.clear()
    assert datacache.validated(f, roots, parse, Item, validate).data["value"] == 3
    assert calls[-1] == "a"


def test_a_file_outside_the_data_folders_is_validated_every_time(data, tmp_path):
    _, roots = data
    own = tmp_path / "mine.yaml"
    own.write_text("id: mine\nvalue: 5\n")
    calls = []
    for _ in range(2):
        datacache.clear()
        datacache.validated(own, roots, parse, Item, lambda d: calls.append(1) or Item(d))
    assert len(calls) == 2


def test_cached_builtin_specs_equal_freshly_validated_ones(tmp_path, monkeypatch):
    from planner.cap.accuracy_data import AccuracyData
    from planner.specs.engine import EngineSpec
    from planner.specs.hardware import Hardware, Interconnect, System
    from planner.specs.loader import load_spec_file, validate_file
    from planner.specs.model import Model

    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PLANNER_NO_CACHE", raising=False)
    files = [(Hardware, p) for p in sorted(data_dir("hw_specs").glob("*.yaml"))]
    files += [(Interconnect, p) for p in sorted(data_dir("hw_specs/interconnects").glob("*.yaml"))]
    files += [(System, p) for p in sorted(data_dir("hw_specs/systems").glob("*.yaml"))]
    files += [(Model, p) for p in sorted(data_dir("model_specs").glob("*.yaml"))]
    files += [(EngineSpec, p) for p in sorted(data_dir("engines").glob("*.yaml"))]
    files += [(AccuracyData, data_dir("accuracy") / "accuracy.yaml")]
    assert len(files) > 40
    try:
        datacache.clear()
        for cls, p in files:
            load_spec_file(cls, p)  # validated and kept
        tree = dict(datacache._keys)
        datacache.clear()  # a new process reads them back, validating none
        datacache._keys.update(tree)  # (the same data tree, even while another process edits a data file)
        from planner.specs import loader

        monkeypatch.setattr(loader, "validate_file", lambda cls, p, d: pytest.fail(f"validated {p} again"))
        for cls, p in files:
            got = load_spec_file(cls, p)
            assert type(got) is cls and got == validate_file(cls, p, yaml.safe_load(p.read_text())), p
    finally:
        datacache.clear()
