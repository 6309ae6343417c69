"""Load specs from the built-in data (packaged with planner) or from a path.

YAML is read with safe loading only. Errors name the file and line.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from planner.errors import PlannerError, unknown
from planner.specs import datacache
from planner.specs.hardware import Hardware, Interconnect, System
from planner.specs.model import Model

T = TypeVar("T", bound=BaseModel)


# Built-in data lives at the repository root (hw_specs/, model_specs/, measurements/, accuracy/, engines/);
# the wheel carries a copy under planner/_data/ (setup.py's build step), so a plain `pip install .` works anywhere.
DATA_DIRS = ("hw_specs", "model_specs", "measurements", "accuracy", "engines")


def data_dir(name: str) -> Path:
    """A folder of built-in data: ``hw_specs``, ``hw_specs/systems``, ``model_specs``, ``measurements/published``..."""
    bundled = Path(__file__).resolve().parents[1] / "_data" / name  # planner/_data (a regular package on disk; importlib.resources would add ~5 ms of imports)
    if bundled.is_dir():
        return bundled
    return Path(__file__).resolve().parents[2] / name


@functools.cache
def _data_roots() -> tuple[str, ...]:
    return tuple(os.path.abspath(data_dir(n)) for n in DATA_DIRS if data_dir(n).is_dir())


def read_yaml(path: Path) -> object:
    """Safe-load a YAML file; built-in data files come from the parsed-data cache (planner.specs.datacache)."""
    return datacache.read(Path(path), _data_roots(), _parse_yaml)


def _parse_yaml(path: Path) -> object:
    import yaml  # only when a file is parsed: built-in data usually comes from the parsed-data cache

    try:
        text = path.read_text()
    except OSError as e:
        raise PlannerError(f"cannot read {path}: {e.strerror}") from None
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml's parser when built with it
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise PlannerError(f"malformed YAML at {where}: {problem}") from None


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise PlannerError(f"cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise PlannerError(f"malformed JSON at {path}:{e.lineno}: {e.msg}") from None


def _line_of(path: Path, loc: tuple) -> str:
    """Best-effort line number of the first key of a pydantic error location."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return str(path)
    for key in loc:
        if isinstance(key, str):
            for i, line in enumerate(lines):
                if line.lstrip().startswith(f"{key}:"):
                    return f"{path}:{i + 1}"
    return str(path)


def validate_file(cls: type[T], path: Path, data: object) -> T:
    if not isinstance(data, dict):
        raise PlannerError(f"{path} does not hold a mapping at the top level")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise PlannerError(f"invalid {cls.__name__.lower()} spec at {_line_of(path, err['loc'])}: {loc}: {err['msg']}") from None


def load_spec_file(cls: type[T], path: Path | str) -> T:
    """A spec file validated as ``cls``; a built-in file's object comes from the validated-spec cache when its file
    and the spec code are unchanged (planner.specs.datacache.validated)."""
    path = Path(path)  # a str path too: the error message reads the file's lines to name where a field is wrong
    return datacache.validated(path, _data_roots(), _parse_yaml, cls, lambda data: validate_file(cls, path, data))  # type: ignore[return-value]


@functools.cache
def _builtin(cls_name: str) -> dict[str, Path]:
    folder = {"Hardware": "hw_specs", "Model": "model_specs", "Interconnect": "hw_specs/interconnects",
              "System": "hw_specs/systems"}[cls_name]
    out = {}
    for p in sorted(data_dir(folder).glob("*.yaml")):
        out[p.stem] = p
    return out


@functools.cache
def _load_builtin(cls_name: str, ident: str):
    cls = {"Hardware": Hardware, "Model": Model, "Interconnect": Interconnect, "System": System}[cls_name]
    spec = load_spec_file(cls, _builtin(cls_name)[ident])
    if spec.id != ident:
        raise PlannerError(f"{_builtin(cls_name)[ident]} declares id {spec.id!r}, expected {ident!r}")
    return spec


@functools.cache
def _aliases(cls_name: str) -> dict[str, str]:
    """Alias -> id, from the ``aliases`` lists of the built-in specs (read only when an id is not a file name)."""
    out = {}
    for ident, path in _builtin(cls_name).items():
        data = read_yaml(path)
        for alias in (data.get("aliases") or []) if isinstance(data, dict) else []:
            out[str(alias)] = ident
    return out


@functools.cache
def _hf_repos() -> dict[str, str]:
    """Lower-case Hugging Face repo id -> model id, from the built-in specs' ``hf_repo`` (the
    instruct/chat repo; its base name without -Instruct/-Chat/-it matches too)."""
    out: dict[str, str] = {}
    for ident, path in _builtin("Model").items():
        data = read_yaml(path)
        repo = str(data.get("hf_repo") or "").lower() if isinstance(data, dict) else ""
        if repo:
            out.setdefault(repo, ident)
            for suffix in ("-instruct", "-chat", "-it"):
                if repo.endswith(suffix):
                    out.setdefault(repo[: -len(suffix)], ident)
    return out


def _canonical(cls_name: str, ident: str) -> str:
    """A built-in id in any case, or (models) a Hugging Face repo id, or (hardware) a product name, to the built-in id."""
    low = ident.strip().lower()
    for i in _builtin(cls_name):
        if i.lower() == low:
            return i
    if cls_name == "Model" and low in _hf_repos():
        return _hf_repos()[low]
    if cls_name == "Model":
        return _model_by_name(ident) or ident
    if cls_name == "Hardware":
        return _hardware_by_name(ident) or ident
    return ident


_VENDOR_WORDS = frozenset({"nvidia", "geforce", "amd", "instinct", "tesla", "apple", "google", "intel"})


def _name_tokens(text: str) -> tuple[str, ...]:
    """'NVIDIA GeForce RTX 4090' -> ('rtx', '4090'): lower case, split on spaces, '-', '_' and '/', vendor words dropped."""
    return tuple(t for t in re.split(r"[\s_/\-]+", text.strip().lower()) if t and t not in _VENDOR_WORDS)


_MODEL_NOISE = frozenset({"meta", "instruct", "chat", "hf", "it"})


def _model_words(text: str, variants: bool = True) -> tuple[str, ...]:
    """'meta-llama/Meta-Llama-3.1-8B-Instruct' -> ('llama', '3.1', '8b'): the repo name without its organisation, in
    words, without the words that name a fine-tune of the same network (instruct, chat, hf, it) or its maker, nor those
    that only say how or when a checkpoint of it was released ('-FP8', '-AWQ', '-2507' and, with ``variants``,
    '-Thinking': planner.specs.checkpoint)."""
    from planner.specs.checkpoint import network_words

    return tuple(t for t in network_words(text, variants) if t not in _MODEL_NOISE)


def _model_by_name(name: str) -> str | None:
    """The built-in model whose id, alias or Hugging Face repo has the same words as ``name`` once the organisation and the
    fine-tune words are set aside ('Llama-3.1-8B-Instruct', 'Meta-Llama-3.1-8B-Instruct' -> llama-3.1-8b), when exactly
    one does: an instruct or chat fine-tune has its base network's layers, so it costs the same. Else None."""
    # a variant word (thinking, base) names the same network unless a spec of its own carries it: the name is
    # matched with it first ('Kimi-K2-Thinking' -> its own spec), then without it against the specs' own full words
    # ('Qwen3-30B-A3B-Thinking-2507' -> qwen3-30b-a3b, 'Kimi-K2-Base' -> kimi-k2, not kimi-k2-thinking)
    index = _spec_words()
    for variants in (False, True):
        words = _model_words(name, variants)
        if not words:
            return None
        hits = index.get(words, set())
        if len(hits) == 1:
            return next(iter(hits))
    return None


@functools.cache
def _spec_words() -> dict[tuple[str, ...], set[str]]:
    """The words (variant words kept) of every built-in model id, Hugging Face repo and alias -> the ids they name."""
    out: dict[tuple[str, ...], set[str]] = {}
    named = [(i, i) for i in _builtin("Model")] + list(_hf_repos().items()) + list(_aliases("Model").items())
    for name, ident in named:
        out.setdefault(_model_words(name, False), set()).add(ident)
    return out


def _hardware_by_name(name: str) -> str | None:
    """The built-in hardware whose id or alias has the same words as a product name, vendor words aside ('RTX 4090',
    'NVIDIA GeForce RTX 4090', 'AMD Instinct MI300X', 'NVIDIA A100-SXM4-80GB' as nvidia-smi prints it), when exactly
    one does; else None, and the caller reports the name as unknown with suggestions. No nearest match is taken: 'H100'
    could be the SXM, PCIe or NVL part."""
    words = _name_tokens(name)
    if not words:
        return None
    hits = {ident for ident in _builtin("Hardware") if _name_tokens(ident) == words}
    hits |= {ident for alias, ident in _aliases("Hardware").items() if _name_tokens(alias) == words}
    return hits.pop() if len(hits) == 1 else _hardware_by_parts(name)


# board form factors as product names write them; an id names one only where the product comes in several
_FORMS = {"sxm": "sxm", "sxm2": "sxm", "sxm3": "sxm", "sxm4": "sxm", "sxm5": "sxm", "sxm6": "sxm", "pcie": "pcie",
          "nvl": "nvl", "oam": "oam", "dgx": "sxm", "hgx": "sxm"}  # DGX / HGX systems carry SXM boards
# words that say nothing about which device: memory technology, rack-scale system names, generic nouns
_HW_NOISE = re.compile(r"(hbm\d*e?|g?ddr\d*x?|lpddr\d*x?|nvl\d+|gpu|graphics|card|board|system|server|edition|generation)")


def _hw_parts(text: str) -> tuple[str, str | None, float | None]:
    """(family, form factor, memory GB) of a product name or hardware id: 'NVIDIA H100-SXM5-80GB' -> ('h100', 'sxm', 80),
    'DGX H200' -> ('h200', 'sxm', None), 'Gaudi 3' -> ('gaudi3', None, None), 'rtx-4060-ti-16gb' -> ('rtx4060ti', None, 16)."""
    low = re.sub(r"pci[\s\-_]?e(?:xpress)?", "pcie", text.strip().lower())
    mem = re.findall(r"(\d+(?:\.\d+)?)\s*gi?b\b", low)
    low = re.sub(r"\d+(?:\.\d+)?\s*gi?b\b", " ", low)
    form, family = None, []
    for t in _name_tokens(low):
        if t in _FORMS:
            form = form or _FORMS[t]
        elif not _HW_NOISE.fullmatch(t):
            family.append(t)
    return "".join(family), form, (float(mem[0]) if len(mem) == 1 else None)


@functools.cache
def _builtin_hw_parts() -> dict[str, tuple[str, str | None, float | None]]:
    """(family, form factor, memory GB) of every built-in hardware id, read once."""
    return {ident: _hw_parts(ident) for ident in _builtin("Hardware")}


@functools.cache
def _stated_forms() -> dict[str, str]:
    """id -> the form factor a built-in spec's product name or aliases state where its id does not ('a800' is
    'NVIDIA A800 SXM4 80GB'), read once: a name giving another form factor is another board ('A800 80GB PCIe')."""
    out = {}
    for ident, path in _builtin("Hardware").items():
        data = read_yaml(path)
        if not isinstance(data, dict) or _builtin_hw_parts()[ident][1] is not None:
            continue
        forms = {_hw_parts(str(t))[1] for t in [data.get("name") or "", *(data.get("aliases") or [])]} - {None}
        if len(forms) == 1:
            out[ident] = forms.pop()
    return out


def _hardware_by_parts(name: str) -> str | None:
    """The one built-in device a descriptive product name fits, judged by its parts: the family must be a spec's, a form
    factor or memory size given must agree with it (memory within 5 % of its capacity in GB or GiB: 'H200-SXM-141GB'),
    and a form factor or memory size the spec's id states (its product comes in several) must be given. 'H100-SXM5-80GB'
    and 'DGX H100' are h100-sxm; 'H100', 'A100 40GB' (the SXM or PCIe board?), 'H800 PCIe' (h800 is the SXM5 board, as
    its product name says) and 'Tesla K80' (no spec) stay unknown."""
    family, form, mem = _hw_parts(name)
    if not family:
        return None
    same = {ident: ps for ident, ps in _builtin_hw_parts().items() if ps[0] == family}
    hits = []
    for ident, (_, id_form, id_mem) in same.items():
        if (id_form is not None and form != id_form) or (id_mem is not None and mem is None):
            continue
        if id_form is None and form is not None and len(same) > 1:
            continue  # a form factor the family's several specs do not tell apart
        if form is not None and _stated_forms().get(ident, form) != form:
            continue  # the spec is another board of the family ('H800 PCIe' is not the SXM5 part h800 describes)
        if mem is not None:
            cap = _load_builtin("Hardware", ident).memory_capacity_bytes
            if not any(abs(mem * unit / cap - 1.0) <= 0.05 for unit in (1e9, 2.0**30)):
                continue
        hits.append(ident)
    return hits[0] if len(hits) == 1 else None


@functools.cache
def _from_hf_config(path: str) -> Model:
    from planner.specs.hf_import import spec_from_hf_config

    return spec_from_hf_config(Path(path))[0]


def _get(cls, kind: str, ident: str):
    if ident in _builtin(cls.__name__):  # an exact built-in id: no file-system lookups (studies ask thousands of times)
        return _load_builtin(cls.__name__, ident)
    path = Path(ident)
    if cls is Model and ident.lower().endswith(".json"):
        if not path.is_file():
            raise PlannerError(f"model file {ident} does not exist")
        return _from_hf_config(str(path.resolve()))
    if ident.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise PlannerError(f"{kind} file {ident} does not exist")
        spec = load_spec_file(cls, path)
        prof = getattr(spec, "kernel_profile", None)
        if prof and not Path(prof).is_absolute():
            spec = spec.model_copy(update={"kernel_profile": str((path.parent / prof).resolve())})
        return spec
    ids = _builtin(cls.__name__)
    if ident not in ids:
        ident = _aliases(cls.__name__).get(ident, ident)
    if ident not in ids:
        ident = _canonical(cls.__name__, ident)
    if ident not in ids:
        err = unknown(kind, ident, ids)
        if cls is Model:  # a network without a built-in spec is one config.json away
            err = PlannerError(f"{err}; for a network without a built-in spec give its config.json as the model "
                               "(or add it: planner models import CONFIG)")
        raise err
    return _load_builtin(cls.__name__, ident)


def hardware_ids() -> list[str]:
    return list(_builtin("Hardware"))


def model_ids() -> list[str]:
    return list(_builtin("Model"))


def interconnect_ids() -> list[str]:
    return list(_builtin("Interconnect"))


def system_ids() -> list[str]:
    return list(_builtin("System"))


def get_hardware(ident: str) -> Hardware:
    """A built-in hardware id (``h100-sxm``) or a path to a hardware YAML (e.g. a calibrated spec); ``ID+LINK``
    (``m4-pro+wifi-6``) is that device joined to its peers over the interconnect LINK (edge clusters)."""
    if "+" in ident and not Path(ident).is_file():
        base, link = ident.rsplit("+", 1)
        try:
            net = get_interconnect(link)
        except PlannerError:
            # a product name with a plus in it ('AMD Ryzen AI Max+ 395') is a name, not ID+LINK; if it is not one
            # either, the link is what was mistyped
            try:
                return _get(Hardware, "hardware", ident)
            except PlannerError:
                pass
            raise
        return get_hardware(base).joined_by(net.id)
    return _get(Hardware, "hardware", ident)


def get_model(ident: str) -> Model:
    return _get(Model, "model", ident)


def get_interconnect(ident: str) -> Interconnect:
    return _get(Interconnect, "interconnect", ident)


def get_system(ident: str) -> System:
    return _get(System, "system", ident)
