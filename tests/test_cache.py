"""The per-file cache (gradlint.cache): plain JSON lines, one pack per folder, validated on load,
written only inside the project and never through a link; planted entries run nothing and change
no finding."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import time
import zlib
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gradlint import cache, codec
from gradlint.api import check_paths
from gradlint.facts.files import FileFacts
from gradlint.config import Config
from gradlint.findings import FileResult, InputError, Severity, SourceSpan
from gradlint.model.ir import Activation, InitSpec, Network, Param, Residual
from tests.cli_helpers import write_tree
from tests.conftest import ROOT, run_cli

DEEP_SIGMOID = ("import torch.nn as nn\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                "        self.body = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(256, 256), nn.Sigmoid())])\n\n"
                "    def forward(self, x):\n        return self.body(x)\n")
LOG_SOFTMAX = "import torch\n\ndef f(y):\n    return torch.log(torch.softmax(y, 1))\n"


def _gen():
    spec = importlib.util.spec_from_file_location("onnx_fixture_gen", ROOT / "fixtures" / "onnx" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def findings(root: Path, *, use_cache: bool, targets: tuple[str, ...] = (".",), config: Config | None = None,
             jobs: int = 1) -> list[tuple]:
    old = os.getcwd()
    os.chdir(root)
    try:
        result = check_paths(list(targets), config or Config(root=str(root)), use_cache=use_cache, jobs=jobs)
    finally:
        os.chdir(old)
    assert not result.internal_errors, result.internal_errors
    return [(f.path, f.code, f.span.line, f.message) for f in result.findings]


def packs(root: Path, rel: str = ".gradlint_cache") -> list[Path]:
    return sorted((root / rel).glob(f"{cache.PACK_PREFIX}*{cache.PACK_SUFFIX}"))


def all_entries(root: Path, rel: str = ".gradlint_cache") -> list[dict]:
    """Every entry of every pack, parsed (each line of a pack is one JSON document)."""
    return [json.loads(line) for pack in packs(root, rel) for line in pack.read_bytes().splitlines()]


def entries(root: Path, rel: str = ".gradlint_cache") -> list[dict]:
    """The facts entries (a record); a file's result entry holds a list (gradlint.results.ResultCache)."""
    return [d for d in all_entries(root, rel) if isinstance(d["facts"], dict)]


def result_entries(root: Path, rel: str = ".gradlint_cache") -> list[dict]:
    return [d for d in all_entries(root, rel) if isinstance(d["facts"], list)]


# The two files of `project` reach each other's module (model.py builds util's Head, util.py wraps
# model's M; util imports model after Head is defined): a run stores the facts of a module another
# file's lookup reached, which a later run reads, and the result alone of a file nobody reaches
# (gradlint.api._later_read).
MODEL_WITH_HEAD = (DEEP_SIGMOID.replace("import torch.nn as nn\n", "import torch.nn as nn\nfrom util import Head\n")
                   .replace("        self.body =", "        self.head = Head()\n        self.body =")
                   .replace("return self.body(x)", "return self.head(self.body(x))"))
UTIL_WITH_HEAD = (LOG_SOFTMAX.replace("def f(", "def log_probs(")
                  + "\n\nclass Head(torch.nn.Module):\n    def forward(self, x):\n        return x\n\n\n"
                  "from model import M  # noqa: E402\n\n\nclass Wrapper(torch.nn.Module):\n"
                  "    def __init__(self):\n        super().__init__()\n        self.inner = M()\n\n"
                  "    def forward(self, x):\n        return self.inner(x)\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_tree(tmp_path, {"model.py": MODEL_WITH_HEAD, "util.py": UTIL_WITH_HEAD})
    return tmp_path


# --- the codec ----------------------------------------------------------------------------------


def test_every_fixture_round_trips_through_the_json_codec(tmp_path):
    from gradlint.api import _extract
    from gradlint.discover import discover

    gen = _gen()
    models = {"mlp": gen.mlp(depth=6, width=16), "post_ln": gen.post_ln_stack(depth=3), "resnet": gen.resnet_like(2),
              "rnn": gen.rnn()}
    for name, model in models.items():
        gen.save(model, tmp_path / f"{name}.onnx")
    files = discover([ROOT / "fixtures", tmp_path], Config(root=str(ROOT))).files
    files += [(p, str(p)) for p in sorted((ROOT / "fixtures" / "onnx").glob("*.onnx.txt"))]
    kinds = set()
    records: set[str] = set()
    for path, display in files:
        facts = _extract(path, display)
        text = cache.dumps(facts)
        back = cache.loads(text)
        assert back == facts, display
        _same_records(back, facts, records)
        kinds.add(facts.kind)
        if facts.graph is not None:
            kinds.add("graph facts")
    assert kinds == {"python", "onnx", "graph facts"} and len(files) > 40
    # every kind of facts, down to their smallest records
    assert records >= {"FileFacts", "Network", "Param", "InitSpec", "Residual", "TrainingFacts", "Event", "Block",
                       "NumericsFacts", "Site", "Call", "Function", "ModuleSymbols", "ClassSummary", "GraphFacts",
                       "GraphNode", "SourceSpan", "CellMap"}, records


def _same_records(back, made, seen: set[str]) -> None:
    """Records rebuilt without __init__ (codec._Layout.direct) hold what __init__ would have set,
    in the same order, and are of the same class, all the way down."""
    import dataclasses

    assert type(back) is type(made)
    if dataclasses.is_dataclass(made):
        seen.add(type(made).__name__)
        assert list(vars(back)) == list(vars(made)), type(made)
        for name in vars(made):
            _same_records(getattr(back, name), getattr(made, name), seen)
    elif isinstance(made, (tuple, list)):
        for b, m in zip(back, made):
            _same_records(b, m, seen)


def test_records_are_rebuilt_without_init_only_when_init_is_the_generated_one():
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class Plain:
        a: int
        b: tuple = ()

    @dataclass(frozen=True)
    class Checks:
        a: int

        def __post_init__(self) -> None:
            raise ValueError("refused")

    @dataclass
    class OwnInit:
        a: int

        def __init__(self, a: int) -> None:
            self.a = a * 2

    @dataclass(frozen=True)
    class NotAllInit:
        a: int
        b: int = field(init=False, default=0)

    @dataclass(frozen=True, slots=True)
    class Slots:
        a: int

    assert codec._direct(Plain, ("a", "b"))
    assert not codec._direct(Checks, ("a",)) and not codec._direct(OwnInit, ("a",))
    assert not codec._direct(NotAllInit, ("a",)) and not codec._direct(Slots, ("a",))


def test_codec_keeps_containers_floats_and_enums_apart():
    value = (1, 2.5, float("nan"), float("-inf"), [1, (2,)], {3}, frozenset({"a"}), {"k": (1,)}, Severity.ERROR,
             True, None, "s")
    back = cache.loads(cache.dumps(value))
    assert type(back[4]) is list and type(back[4][1]) is tuple
    assert type(back[5]) is set and type(back[6]) is frozenset and back[7] == {"k": (1,)}
    assert back[8] is Severity.ERROR and back[2] != back[2] and back[3] == float("-inf")
    assert back[:2] == (1, 2.5) and back[9:] == (True, None, "s")


def test_nested_records_round_trip():
    net = Network(name="M", path="m.py", nodes=(
        Residual(body=(Param("l", "linear", 8, "d_model", InitSpec("normal", (("std", 1.0),))),
                       Activation("a", "relu", origin=SourceSpan(1, 1, 1, 2)))),), origin=None)
    facts = FileFacts(path="m.py", kind="python", networks=(net,), input_errors=(InputError("unreadable_source", "x"),))
    assert cache.loads(cache.dumps(facts)) == facts


SPAN = "gradlint.findings.SourceSpan"
RESIDUAL = "gradlint.model.ir.Residual"
# A Residual whose body holds a SourceSpan where nodes belong.
_BAD_BODY = cache.encode(Residual(body=(Activation("a", "relu"),)))
_BAD_BODY[RESIDUAL][list(codec._layout(Residual).names).index("body")] = [cache.encode(SourceSpan(1, 1, 1, 1))]


@pytest.mark.parametrize("doc, why", [
    ({"os.system": ["id"]}, "unknown record type"),
    ({"builtins.eval": ["1"]}, "unknown record type"),
    ({"gradlint.api.Path": []}, "unknown record type"),  # imported into api, not its record
    ({"gradlint.findings.Severity": [1]}, "unknown record type"),  # an enum is no record
    ({"__reduce__": ["os.system", "id"]}, "unknown record type"),
    ({"$enum": ["subprocess.Popen", 1]}, "unknown enum"),
    ({"$enum": [SPAN, 1]}, "unknown enum"),  # a record is no enum
    ({"$enum": ["gradlint.findings.Severity", "no such severity"]}, "bad value"),
    ({SPAN: ["1", 1, 1, 1]}, "does not fit"),
    ({SPAN: [True, 1, 1, 1]}, "does not fit"),
    ({SPAN: [1, 1, 1]}, "differ"),
    ({SPAN: [1, 1, 1, 1, 1]}, "differ"),
    ({SPAN: [1, 1, 1, 1], "x": 1}, "unknown object"),
    # schema 4's layouts: fields by name, the record's name under "$r", the enum's under "$enum"
    ({SPAN: {"line": 1, "column": 1, "end_line": 1, "end_column": 1}}, "differ"),
    ({"$r": SPAN, "f": {"line": 1, "column": 1, "end_line": 1, "end_column": 1}}, "unknown object"),
    ({"$enum": "gradlint.findings.Severity", "v": 1}, "unknown object"),
    (_BAD_BODY, "does not fit"),
    ({"$set": [{"$list": [1]}]}, "unhashable"),
    ({"$dict": [[1, 2, 3]]}, "pairs"),
    ({"$float": "1e999"}, "unknown object"),
    ({"$tuple": []}, "unknown object"),
    ([[{"$list": 1}]], "unknown object"),  # nested in tuples
])
def test_codec_refuses_what_it_did_not_write(doc, why):
    with pytest.raises(cache.CacheError, match=why):
        cache.loads(json.dumps(doc))


def test_a_name_in_an_entry_is_never_imported(tmp_path, monkeypatch):
    mark = tmp_path / "imported"
    (tmp_path / "planted_mod.py").write_text(f"open({str(mark)!r}, 'w').write('x')\nclass X: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for doc in ({"$r": "planted_mod.X", "f": {}}, {"$enum": "planted_mod.X", "v": 1}):
        with pytest.raises(cache.CacheError):
            cache.loads(json.dumps(doc))
    assert not mark.exists() and "planted_mod" not in sys.modules


def test_unstorable_values_are_refused_on_write():
    with pytest.raises(cache.CacheError):
        cache.dumps(FileFacts(path="x", kind="python", training=object()))
    with pytest.raises(cache.CacheError):
        cache.dumps(FileFacts(path="x", kind="python", training=Path("x")))


# --- the store ----------------------------------------------------------------------------------


def test_cache_is_json_and_serves_the_same_findings(project):
    first = findings(project, use_cache=True)
    stored = entries(project)
    assert len(stored) == 2 and len(packs(project)) == 1  # both files' entries in their folder's pack
    doc = stored[0]
    assert doc["schema"] == cache.SCHEMA and list(doc) == ["key", "file", "schema", "crc", "deps", "facts"]
    assert sorted(p.name for p in (project / ".gradlint_cache").iterdir()) == [
        ".gitignore", packs(project)[0].name, "salt"]
    assert (project / ".gradlint_cache" / ".gitignore").read_text().endswith("*\n")
    assert findings(project, use_cache=True) == first == findings(project, use_cache=False)
    assert {c for _p, c, _l, _m in first} >= {"GL101", "GL302"}


def _line(key: str, file: str, rest: str) -> bytes:
    """A pack line that starts as gradlint writes one (key and file id at their offsets), with
    the crc of what follows `"schema":N` when it holds a `,"deps":` (what a planter can compute:
    each planted kind must be refused for what it plants, not for a wrong crc)."""
    head, sep, tail = rest.partition(',"deps":')
    if sep:
        rest = f'{head},"crc":{zlib.crc32((sep + tail).encode())}{sep}{tail}'
    return f'{{"key":"{key}","file":"{file}",{rest}'.encode()


def _facts_json(facts=None) -> str:
    return json.dumps(cache.encode(facts or FileFacts(path="model.py", kind="python")))


def _plant(project: Path, maker) -> None:
    """Replace every pack the first run made (the real names, keys and file ids): `maker` gets the
    pack's path and its (key, file) pairs and writes something in its place."""
    for pack in packs(project):
        slots = [(d["key"], d["file"]) for d in map(json.loads, pack.read_bytes().splitlines())]
        pack.unlink()
        maker(pack, slots)


def _lines(make):
    """A planting that writes one line per entry, made by `make(key, file)`."""
    return lambda p, slots: p.write_bytes(b"\n".join(make(k, f) for k, f in slots) + b"\n")


class _Payload:
    def __init__(self, mark: str) -> None:
        self.mark = mark

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.mark}",))


def _schema4(doc):
    """Schema 4's layout of an encoded value: {"$r": tag, "f": {name: value}} for each record."""
    if isinstance(doc, list):
        return [_schema4(v) for v in doc]
    if isinstance(doc, dict):
        ((tag, body),) = doc.items()
        if tag.startswith("$"):
            return {tag: _schema4(body)}
        names = codec._layout(cache.record_type(tag)).names
        return {"$r": tag, "f": {n: _schema4(v) for n, v in zip(names, body)}}
    return doc


def _kinds(mark: Path):
    def sparse(p: Path, _slots) -> None:
        with open(p, "wb") as fh:
            fh.truncate(cache.MAX_PACK_BYTES + 10)

    def symlink_to_valid_elsewhere(p: Path, slots) -> None:
        other = p.parent.parent / "elsewhere.jsonl"
        other.write_bytes(b"\n".join(_line(k, f, f'"schema":{cache.SCHEMA},"deps":[],"facts":{_facts_json()}}}')
                                     for k, f in slots))
        p.symlink_to(other)

    valid_rest = f'"schema":{cache.SCHEMA},"deps":[],"facts":{_facts_json()}}}'

    def result(*rest) -> object:
        """A result entry's payload for model.py (results.ResultCache): a FileResult that drops its
        findings, then `rest` in place of (its module, its dependencies, the project's text)."""
        planted = cache.encode(FileResult(path="model.py", skipped="planted"))
        return _lines(lambda k, f: _line(k, f, f'"schema":{cache.SCHEMA},"deps":[],"facts":'
                                               f'{json.dumps([planted, *rest])}}}'))
    schema4_facts = json.dumps(_schema4(cache.encode(FileFacts(path="model.py", kind="python"))))
    return {
        # what gradlint wrote before schema 5 (fields by name), under its own schema and under this one
        "the previous schema": _lines(lambda k, f: _line(k, f, f'"schema":4,"deps":[],"facts":{schema4_facts}}}')),
        "the previous layout": _lines(lambda k, f: _line(
            k, f, f'"schema":{cache.SCHEMA},"deps":[],"facts":{schema4_facts}}}')),
        "pickle bytes": lambda p, _s: (p.write_bytes(pickle.dumps(_Payload(str(mark)))),
                                       p.with_suffix(".pickle").write_bytes(pickle.dumps(_Payload(str(mark))))),
        "too many dependencies": _lines(lambda k, f: _line(k, f, f'"schema":{cache.SCHEMA},"deps":'
                                                          f'{json.dumps([["x", "y"]] * (cache.MAX_DEPS + 1))},'
                                                          f'"facts":{_facts_json()}}}')),
        "json with unknown types": _lines(lambda k, f: _line(
            k, f, f'"schema":{cache.SCHEMA},"deps":[],"facts":{{"$r":"os.system","f":{{"command":"id"}}}}}}')),
        "wrong schema": _lines(lambda k, f: _line(k, f, valid_rest.replace(f'"schema":{cache.SCHEMA}',
                                                                           f'"schema":{cache.SCHEMA + 1}'))),
        # The key at its offset, another in the document: the parse checks it again.
        "key repeated with another value": _lines(lambda k, f: _line(k, f, valid_rest[:-1] + f',"key":"{"0" * 64}"}}')),
        "another file's id": _lines(lambda k, f: _line(k, "0" * 32, valid_rest)),
        "extra field": _lines(lambda k, f: _line(k, f, valid_rest[:-1] + ',"x":1}')),
        "not facts": _lines(lambda k, f: _line(
            k, f, f'"schema":{cache.SCHEMA},"deps":[],"facts":{json.dumps(cache.encode(SourceSpan(1, 1, 1, 1)))}}}')),
        "truncated": _lines(lambda k, f: _line(k, f, '"schema":1,"de')),
        # result entries: each is a miss unless its shape, module and dependencies all check out
        "a result of another shape": result("model:0"),
        "a result whose dependencies are not pairs": result("model:0", [["x"]], ""),
        "a result whose dependency resolves elsewhere now": result(
            "model:0", [["nowhere", "project:/nowhere.py:sha256:0"]], ""),
        "a result for another module": result("other:0", [], ""),
        "a result whose project text differs": result("model:0", [], "0" * 64),
        "deeply nested": _lines(lambda k, f: _line(
            k, f, f'"schema":{cache.SCHEMA},"deps":[],"facts":' + "[" * 100_000 + "]" * 100_000 + "}")),
        "not lines of entries": lambda p, _s: p.write_text("[" * 100_000 + "]" * 100_000),
        "huge file": sparse,
        "symlink to /dev/zero": lambda p, _s: p.symlink_to("/dev/zero"),
        "symlink to a valid pack": symlink_to_valid_elsewhere,
        "directory": lambda p, _s: (p.mkdir(), (p / "x").write_text("x")),
        "fifo": lambda p, _s: os.mkfifo(p),
    }


@pytest.mark.parametrize("kind", list(_kinds(Path("x"))))
def test_a_planted_entry_runs_nothing_and_changes_no_finding(project, kind):
    mark = project.parent / f"pwned-{project.name}"
    honest = findings(project, use_cache=False)
    findings(project, use_cache=True)
    _plant(project, _kinds(mark)[kind])
    elsewhere = project / "elsewhere.jsonl"
    planted_elsewhere = elsewhere.read_bytes() if elsewhere.exists() else None
    assert findings(project, use_cache=True) == honest
    assert not mark.exists()
    # A damaged entry is rewritten: the next run is served a valid one (a folder in the way stays),
    # and the pack holds nothing else; nothing is written through a link.
    if kind != "directory":
        stored = entries(project)
        assert len(stored) == 2 and all(d["schema"] == cache.SCHEMA for d in stored), kind
        assert len(result_entries(project)) == 2, kind
        assert not packs(project)[0].is_symlink()
    if planted_elsewhere is not None:
        assert elsewhere.read_bytes() == planted_elsewhere
    assert findings(project, use_cache=True) == honest
    assert not list((project / ".gradlint_cache").glob("*.tmp")) and not list((project / ".gradlint_cache").glob(".*.tmp"))


def test_a_valid_entry_shipped_with_the_repository_never_hits(tmp_path):
    """The key mixes in the salt file's inode and change time: an entry made on another machine
    (or in another checkout) is keyed differently, however well formed."""
    made = tmp_path / "made"
    write_tree(made, {"model.py": MODEL_WITH_HEAD, "util.py": UTIL_WITH_HEAD})
    honest = findings(made, use_cache=False)
    findings(made, use_cache=True)
    assert len(entries(made)) == 2
    for pack in packs(made):  # re-encode each entry with facts that hide every finding
        docs = [json.loads(line) for line in pack.read_bytes().splitlines()]
        for doc in docs:
            back = cache.decode(doc["facts"])
            name = back.path if isinstance(back, FileFacts) else back[0].path
            doc["facts"] = cache.encode(FileFacts(path=name, kind="python", source=(made / name).read_text()))
        compact = {"separators": (",", ":")}
        pack.write_bytes(b"\n".join(_line(d["key"], d["file"], f'"schema":{d["schema"]},"deps":{json.dumps(d["deps"], **compact)},'
                                           f'"facts":{json.dumps(d["facts"], **compact)}}}') for d in docs) + b"\n")
    assert findings(made, use_cache=True) == []  # the test has teeth: in place, the forgery is served
    clone = tmp_path / "clone"
    shutil.copytree(made, clone, symlinks=True)
    assert findings(clone, use_cache=True) == honest


def test_salt_and_marker_are_created_exclusively_and_a_bad_salt_means_no_cache(project):
    findings(project, use_cache=True)
    salt = project / ".gradlint_cache" / cache.SALT_NAME
    assert salt.stat().st_size == 32
    salt.write_bytes(b"short")
    for pack in packs(project):
        pack.unlink()
    assert findings(project, use_cache=True) == findings(project, use_cache=False)
    assert entries(project) == []  # no usable salt: nothing written


# --- where the cache may live ----------------------------------------------------------------------


def _check(project: Path, *extra: str):
    return run_cli("check", "-q", *extra, ".", cwd=project)


def test_a_symlinked_cache_folder_is_refused_with_one_warning(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (project / ".gradlint_cache").symlink_to(elsewhere, target_is_directory=True)
    proc = _check(project)
    honest = _check(project, "--no-cache")
    assert proc.stdout == honest.stdout and proc.returncode == honest.returncode == 1
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and ".gradlint_cache" in warnings[0] and "without a cache" in warnings[0]
    assert list(elsewhere.iterdir()) == []


def test_a_link_inside_the_cache_path_is_refused(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (project / "pyproject.toml").write_text('[tool.gradlint]\ncache-dir = "var/cache"\n')
    (project / "var").symlink_to(elsewhere, target_is_directory=True)
    proc = _check(project)
    assert "not used" in proc.stderr and proc.returncode == 1
    assert list(elsewhere.iterdir()) == []


def test_a_dangling_marker_link_is_never_followed(project, tmp_path_factory):
    target = tmp_path_factory.mktemp("outside") / "created_outside.txt"
    (project / ".gradlint_cache").mkdir()
    (project / ".gradlint_cache" / ".gitignore").symlink_to(target)
    proc = _check(project)
    assert not target.exists()
    assert ".gitignore is a symbolic link" in proc.stderr and proc.stderr.count("warning") == 1
    assert proc.stdout == _check(project, "--no-cache").stdout
    assert entries(project) == []


def test_a_custom_cache_dir_stays_below_the_root(project):
    (project / "pyproject.toml").write_text('[tool.gradlint]\ncache-dir = "build/./gl"\n')
    proc = _check(project)
    assert proc.returncode == 1 and "warning" not in proc.stderr
    assert len(entries(project, "build/gl")) == 2


def test_a_read_only_project_runs_uncached_in_silence(project):
    from tests.test_discover_hostile import gradlint

    project.chmod(0o555)
    try:
        proc = gradlint("check", "-q", ".", cwd=project, unprivileged=True)
    finally:
        project.chmod(0o755)
    assert proc.returncode == 1 and proc.stderr == "" and "GL101" in proc.stdout
    assert not (project / ".gradlint_cache").exists()


def _made(store: cache.Store, display: str, facts: FileFacts, folder: str) -> cache.Pending | None:
    return cache.entry(cache.slot(store, display, "python", "sha256:x"), facts, folder)


def test_a_failed_write_leaves_no_temporary_file(project, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    store, warning = cache.open_store(project, ".gradlint_cache")
    assert store is not None and warning is None
    monkeypatch.setattr(cache.os, "replace", boom)
    made = _made(store, "x.py", FileFacts(path="x.py", kind="python"), str(project))
    assert made is not None and cache.write(store, [made]) == 0
    assert sorted(p.name for p in (project / ".gradlint_cache").iterdir()) == [".gitignore", "salt"]


def test_an_entry_too_large_to_store_is_not_written(project, monkeypatch):
    store, _ = cache.open_store(project, ".gradlint_cache")
    monkeypatch.setattr(cache, "MAX_ENTRY_BYTES", 100)
    assert _made(store, "x.py", FileFacts(path="x.py", kind="python", source="x" * 200), str(project)) is None
    assert entries(project) == []


# --- ONNX entries depend on every file the model references ---------------------------------------


def test_external_data_in_a_subfolder_rewritten_in_place_invalidates_the_entry(tmp_path):
    import numpy as np

    gen = _gen()
    model = gen.mlp(depth=4, width=32, std="torch")
    gen.with_external(model, tmp_path / "a" / "weights", data_name="w.bin", location="weights/w.bin")
    gen.save(model, tmp_path / "a" / "model.onnx")
    assert findings(tmp_path, use_cache=True) == findings(tmp_path, use_cache=False) == []
    data = tmp_path / "a" / "weights" / "w.bin"
    st = data.stat()
    with open(data, "r+b") as fh:  # same size, times put back: only the bytes changed
        fh.write(np.full(st.st_size // 4, np.nan, np.float32).tobytes())
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    honest = findings(tmp_path, use_cache=False)
    assert sum(code == "GL501" for _p, code, _l, _m in honest) == 8
    assert findings(tmp_path, use_cache=True) == honest


def test_external_data_appearing_later_invalidates_the_entry(tmp_path):
    gen = _gen()
    model = gen.mlp(depth=3, width=16, std="torch")
    gen.with_external(model, tmp_path / "w", data_name="w.bin", location="w/w.bin")
    gen.save(model, tmp_path / "m.onnx")
    data = (tmp_path / "w" / "w.bin").read_bytes()
    (tmp_path / "w" / "w.bin").unlink()
    missing = findings(tmp_path, use_cache=True)
    assert [c for _p, c, _l, _m in missing] == ["GL002"]
    (tmp_path / "w" / "w.bin").write_bytes(data)
    assert findings(tmp_path, use_cache=True) == findings(tmp_path, use_cache=False) == []


def test_dependency_fingerprints_never_leave_the_models_folder(tmp_path):
    from gradlint.inputs import fingerprint_within

    (tmp_path / "outside.bin").write_bytes(b"secret")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "link").symlink_to(tmp_path, target_is_directory=True)
    assert fingerprint_within(str(tmp_path / "m"), "../outside.bin") == "outside"
    assert fingerprint_within(str(tmp_path / "m"), str(tmp_path / "outside.bin")) == "outside"
    assert fingerprint_within(str(tmp_path / "m"), "link/outside.bin").startswith("error:")
    (tmp_path / "m" / "f.bin").symlink_to(tmp_path / "outside.bin")
    assert fingerprint_within(str(tmp_path / "m"), "f.bin") == f"link:{tmp_path / 'outside.bin'}"


def test_a_source_dependency_may_lie_above_the_file_and_nothing_else_may(tmp_path):
    """A config class a model file imports (`from ..config import C`) is a dependency `../config.py`;
    ONNX external data (any other name) stays inside its folder, as above."""
    from gradlint.inputs import MAX_UP, fingerprint_dependency, fingerprint_within

    (tmp_path / "config.py").write_text("n = 1\n")
    (tmp_path / "outside.bin").write_bytes(b"secret")
    (tmp_path / "a" / "b").mkdir(parents=True)
    here = str(tmp_path / "a" / "b")
    before = fingerprint_dependency(here, "../../config.py")
    assert before.startswith("sha256:") and before == fingerprint_within(str(tmp_path), "config.py")
    (tmp_path / "config.py").write_text("n = 2\n")
    assert fingerprint_dependency(here, "../../config.py") not in (before, "outside")
    assert fingerprint_dependency(here, "../../outside.bin") == "outside"  # not a source file
    assert fingerprint_dependency(here, "../x/../../config.py") == "outside"  # `..` only leading
    assert fingerprint_dependency(here, "/".join([".."] * (MAX_UP + 1)) + "/config.py") == "outside"
    assert fingerprint_dependency(here, "../missing.py").startswith("error:")


def test_config_cache_dir_reaches_the_store(project):
    (project / "pyproject.toml").write_text('[tool.gradlint]\ncache-dir = "here"\n')
    from gradlint.config import load_config

    config = load_config(start=project)
    assert config.cache_dir == "here"
    old = os.getcwd()
    os.chdir(project)
    try:
        check_paths(["."], replace(config), use_cache=True, jobs=1)
    finally:
        os.chdir(old)
    assert len(entries(project, "here")) == 2


def test_the_process_pool_reads_and_writes_the_same_cache(tmp_path):
    write_tree(tmp_path, {f"pkg/m{i}.py": (DEEP_SIGMOID if i % 2 else LOG_SOFTMAX) for i in range(40)})

    def run(use_cache: bool) -> list[tuple]:
        old = os.getcwd()
        os.chdir(tmp_path)
        try:
            result = check_paths(["."], Config(root=str(tmp_path)), use_cache=use_cache, jobs=2)
        finally:
            os.chdir(old)
        assert not result.internal_errors
        return [(f.path, f.code, f.span.line) for f in result.findings]

    honest = run(False)
    assert len(honest) >= 40
    assert run(True) == honest and len(result_entries(tmp_path)) == 40
    # and the facts of the modules a lookup reached: the 20 that define `f` (each one's search for
    # callers of `f` reads the others; a file that holds `f` only inside other words is not read)
    assert len(entries(tmp_path)) == 20
    assert run(True) == honest


# --- packs: one per folder, written once per run ------------------------------------------------


def _counting_extract(monkeypatch) -> list[str]:
    import gradlint.api as api

    extracted: list[str] = []
    real = api._extract

    def counting(path, display, data=None):
        extracted.append(display)
        return real(path, display, data)

    monkeypatch.setattr(api, "_extract", counting)
    return extracted


def test_a_cold_run_writes_one_pack_per_folder_and_a_warm_run_writes_nothing(tmp_path, monkeypatch):
    write_tree(tmp_path, {**{f"a/m{i}.py": DEEP_SIGMOID.replace("M(", f"M{i}(") for i in range(5)},
                          **{f"b/u{i}.py": LOG_SOFTMAX for i in range(3)}, "top.py": LOG_SOFTMAX})
    honest = findings(tmp_path, use_cache=False)
    writes: list[str] = []
    real_replace = cache.os.replace

    def counting_replace(src, dst, **kw):
        writes.append(dst)
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(cache.os, "replace", counting_replace)
    assert findings(tmp_path, use_cache=True) == honest
    # (facts entries: the 4 modules that define `f`, which each one's search for callers reads)
    assert len(packs(tmp_path)) == 3 and len(entries(tmp_path)) == 4 and len(writes) == 3
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in packs(tmp_path)}
    extracted = _counting_extract(monkeypatch)
    assert findings(tmp_path, use_cache=True) == honest
    assert extracted == [] and len(writes) == 3  # all served, nothing written
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in packs(tmp_path)} == before


def test_an_edited_file_replaces_its_own_entry_and_keeps_the_others(project, monkeypatch):
    findings(project, use_cache=True)
    (model_line,) = [d for d in entries(project) if cache.decode(d["facts"]).path == "model.py"]
    (project / "util.py").write_text(LOG_SOFTMAX + "\n# edited\n")
    extracted = _counting_extract(monkeypatch)
    old = os.getcwd()
    os.chdir(project)
    try:  # util.py alone: model.py's entry is not this run's, and stays
        check_paths(["util.py"], Config(root=str(project)), use_cache=True, jobs=1)
    finally:
        os.chdir(old)
    assert extracted == ["util.py"]
    stored = entries(project)
    assert len(stored) == 2 and model_line in stored
    assert [f.source for f in map(cache.decode, (d["facts"] for d in stored)) if f.path == "util.py"] == [
        LOG_SOFTMAX + "\n# edited\n"]
    cached = findings(project, use_cache=True)
    assert extracted == ["util.py"]  # both served from the pack
    assert cached == findings(project, use_cache=False)


def _check_one(project: Path, name: str) -> None:
    old = os.getcwd()
    os.chdir(project)
    try:
        check_paths([name], Config(root=str(project)), use_cache=True, jobs=1)
    finally:
        os.chdir(old)


def test_a_one_file_run_reads_its_folders_pack_once_and_writes_the_other_entries_back(project, monkeypatch):
    findings(project, use_cache=True)
    before = {d["file"]: d for d in entries(project) if cache.decode(d["facts"]).path == "model.py"}
    read: list[str] = []
    real = cache._read_pack
    monkeypatch.setattr(cache, "_read_pack", lambda dfd, name: read.append(name) or real(dfd, name))
    (project / "util.py").write_text(LOG_SOFTMAX + "\n# edited\n")
    _check_one(project, "util.py")
    # looked up once; the write took the lines of the other files from what the lookup read
    assert len(read) == 1
    assert {d["file"]: d for d in all_entries(project) if d["file"] in before} == before
    assert findings(project, use_cache=True) == findings(project, use_cache=False)


def test_a_pack_replaced_after_the_lookup_is_read_again_before_the_write(project, monkeypatch):
    findings(project, use_cache=True)
    (pack,) = packs(project)
    (model_line,) = [d for d in entries(project) if cache.decode(d["facts"]).path == "model.py"]
    (project / "util.py").write_text(LOG_SOFTMAX + "\n# edited\n")
    other = _line("f" * 64, "e" * 32, '"schema":5,"deps":[],"facts":null}')
    real_load = cache.load

    def load_then_replace(*args, **kwargs):
        # another run writes the pack (a new file renamed over it) after this run's lookup
        found = real_load(*args, **kwargs)
        if other not in pack.read_bytes():
            tmp = pack.with_name(".other.tmp")
            tmp.write_bytes(pack.read_bytes() + other + b"\n")
            os.replace(tmp, pack)
        return found

    monkeypatch.setattr(cache, "load", load_then_replace)
    _check_one(project, "util.py")
    lines = pack.read_bytes().splitlines()
    assert other in lines  # the pack was read again: the other run's line is kept
    assert model_line in entries(project)
    monkeypatch.undo()
    assert findings(project, use_cache=True) == findings(project, use_cache=False)


def test_a_damaged_line_costs_only_its_own_file(project, monkeypatch):
    honest = findings(project, use_cache=False)
    findings(project, use_cache=True)
    (pack,) = packs(project)
    lines = pack.read_bytes().splitlines()
    decoded = [cache.decode(json.loads(line)["facts"]) for line in lines]
    # util.py's facts and its result (a tuple whose first member is the FileResult)
    util = [i for i, d in enumerate(decoded) if (d[0] if isinstance(d, tuple) else d).path == "util.py"]
    assert len(util) == 2
    for i in util:
        lines[i] = lines[i][:-40]  # cut short: the head (key, file id) is intact
    pack.write_bytes(b"\n".join(lines) + b"\n")
    extracted = _counting_extract(monkeypatch)
    assert findings(project, use_cache=True) == honest
    assert extracted == ["util.py"]  # model.py's line, next to the damaged one, was served
    stored = entries(project)
    assert len(stored) == 2 and {cache.decode(d["facts"]).path for d in stored} == {"model.py", "util.py"}
    assert findings(project, use_cache=True) == honest and extracted == ["util.py"]


def test_a_pooled_run_reads_each_file_once_and_looks_up_nothing_twice(tmp_path, monkeypatch):
    """The parent of a pooled run reads only the files a pack has a line for; a worker does not
    look up again a file the parent found missing (a cold run read and hashed every file twice)."""
    from gradlint import api, inputs
    from gradlint.config import load_config

    (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\n")
    for i in range(40):
        (tmp_path / f"m{i}.py").write_text(LOG_SOFTMAX)
    config = load_config(start=tmp_path)
    files = [(p, p.name) for p in sorted(tmp_path.glob("m*.py"))]
    log = tmp_path.parent / f"{tmp_path.name}-calls.log"
    real_read, real_load = inputs.read_input, cache.load

    def note(what: str) -> None:  # in whichever process: the workers are forked with the patches
        with open(log, "a") as fh:
            fh.write(f"{what}\n")

    def reading(path, limit, *, whole=True):
        note(f"read {os.getpid()} {Path(path).name}")
        return real_read(path, limit, whole=whole)

    def loading(store, where, folder, expect):
        note(f"load {os.getpid()}")
        return real_load(store, where, folder, expect)

    monkeypatch.setattr(inputs, "read_input", reading)
    monkeypatch.setattr(cache, "load", loading)

    def calls() -> list[tuple[str, bool, str]]:
        got = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return [(c[0], c[1] == str(os.getpid()), c[2] if len(c) > 2 else "") for c in got]

    cold = api.collect_facts(files, config, jobs=2)
    made = calls()
    assert sorted(name for what, _parent, name in made if what == "read") == sorted(d for _p, d in files)
    assert not [c for c in made if c[1]]  # the parent read nothing, looked up nothing
    assert not [c for c in made if c[0] == "load"]  # nor did the workers: the parent knew
    for i in range(33):
        (tmp_path / f"m{i}.py").write_text(LOG_SOFTMAX + f"# {i}\n")
    again = api.collect_facts(files, config, jobs=2)
    made = calls()
    assert len([c for c in made if c[1] and c[0] == "read"]) == 40  # the parent: every file, once
    assert len([c for c in made if c[1] and c[0] == "load"]) == 40
    assert len([c for c in made if not c[1] and c[0] == "read"]) == 33  # the workers: the misses
    assert not [c for c in made if not c[1] and c[0] == "load"]
    assert [f.path for f in again] == [f.path for f in cold]
    assert api.collect_facts(files, config, jobs=2) == again


def test_a_pack_over_its_bound_is_a_miss_and_a_write_keeps_the_new_entries(project, monkeypatch):
    findings(project, use_cache=True)
    (pack,) = packs(project)
    size = pack.stat().st_size
    monkeypatch.setattr(cache, "MAX_PACK_BYTES", size - 1)
    honest = findings(project, use_cache=False)
    extracted = _counting_extract(monkeypatch)
    assert findings(project, use_cache=True) == honest
    assert sorted(extracted) == ["model.py", "util.py"]  # the pack was not read
    assert 0 < len(all_entries(project)) < 4  # what fits of this run's entries, not the old pack
    assert packs(project)[0].stat().st_size <= size - 1


def test_modules_summarised_for_a_lookup_are_written_at_the_end_of_the_run(tmp_path, monkeypatch):
    from gradlint.api import check_text
    from tests.test_project_index import TWOPKG

    shutil.copytree(TWOPKG, tmp_path / "p")
    project = tmp_path / "p"
    monkeypatch.chdir(project)
    config = Config(root=str(project))
    first = check_paths(["train.py"], config, use_cache=True, jobs=1)
    files = {cache.decode(d["facts"]).path for d in entries(project)}
    # the models train.py names, read on demand; train.py itself is served by its result
    assert "models/gan.py" in files and "train.py" not in files
    extracted = _counting_extract(monkeypatch)
    assert check_paths(["train.py"], config, use_cache=True, jobs=1).findings == first.findings
    assert extracted == []
    gan = project / "models" / "gan.py"
    gan.write_text(gan.read_text() + "\n# edited\n")
    check_text("train.py", (project / "train.py").read_bytes(), config)  # stdin: its lookups are cached too
    assert extracted == ["models/gan.py"]
    # train.py's result went stale through the module it reached: extracted, and its facts kept
    # for the next time (the edited module's were stored by the stdin run)
    assert check_paths(["train.py"], config, use_cache=True, jobs=1).findings == first.findings
    assert extracted == ["models/gan.py", "train.py"]
    gan.write_text(gan.read_text() + "# edited again\n")
    assert check_paths(["train.py"], config, use_cache=True, jobs=1).findings == first.findings
    assert extracted == ["models/gan.py", "train.py", "models/gan.py"]


def test_concurrent_runs_on_one_folder_leave_only_valid_entries(tmp_path):
    """Runs writing one pack at once: the last rename wins, and another's entries may be missing,
    never wrong or torn."""
    import subprocess

    files = {f"m{i}.py": (DEEP_SIGMOID if i % 2 else LOG_SOFTMAX).replace("\n", f"\n# {i}\n", 1) for i in range(12)}
    write_tree(tmp_path, files)
    honest = findings(tmp_path, use_cache=False)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for round_ in range(2):
        subsets = [sorted(files)[i::4] for i in range(4)] + [["."]]
        procs = [subprocess.Popen([sys.executable, "-m", "gradlint.cli", "check", "-q", "-j", "1", *subset],
                                  cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for subset in subsets]
        for proc in procs:
            assert proc.wait(timeout=300) in (0, 1), proc.stderr.read()
        stored = entries(tmp_path)
        assert stored and len(stored) == len({d["file"] for d in stored}) <= 12
        assert all(d["schema"] == cache.SCHEMA and FileFacts is type(cache.decode(d["facts"])) for d in stored)
        by_path = {f.path: f.source for f in (cache.decode(d["facts"]) for d in stored)}
        assert all(files[path] == source for path, source in by_path.items())
        assert findings(tmp_path, use_cache=True) == honest
        assert not list((tmp_path / ".gradlint_cache").glob(".*.tmp"))


def test_a_process_holds_a_few_packs_and_reads_again_what_it_let_go(tmp_path, monkeypatch):
    write_tree(tmp_path, {f"d{i}/m{j}.py": LOG_SOFTMAX.replace("f(", f"f{j}(") for i in range(5) for j in range(2)})
    honest = findings(tmp_path, use_cache=True)
    assert len(packs(tmp_path)) == 5
    monkeypatch.setattr(cache, "_HELD_PACKS", 2)
    read: list[str] = []
    real = cache._read_pack
    monkeypatch.setattr(cache, "_read_pack", lambda dfd, name: read.append(name) or real(dfd, name))
    extracted = _counting_extract(monkeypatch)
    assert findings(tmp_path, use_cache=True) == honest and extracted == []
    assert len(read) == 5 and len(cache._HELD) <= 2
    monkeypatch.setattr(cache, "_HELD_BYTES", 1)  # over the bound: only the pack in use is held
    assert findings(tmp_path, use_cache=True) == honest and extracted == [] and len(cache._HELD) == 1


def test_an_upgrade_replaces_the_entries_in_the_same_packs(project, monkeypatch):
    findings(project, use_cache=True)
    before = entries(project)
    monkeypatch.setattr(cache, "_CODE_FINGERPRINT", "0" * 64)  # other front-end code: no old key matches
    extracted = _counting_extract(monkeypatch)
    assert findings(project, use_cache=True) == findings(project, use_cache=False)
    assert sorted(extracted) == ["model.py", "model.py", "util.py", "util.py"]  # cached run missed, then --no-cache
    after = entries(project)
    assert len(packs(project)) == 1 and len(after) == 2
    assert {d["key"] for d in after}.isdisjoint(d["key"] for d in before)


def test_an_onnx_model_rewritten_while_checked_is_cached_under_the_bytes_read(tmp_path, monkeypatch):
    """The key and the facts come from one read: a model rewritten between the fingerprint and
    the decode must not be cached (and later served) under the old content's key."""
    from gradlint import api, inputs

    gen = _gen()
    gen.save(gen.mlp(depth=30, width=64, act="Sigmoid", std=1.0), tmp_path / "m.onnx")
    deep = (tmp_path / "m.onnx").read_bytes()
    gen.save(gen.mlp(depth=2, width=8, std="torch"), tmp_path / "small.onnx")
    shallow = (tmp_path / "small.onnx").read_bytes()
    (tmp_path / "small.onnx").unlink()
    real = inputs.read_input

    def read_then_rewrite(path, limit, *, whole=True):
        got = real(path, limit, whole=whole)
        Path(path).write_bytes(shallow)  # another process rewrites the model meanwhile
        return got

    monkeypatch.setattr(inputs, "read_input", read_then_rewrite)
    store, _ = cache.open_store(tmp_path, ".gradlint_cache")
    facts = api.cached_facts(tmp_path / "m.onnx", "m.onnx", store, 1 << 20)
    read_back = (tmp_path / "m.onnx").read_bytes()
    assert read_back == shallow and deep != shallow
    # the facts are those of the deep model whose bytes made the key
    assert len(facts.networks[0].params) == 30


def test_a_warm_run_reads_its_hits_without_a_pool_and_sends_only_misses_to_it(tmp_path, monkeypatch):
    from gradlint import api, pool
    from gradlint.config import load_config

    (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\n")
    for i in range(40):
        (tmp_path / f"m{i}.py").write_text(LOG_SOFTMAX)
    config = load_config(start=tmp_path)
    files = [(p, p.name) for p in sorted(tmp_path.glob("m*.py"))]
    cold = api.collect_facts(files, config, jobs=2)
    sent: list[int] = []
    real = pool.map_isolated

    def counting(fn, items, workers, **kw):
        sent.append(len(items))
        return real(fn, items, workers, **kw)

    monkeypatch.setattr(pool, "map_isolated", counting)
    assert api.collect_facts(files, config, jobs=2) == cold and sent == []  # all hits: no pool
    for i in range(33):  # 33 changed files: only they go to the workers
        (tmp_path / f"m{i}.py").write_text(LOG_SOFTMAX + f"# {i}\n")
    again = api.collect_facts(files, config, jobs=2)
    assert sent == [33] and [f.path for f in again] == [f.path for f in cold]


def test_an_entry_line_is_the_json_of_its_fields_in_order_and_its_key_is_the_salted_hash(tmp_path):
    """entry() writes the line's head by hand and _place remembers each file's place: the line is
    still exactly json.dumps of {key, file, schema, crc, deps, facts} and decodes to the facts, and the
    key is sha256 over each part followed by a NUL, as before (an upgrade only changes keys through
    gradlint's code)."""
    import hashlib

    (tmp_path / "data.bin").write_bytes(b"w")
    store, _ = cache.open_store(tmp_path, ".gradlint_cache")
    result = FileResult(path="m.onnx", findings=())
    facts = FileFacts(path="m.onnx", kind="onnx", source="é \udc80 \u2028", input_errors=(InputError("x", "\"q\""),))
    for display, kind, payload, depends in (("m.onnx", "result:onnx", (result, "", (), ""), ()),
                                            ("m.onnx", "onnx", facts, ("data.bin", "../up"))):
        where = cache.slot(store, display, kind, "sha256:" + "ab" * 32)

        def parts_hash(*parts: str) -> str:
            h = hashlib.sha256()
            for part in parts:
                h.update(part.encode("utf-8", "surrogateescape") + b"\0")
            return h.hexdigest()

        file = parts_hash(store.salt, kind, display)
        assert where.key == parts_hash(cache.code_fingerprint(), file, "sha256:" + "ab" * 32)
        assert where.file == file[:32] and cache._place(store, display, kind)[1] == file
        cache._PLACES.clear()  # the remembered place is the one computed afresh
        assert cache.slot(store, display, kind, "sha256:" + "ab" * 32) == where
        pack, file_id, line = cache.entry(where, payload, str(tmp_path), depends)
        doc = json.loads(line)
        assert list(doc) == ["key", "file", "schema", "crc", "deps", "facts"] and (pack, file_id) == (where.pack, where.file)
        assert line == json.dumps(doc, separators=(",", ":")).encode("ascii")
        assert doc["crc"] == zlib.crc32(line[line.index(b',"deps":'):])
        assert doc["deps"] == [[d, cache.fingerprint_dependency(str(tmp_path), d)] for d in depends]
        assert cache.decode(doc["facts"]) == payload
        cache.write(store, [(pack, file_id, line)])
        assert cache.load(store, where, str(tmp_path), type(payload)) == payload
    # what cannot be stored is no line at all
    where = cache.slot(store, "x.py", "python", "f")
    assert cache.entry(where, FileFacts(path="x.py", kind="python", training=object()), str(tmp_path)) is None
    assert cache.entry(where, (float("nan"), [1]), str(tmp_path)) is not None  # ($float, $list) as before


def test_places_are_per_salt_and_forgotten_past_their_bound(tmp_path, monkeypatch):
    """Two cache folders (two salts) never share a remembered place, and the memory of places is
    emptied when it grows past its bound, then filled again with the same answers."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, _ = cache.open_store(tmp_path / "a", ".gradlint_cache")
    two, _ = cache.open_store(tmp_path / "b", ".gradlint_cache")
    assert one.salt != two.salt
    assert cache._place(one, "m.py", "python")[:2] != cache._place(two, "m.py", "python")[:2]
    monkeypatch.setattr(cache, "_PLACES_MAX", 3)
    first = [cache._place(one, f"d/m{i}.py", "python") for i in range(10)]
    assert len(cache._PLACES) <= 3
    assert [cache._place(one, f"d/m{i}.py", "python") for i in range(10)] == first


def test_encoding_needs_no_field_types_and_decoding_still_checks_them(monkeypatch):
    """A worker of a cold run only encodes: resolving every record's field types there (typing's
    get_type_hints) was most of its first entry. Encoding leaves them alone; decoding resolves them
    and still refuses a value that does not fit."""
    facts = FileFacts(path="m.py", kind="python", networks=(Network(name="M", path="m.py", nodes=(
        Residual(body=(Param("l", "linear", 8, 8, InitSpec("normal", (("std", 1.0),))),)),)),),
        input_errors=(InputError("unreadable_source", "x"),))
    monkeypatch.setattr(codec, "_LAYOUTS", {})
    monkeypatch.setattr(codec, "_BY_TAG", {})
    monkeypatch.setattr(codec, "_ENCODING", {})
    resolved: list[type] = []
    real = cache.typing.get_type_hints

    def counting(cls, *a, **kw):
        resolved.append(cls)
        return real(cls, *a, **kw)

    monkeypatch.setattr(cache.typing, "get_type_hints", counting)
    text = cache.dumps(facts)
    assert resolved == [] and cache.dumps(facts) == text
    assert cache.loads(text) == facts and {FileFacts, Network, Residual, Param, InitSpec} <= set(resolved)
    bad = json.loads(text)
    bad["gradlint.facts.files.FileFacts"][0] = 1  # path: an int where a str belongs
    with pytest.raises(cache.CacheError, match="does not fit"):
        cache.loads(json.dumps(bad))
    with pytest.raises(cache.CacheError):  # and encoding still refuses what is not ours
        cache.dumps(FileFacts(path="x", kind="python", training=Path("x")))


def test_a_warm_run_served_by_the_cache_imports_no_parser_and_no_extractor(project):
    """The result cache answers without parsing: such a run must not pay for importing libcst
    (a fifth of a one-file run's time) nor the extractors; an edited file brings them back."""
    import subprocess

    probe = (
        "import sys, runpy\n"
        "sys.argv = ['gradlint', 'check', 'model.py', 'util.py']\n"
        "try:\n"
        "    runpy.run_module('gradlint.cli', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "loaded = sorted(m for m in ('libcst', 'gradlint.source.models', 'gradlint.source.numerics') if m in sys.modules)\n"
        "print('LOADED', ','.join(loaded) or '-', code)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def loaded() -> str:
        proc = subprocess.run([sys.executable, "-c", probe], cwd=project, env=env, capture_output=True, text=True,
                              timeout=120)
        return proc.stdout.strip().splitlines()[-1]

    cold = loaded()
    assert cold == "LOADED gradlint.source.models,gradlint.source.numerics,libcst 1", cold
    assert loaded() == "LOADED - 1"  # warm: the same findings (exit 1), from the cache alone
    (project / "util.py").write_text(LOG_SOFTMAX + "\n# edited\n")
    assert loaded() == cold


@pytest.mark.parametrize("how", ["writev", "short writes", "no writev"])
def test_a_pack_is_written_line_by_line_whole_however_the_writes_go(tmp_path, monkeypatch, how):
    # more lines than one writev takes, of sizes that end short writes inside a line and between two
    lines = [(b"x" * (i % 7)) + str(i).encode() for i in range(3 * cache._IOV_MAX + 5)]
    if how == "short writes":
        real = os.writev
        sizes = iter([1, 3, 5, 2, 1000, 9] * 10_000)
        monkeypatch.setattr(cache.os, "writev", lambda fd, parts: real(fd, [b"".join(parts)[:next(sizes)]]))
    elif how == "no writev":
        monkeypatch.delattr(cache.os, "writev")
    fd = os.open(tmp_path / "pack", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        cache._write_lines(fd, lines)
    finally:
        os.close(fd)
    assert (tmp_path / "pack").read_bytes() == b"".join(line + b"\n" for line in lines)


def test_a_first_write_of_a_pack_and_a_write_over_it_keep_the_newest_line_of_each_file(tmp_path):
    store, _ = cache.open_store(tmp_path, ".gradlint_cache")
    facts = FileFacts(path="a.py", kind="python")

    def made(display: str, content: str) -> cache.Pending:
        return cache.entry(cache.slot(store, display, "python", content), facts, str(tmp_path))

    assert cache.write(store, [made("a.py", "1"), made("b.py", "1")]) == 2
    cache.open_store(tmp_path, ".gradlint_cache")  # a new run: the pack as it is on disk
    assert cache.write(store, [made("a.py", "2")]) == 1
    pack = next((tmp_path / ".gradlint_cache").glob("p-*.jsonl")).read_bytes()
    assert pack.endswith(b"\n") and pack.count(b"\n") == 2  # a.py's new line, b.py's old one
    for display, content, hit in (("a.py", "2", True), ("b.py", "1", True), ("a.py", "1", False)):
        found = cache.load(store, cache.slot(store, display, "python", content), str(tmp_path), FileFacts)
        assert (found == facts) is hit, (display, content)


# --- which facts a run stores ---------------------------------------------------------------------


# A file no lookup reaches (no other file names lonely: a search for a function's callers reads
# every file that mentions its name).
LONELY = LOG_SOFTMAX.replace("def f(", "def lonely(")


def _stored_paths(root: Path) -> set[str]:
    return {cache.decode(d["facts"]).path for d in entries(root)}


def test_a_file_nobody_reaches_is_served_by_its_result_alone(tmp_path, monkeypatch):
    """Encoding every file's facts was most of what a cold cached run cost more than --no-cache; a
    file no other file's lookup reaches is never read from its facts entry, only from its result."""
    write_tree(tmp_path, {"model.py": MODEL_WITH_HEAD, "util.py": UTIL_WITH_HEAD, "leaf.py": LONELY})
    honest = findings(tmp_path, use_cache=False)
    assert findings(tmp_path, use_cache=True) == honest
    assert _stored_paths(tmp_path) == {"model.py", "util.py"}
    assert {cache.decode(d["facts"])[0].path for d in result_entries(tmp_path)} == {"model.py", "util.py", "leaf.py"}
    extracted = _counting_extract(monkeypatch)
    assert findings(tmp_path, use_cache=True) == honest and extracted == []
    # Another configuration: no result holds; the reached modules come from their facts, the leaf
    # is read again, and still not stored (a later run of that configuration has its result).
    other = findings(tmp_path, use_cache=True, config=Config(root=str(tmp_path), ignore=("GL101",)))
    assert extracted == ["leaf.py"]
    assert [code for _p, code, _l, _m in other] == ["GL302", "GL302"]
    assert _stored_paths(tmp_path) == {"model.py", "util.py"}


def test_a_pre_commit_run_reads_the_modules_a_full_run_reached(tmp_path, monkeypatch):
    # (util.py without its Wrapper of model's M, whose facts depend on model.py's content)
    util = UTIL_WITH_HEAD.split("\n\n\nfrom model import M")[0] + "\n"
    write_tree(tmp_path, {"model.py": MODEL_WITH_HEAD, "util.py": util, "leaf.py": LONELY})
    whole = [f for f in findings(tmp_path, use_cache=True) if f[0] == "model.py"]
    (tmp_path / "model.py").write_text(MODEL_WITH_HEAD + "\n# staged\n")
    extracted = _counting_extract(monkeypatch)
    assert findings(tmp_path, use_cache=True, targets=("model.py",)) == whole
    assert extracted == ["model.py"]  # util.py, which model.py builds Head from, came from the cache


def test_workers_store_the_same_facts_as_one_process(tmp_path):
    """With a pool (two workers, 32 files or more), the jobs store no facts and the parent stores
    those of the modules the rules reached, once they ran."""
    tree = {"model.py": MODEL_WITH_HEAD, "util.py": UTIL_WITH_HEAD}
    tree.update({f"leaf{i}.py": LONELY.replace("lonely(", f"lonely_{i}_(") for i in range(40)})
    write_tree(tmp_path, tree)
    honest = findings(tmp_path, use_cache=False)
    assert findings(tmp_path, use_cache=True, jobs=2) == honest
    assert _stored_paths(tmp_path) == {"model.py", "util.py"} and len(result_entries(tmp_path)) == 42
    assert findings(tmp_path, use_cache=True) == honest


def test_a_line_damaged_on_disk_is_a_miss_not_a_served_entry(project):
    """One flipped character in a stored finding (a disk error, a sync tool, a hand edit) left a
    line that still parses: it was served, and --fix applied a stored edit it had changed. Each
    line carries the crc of its dependencies and facts."""
    honest = findings(project, use_cache=False)
    assert findings(project, use_cache=True) == honest
    damaged = 0
    for pack in packs(project):
        data = pack.read_bytes()
        if b'"GL302"' in data:
            pack.write_bytes(data.replace(b'"GL302"', b'"GL305"'))
            damaged += 1
    assert damaged
    assert findings(project, use_cache=True) == honest


def test_a_cache_dir_naming_a_folder_of_the_users_is_not_used(project):
    """`cache-dir = "src"`: the cache's `*` .gitignore went into the user's folder, and git and
    gradlint's own discovery then ignored its files (the findings vanished, exit 0)."""
    (project / "src").mkdir()
    (project / "src" / "net.py").write_text(MODEL_WITH_HEAD)
    store, warning = cache.open_store(project, "src")
    assert store is None and "holds 'net.py', which gradlint did not write" in warning
    assert sorted(p.name for p in (project / "src").iterdir()) == ["net.py"]
    honest = findings(project, use_cache=False)
    assert findings(project, use_cache=True, config=Config(root=str(project), cache_dir="src")) == honest


def test_a_cache_folder_cut_short_by_a_full_disk_is_made_whole_again(project):
    """A .gitignore or salt created but not written (a full disk, a kill) turned the cache off,
    or left the cache folder visible to git, for good."""
    folder = project / ".gradlint_cache"
    folder.mkdir()
    (folder / ".gitignore").write_text(cache.MARKER[:5])
    (folder / "salt").write_bytes(b"")
    os.utime(folder / "salt", (time.time() - 60, time.time() - 60))
    assert cache.open_store(project, ".gradlint_cache") == (None, None)  # (the short salt, this run)
    assert (folder / ".gitignore").read_text() == cache.MARKER
    store, warning = cache.open_store(project, ".gradlint_cache")
    assert store is not None and warning is None and (folder / "salt").stat().st_size == 32


def test_identical_files_shown_alike_from_two_folders_keep_their_own_results(tmp_path):
    """`m.py` checked from a/pkg/ and from b/pkg/ (one module name, one display, one content):
    their result shared one entry, though per-file-ignores differ (matched from the root)."""
    deep = ("import torch.nn as nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.body = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(256, 256), nn.Sigmoid())])\n\n"
            "    def forward(self, x):\n        return self.body(x)\n")
    write_tree(tmp_path, {"a/pkg/__init__.py": "", "a/pkg/m.py": deep, "b/pkg/__init__.py": "", "b/pkg/m.py": deep,
                          "pyproject.toml": '[tool.gradlint]\nper-file-ignores = {"a/*" = ["GL101"]}\n'})
    from gradlint.config import load_config

    config = load_config(start=tmp_path)

    def codes(folder: str, use_cache: bool) -> list[str]:
        old = os.getcwd()
        os.chdir(tmp_path / folder)
        try:
            return [f.code for f in check_paths(["m.py"], config, use_cache=use_cache, jobs=1).findings]
        finally:
            os.chdir(old)

    assert codes("b/pkg", False) == ["GL101"] and codes("a/pkg", False) == []
    for first, second in (("b/pkg", "a/pkg"), ("a/pkg", "b/pkg")):
        shutil.rmtree(tmp_path / ".gradlint_cache", ignore_errors=True)
        codes(first, True)
        assert codes(second, True) == codes(second, False)


def test_no_entry_for_facts_whose_dependency_changed_during_the_run(tmp_path):
    """The files an entry depends on (a config class's module, ONNX external data) are
    fingerprinted when the entry is made, at the end of the run: one saved meanwhile was recorded
    as its new content beside facts read from the old, and served so until it changed again."""
    store, _ = cache.open_store(tmp_path, ".gradlint_cache")
    time.sleep(0.05)  # (the kernel's file times lag its clock by a tick at most)
    (tmp_path / "dep.py").write_text("WIDTH = 8\n")  # saved while the run goes on
    where = cache.slot(store, "m.py", "python", "f")
    facts = FileFacts(path="m.py", kind="python")
    assert cache.entry(where, facts, str(tmp_path), ("dep.py",)) is None
    assert cache.entry(where, facts, str(tmp_path)) is not None  # (no dependency: made)
    store, _ = cache.open_store(tmp_path, ".gradlint_cache")  # the next run: unchanged since it began
    assert cache.entry(where, facts, str(tmp_path), ("dep.py",)) is not None


def test_temporary_packs_of_killed_writes_are_removed_once_old(project):
    findings(project, use_cache=True)
    folder = project / ".gradlint_cache"
    old, young = folder / ".p-abc.jsonl.123.ff.tmp", folder / ".p-abc.jsonl.456.ee.tmp"
    old.write_bytes(b"x" * 100)
    young.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    findings(project, use_cache=True)
    assert not old.exists() and young.exists()
