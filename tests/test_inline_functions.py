"""Modules built by a function of another file (`self.block = make_block(width)`), inlined like a
class of another file: the per-file lowering leaves a placeholder, the project index runs the
function in its own file with the caller's arguments and splices in the module it returns
(model/inline.py); None, a non-module or an unknown result leaves it opaque."""

from __future__ import annotations

import json
from pathlib import Path

from gradlint.api import _extract, check_paths, project_index
from gradlint.config import Config, load_config
from gradlint.model.ir import Extern, Param
from tests.conftest import run_cli

LAYERS = '''import torch.nn as nn


def make_block(width, act="sigmoid"):
    if act == "sigmoid":
        return nn.Sequential(nn.Linear(width, width), nn.Sigmoid())
    if act == "relu":
        block = nn.Sequential(nn.Linear(width, width), nn.ReLU())
        nn.init.kaiming_normal_(block[0].weight, nonlinearity="relu")
        return block
    return None


def hidden_width(width):
    return width * 2


def make_gate(width):
    return Gate(width)


class Gate(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.fc(x))


def encoder_layer(dim, post_norm=False):
    return nn.TransformerEncoderLayer(dim, 4, norm_first=not post_norm)
'''

MODEL = '''import torch.nn as nn

from .layers import make_block


class Deep(nn.Module):
    def __init__(self, width=64, depth=12):
        super().__init__()
        self.blocks = nn.Sequential(*[make_block(width{act}) for _ in range(depth)])
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        return self.head(self.blocks(x))
'''

OPAQUE = '''import torch.nn as nn

from .layers import hidden_width, make_block


class NoneBlocks(nn.Module):
    """make_block gives None for this activation: nothing to inline."""

    def __init__(self, width=64, depth=12):
        super().__init__()
        self.blocks = nn.Sequential(*[make_block(width, act="tanh") for _ in range(depth)])

    def forward(self, x):
        return self.blocks(x)


class NotAModule(nn.Module):
    """hidden_width returns a number: called as a layer it stays opaque, used as a width unknown."""

    def __init__(self, width=64, depth=12):
        super().__init__()
        self.blocks = nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)], nn.Sigmoid())
        self.odd = hidden_width(width)
        self.out = nn.Linear(self.odd, 1)

    def forward(self, x):
        return self.out(self.odd(self.blocks(x)))


class MaybeNone(nn.Module):
    """Whether make_block gives a module is not known here: `is not None` stays undecided."""

    def __init__(self, width=64, act="relu"):
        super().__init__()
        self.block = make_block(width, act=act)
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        if self.block is not None:
            x = self.block(x)
        return self.head(x)


class UnknownAct(nn.Module):
    """An argument not known here stays unknown in the other file: which block it builds is not
    guessed."""

    def __init__(self, act, width=64, depth=12):
        super().__init__()
        self.blocks = nn.Sequential(*[make_block(width, act=act) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(x)
'''

GATES = '''import torch.nn as nn

from .layers import make_gate


class Gates(nn.Module):
    def __init__(self, width=64, depth=12):
        super().__init__()
        self.gates = nn.ModuleList([make_gate(width) for _ in range(depth)])

    def forward(self, x):
        for gate in self.gates:
            x = gate(x)
        return x
'''

ENCODERS = '''import torch.nn as nn

from .layers import encoder_layer


class Encoder(nn.Module):
    def __init__(self, dim=256, depth=24):
        super().__init__()
        self.layers = nn.ModuleList([encoder_layer(dim) for _ in range(depth)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class PostNormEncoder(nn.Module):
    def __init__(self, dim=256, depth=24):
        super().__init__()
        self.layers = nn.ModuleList([encoder_layer(dim, post_norm=True) for _ in range(depth)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
'''

TRAIN = '''import torch
import torch.nn.functional as F

from .encoders import Encoder


def train(data):
    model = Encoder()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    for x, y in data:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
'''


def write(base: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return base


def project(tmp_path: Path, **files: str) -> Path:
    return write(tmp_path / "proj", {"pyproject.toml": "[tool.gradlint]\n", "pkg/__init__.py": "",
                                     "pkg/layers.py": LAYERS, **{f"pkg/{k}.py": v for k, v in files.items()}})


def findings(root: Path, checked: list[str], monkeypatch, use_cache: bool = False) -> list[tuple[str, int, str]]:
    monkeypatch.chdir(root)
    result = check_paths(checked, load_config(None, root), use_cache=use_cache, jobs=1)
    assert not result.internal_errors, [r.internal_error for r in result.internal_errors]
    return sorted((Path(f.path).as_posix(), f.span.line, f.code) for f in result.findings)


def models_of(root: Path, file: str, monkeypatch) -> dict:
    monkeypatch.chdir(root)
    return {m["name"]: m for m in json.loads(run_cli("model", file, "--format", "json").stdout)}


def test_a_deep_sigmoid_stack_built_by_a_function_of_another_file_is_flagged(tmp_path, monkeypatch):
    root = project(tmp_path, model=MODEL.format(act=""))
    # the placeholder: the function as written, the call's arguments
    ext = [n for n in _extract(root / "pkg/model.py", "pkg/model.py").networks[0].nodes if isinstance(n, Extern)]
    assert len(ext) == 12 and ext[0].cls == "make_block" and ext[0].args == ((0, (64,)),)
    # flagged at the user's line, alone and with the whole project
    assert findings(root, ["."], monkeypatch) == [("pkg/model.py", 9, "GL101")]
    assert findings(root, ["pkg/model.py"], monkeypatch) == [("pkg/model.py", 9, "GL101")]
    nodes = models_of(root, "pkg/model.py", monkeypatch)["Deep"]["nodes"]
    assert [n["name"] for n in nodes[:3]] == ["blocks.0.0", "blocks.0.1", "blocks.1.0"] and nodes[-1]["name"] == "head"
    assert not any(n["kind"] == "opaque" for n in nodes)


def test_the_same_stack_with_relu_and_he_init_is_quiet(tmp_path, monkeypatch):
    root = project(tmp_path, model=MODEL.format(act=', act="relu"'))
    assert findings(root, ["."], monkeypatch) == []
    nodes = models_of(root, "pkg/model.py", monkeypatch)["Deep"]["nodes"]
    # the block is the function's run for act="relu": its init is the function's kaiming_normal_
    assert nodes[0]["name"] == "blocks.0.0" and "kaiming" in json.dumps(nodes[0])
    assert not any(n["kind"] == "opaque" for n in nodes)


def test_a_function_returning_a_class_of_its_file_inlines_that_class(tmp_path, monkeypatch):
    root = project(tmp_path, gates=GATES)
    assert findings(root, ["."], monkeypatch) == [("pkg/gates.py", 9, "GL101")]
    nodes = models_of(root, "pkg/gates.py", monkeypatch)["Gates"]["nodes"]
    assert [n["name"] for n in nodes[:3]] == ["gates.0.fc", "gates.0.act", "gates.1.fc"]


def test_none_a_non_module_or_an_unknown_argument_stays_opaque(tmp_path, monkeypatch):
    root = project(tmp_path, opaque=OPAQUE)
    assert findings(root, ["."], monkeypatch) == []
    models = models_of(root, "pkg/opaque.py", monkeypatch)
    assert all(n["kind"] == "opaque" for n in models["NoneBlocks"]["nodes"])
    odd = [n for n in models["NotAModule"]["nodes"] if n["name"] == "odd"]
    assert odd and odd[0]["kind"] == "opaque"
    # an unknown activation: the block is not re-run with a guess, and the stack is not flagged
    assert all(n["kind"] == "opaque" for n in models["UnknownAct"]["nodes"])
    # whether the function gives a module is not decided in the caller's file: two paths
    net = next(n for n in _extract(root / "pkg/opaque.py", "pkg/opaque.py").networks if n.name == "MaybeNone")
    assert sorted((len(p), type(p[0]).__name__) for p in net.paths) == [(1, "Param"), (2, "Extern")]


def test_blocks_built_by_a_function_count_for_gl201_and_gl106(tmp_path, monkeypatch):
    root = project(tmp_path, encoders=ENCODERS, train=TRAIN)
    found = findings(root, ["."], monkeypatch)
    assert found == [("pkg/encoders.py", 20, "GL106"), ("pkg/train.py", 14, "GL201")]
    assert findings(root, ["pkg/train.py"], monkeypatch) == [("pkg/train.py", 14, "GL201")]


LIB_LAYERS = '''import torch.nn as nn


def make_block(width=256):
    return nn.Sequential(nn.Linear(width, width), nn.Sigmoid())
'''

LIB_MODEL = '''import torch.nn as nn

from fakelib.layers import make_block


class Deep(nn.Module):
    def __init__(self, depth=20):
        super().__init__()
        self.blocks = nn.ModuleList([make_block() for _ in range(depth)])
        self.head = nn.Linear(256, 10)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)
'''


def test_a_function_of_an_installed_library_builds_blocks_too(tmp_path, monkeypatch):
    write(tmp_path / "site", {"fakelib/__init__.py": "", "fakelib/layers.py": LIB_LAYERS})
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    proj = write(tmp_path / "proj", {"pyproject.toml": '[tool.gradlint]\nlibrary-paths = ["../site"]\n',
                                     "model.py": LIB_MODEL})
    assert findings(proj, ["model.py"], monkeypatch) == [("model.py", 9, "GL101")]
    (proj / "pyproject.toml").write_text("[tool.gradlint]\nread-libraries = false\n")
    assert findings(proj, ["model.py"], monkeypatch) == []


def test_a_warm_run_takes_the_function_re_runs_from_the_cache(tmp_path, monkeypatch):
    import gradlint.source as source

    root = project(tmp_path, model=MODEL.format(act=""))
    parses: list[str] = []
    real = source.parsed

    def counting(path, display, *args, **kwargs):
        parses.append(Path(path).name)
        return real(path, display, *args, **kwargs)

    monkeypatch.setattr(source, "parsed", counting)
    cold = findings(root, ["pkg/model.py"], monkeypatch, use_cache=True)
    assert cold and "layers.py" in parses
    parses.clear()
    assert findings(root, ["pkg/model.py"], monkeypatch, use_cache=True) == cold and parses == []


def test_the_cache_tells_a_function_from_a_class_of_the_same_name(tmp_path, monkeypatch):
    """A file binding one name both ways (a class, then a function of that name): the re-run of
    each is cached under its own key, and a warm run gives each its own IR back."""
    text = LAYERS + '''

class Stack(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        return self.fc(x)


def Stack(width):  # noqa: F811
    return nn.Sequential(nn.Linear(width, width), nn.Sigmoid(), nn.Linear(width, width))
'''
    root = write(tmp_path / "proj", {"pyproject.toml": "[tool.gradlint]\n", "pkg/__init__.py": "",
                                     "pkg/layers.py": text})
    monkeypatch.chdir(root)
    args = ((0, (32,)),)

    def both():
        index, _ = project_index([Path("pkg/layers.py")], Config(root=str(root)), use_cache=True)
        cls = index.loader.lower("pkg.layers", "pkg/layers.py", "Stack", args)
        fn = index.loader.lower("pkg.layers", "pkg/layers.py", "Stack", args, function=True)
        return [[(n.name, type(n).__name__) for n in net.nodes] for net in (cls, fn)]

    cold = both()
    assert cold == [[("fc", "Param")], [("0", "Param"), ("1", "Activation"), ("2", "Param")]]
    assert both() == cold
    assert all(isinstance(n, Param) for n in _extract(root / "pkg/layers.py", "pkg/layers.py").networks[0].params)


def test_an_imported_function_is_no_longer_a_decided_none_or_string():
    """The caller's file cannot tell what such a call returns: `x is None` and `x == "relu"` stay
    undecided, so neither branch is taken for it."""
    import libcst as cst

    from gradlint.source import parse
    from gradlint.source.engine.values import UNKNOWN
    from gradlint.source.models import FileModel

    fm = FileModel(parse("m.py", "import torch.nn as nn\nfrom other import get_act, get_name\n"))

    def ev(text):
        return fm.eval(cst.parse_expression(text), {})

    assert ev("get_act('relu') is None") is UNKNOWN and ev("get_name(3) == 'relu'") is UNKNOWN
    # a class of another file is a module, never None: that stays decided
    assert ev("Other() is None") is False


def test_a_changed_function_file_changes_the_callers_cached_result(tmp_path, monkeypatch):
    """The caller's result depends on the file of the function it inlined: a warm run after that
    file changes (sigmoid to ReLU with He init) gives the new answer."""
    root = project(tmp_path, model=MODEL.format(act=""))
    assert findings(root, ["pkg/model.py"], monkeypatch, use_cache=True) == [("pkg/model.py", 9, "GL101")]
    assert findings(root, ["pkg/model.py"], monkeypatch, use_cache=True) == [("pkg/model.py", 9, "GL101")]
    layers = root / "pkg/layers.py"
    layers.write_text(layers.read_text().replace('act="sigmoid"):', 'act="relu"):'))
    assert findings(root, ["pkg/model.py"], monkeypatch, use_cache=True) == []
