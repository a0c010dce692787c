"""gradlint.startup: the code dataclasses generate is compiled once and kept beside gradlint's
bytecode; a class made from the kept code behaves as one made by dataclasses alone, a changed
class compiles again, and a damaged or foreign file is only a slower start."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
from pathlib import Path

import pytest

from gradlint import startup
from tests.conftest import ROOT

SOURCE = '''
import dataclasses

@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int = 2
    tags: tuple = ()

@dataclasses.dataclass
class Box:
    items: list = dataclasses.field(default_factory=list)
    name: str = "box"
'''


def _module(name: str, source: str = SOURCE) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        exec(compile(source, name, "exec"), vars(module))
    finally:
        del sys.modules[name]
    return module


@pytest.fixture(autouse=True)
def writes_bytecode(monkeypatch) -> None:
    """As an installed gradlint runs (the test environment may say -B)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


@pytest.fixture
def compiles(monkeypatch) -> list[str]:
    """The source texts compiled while the hook is active (a kept code object is not compiled)."""
    made: list[str] = []
    real = compile

    def counting(source, *args, **kwargs):
        made.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(startup, "compile", counting, raising=False)
    return made


def _behaviour(module: types.ModuleType) -> tuple:
    p, q = module.Point(1), module.Point(1, 2, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 3
    a, b = module.Box(), module.Box()
    a.items.append(1)
    return (p == q, hash(p) == hash(q), repr(p), b.items, repr(a), a == module.Box([1]),
            [f.name for f in dataclasses.fields(module.Box)])


def test_classes_made_from_kept_code_behave_as_dataclasses_alone_makes_them(tmp_path, compiles):
    alone = _behaviour(_module("gl_startup_a"))
    with startup.compiled_once(str(tmp_path)):
        first = _behaviour(_module("gl_startup_a"))
    assert compiles and (tmp_path / startup._NAME).is_file()
    made = len(compiles)
    with startup.compiled_once(str(tmp_path)):
        again = _behaviour(_module("gl_startup_a"))
    assert len(compiles) == made  # every method came from the file
    assert alone == first == again
    assert "exec" not in vars(dataclasses)  # the builtin is dataclasses' exec again


def test_a_changed_class_compiles_again_and_keeps_what_did_not_change(tmp_path, compiles):
    with startup.compiled_once(str(tmp_path)):
        _module("gl_startup_b")
    made = len(compiles)
    changed = SOURCE.replace("y: int = 2", "y: int = 5\n    z: str = 'z'")
    with startup.compiled_once(str(tmp_path)):
        module = _module("gl_startup_b", changed)
    assert made < len(compiles) < 2 * made  # Point's methods again, Box's kept
    assert module.Point(1) == module.Point(1, 5, "z", ()) and repr(module.Point(0)) == "Point(x=0, y=5, z='z', tags=())"


@pytest.mark.parametrize("damage", [b"", b"garbage", None])
def test_a_damaged_or_foreign_file_only_means_compiling(tmp_path, compiles, damage):
    with startup.compiled_once(str(tmp_path)):
        _module("gl_startup_c")
    made = len(compiles)
    path = tmp_path / startup._NAME
    data = path.read_bytes()
    # damaged, empty, or written by another Python (its magic number)
    path.write_bytes(damage if damage is not None else b"\0\0\0\0" + data[4:])
    with startup.compiled_once(str(tmp_path)):
        module = _module("gl_startup_c")
    assert len(compiles) == 2 * made
    assert _behaviour(module) == _behaviour(_module("gl_startup_c"))
    assert path.read_bytes().startswith(data[:4])  # written again, whole


def test_nothing_is_written_where_python_writes_no_bytecode(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    with startup.compiled_once(str(tmp_path)):
        _module("gl_startup_d")
    assert not list(tmp_path.iterdir())


def test_a_check_keeps_the_code_and_finds_the_same(tmp_path):
    """Two `gradlint check` processes, the second with the code the first kept (in a
    PYTHONPYCACHEPREFIX of its own): the same report."""
    (tmp_path / "m.py").write_text("import torch\n\ndef f(y):\n    return torch.log(torch.softmax(y, 1))\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc")}
    runs = [subprocess.run([sys.executable, "-m", "gradlint.cli", "check", "--no-cache", "m.py"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert runs[0].returncode == runs[1].returncode == 1 and "GL302" in runs[0].stdout
    assert runs[0].stdout == runs[1].stdout
    assert list((tmp_path / "pyc").rglob(startup._NAME))
