"""Cross-file shapes of model code (issue 9 item 6): a table of classes imported from another file
(`from .acts import ACT2CLS; ACT2CLS[name]()`, `acts.ACT2CLS[name]()`), the class a function of
another file returns, then called (`act_layer = get_act_layer(name); act_layer()`), and a class of
the caller's file passed to a block of another file (`Block(norm_layer=MyNorm)`). Each is modelled
through the project index; each look-alike stays opaque (or quiet for the rules)."""

from __future__ import annotations

from pathlib import Path

from gradlint.api import _extract, check_paths
from gradlint.config import Config
from gradlint.describe import describe_paths
from gradlint.model.ir import Extern

ACTS = '''
import torch.nn as nn


class MyAct(nn.Module):
    def forward(self, x):
        return nn.functional.relu(x)


ACT2CLS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "mine": MyAct}

CHANGED = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}
CHANGED["sigmoid"] = nn.Tanh


def get_act_layer(name="relu"):
    if name is None:
        return None
    if not isinstance(name, str):
        return name
    return ACT2CLS[name.lower()]


def either(name, flag):
    if flag:
        return nn.ReLU
    return nn.Sigmoid
'''

BLOCKS = '''
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, d=64, norm_layer=nn.BatchNorm1d):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.norm = norm_layer(d)

    def forward(self, x):
        return self.norm(self.fc(x))


class MyNorm(nn.Module):
    """Same name as the caller's MyNorm: a different class."""
    def __init__(self, d):
        super().__init__()
        self.bn = nn.BatchNorm1d(d)

    def forward(self, x):
        return self.bn(x)
'''

MODEL = '''
import torch.nn as nn
from .acts import ACT2CLS, CHANGED, get_act_layer, either
from . import acts
from .blocks import Block


class WithTable(nn.Module):
    def __init__(self, d=64, act="sigmoid"):
        super().__init__()
        self.fc1 = nn.Linear(d, d)
        self.act = ACT2CLS[act]()
        self.fc2 = nn.Linear(d, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class WithModuleTable(nn.Module):
    def __init__(self, d=64, act="mine"):
        super().__init__()
        self.act = acts.ACT2CLS[act]()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return self.fc(self.act(x))


class FromFunction(nn.Module):
    def __init__(self, d=64, act="Tanh"):
        super().__init__()
        act_layer = get_act_layer(act)
        self.fc = nn.Linear(d, d)
        self.act = act_layer()

    def forward(self, x):
        return self.act(self.fc(x))


class MyNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln = nn.LayerNorm(d)

    def forward(self, x):
        return self.ln(x)


class WithLocalNorm(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.block = Block(d, norm_layer=MyNorm)

    def forward(self, x):
        return self.block(x)


# -- look-alikes: each stays opaque --------------------------------------------------------------

class ChangedTable(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.act = CHANGED["sigmoid"]()  # the table is changed after it is built

    def forward(self, x):
        return self.act(x)


class KeyNotKnown(nn.Module):
    def __init__(self, d=64, act=None):
        super().__init__()
        self.act = ACT2CLS[act.name]()

    def forward(self, x):
        return self.act(x)


class Undecided(nn.Module):
    def __init__(self, flag):
        super().__init__()
        act_layer = either("x", flag)
        self.act = act_layer()

    def forward(self, x):
        return self.act(x)


def _inner():
    class Hidden(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.ln = nn.LayerNorm(d)

        def forward(self, x):
            return self.ln(x)
    return Hidden


class WithUnknownNorm(nn.Module):
    def __init__(self, d=64, norm=None):
        super().__init__()
        self.block = Block(d, norm_layer=norm)

    def forward(self, x):
        return self.block(x)
'''


def _project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "acts.py").write_text(ACTS)
    (pkg / "blocks.py").write_text(BLOCKS)
    (pkg / "model.py").write_text(MODEL)
    return pkg


def _models(tmp_path: Path, monkeypatch) -> dict:
    pkg = _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    described = describe_paths([pkg / "model.py"], Config(root=str(tmp_path)))
    assert not described.errors
    return {m["name"]: m for m in described.models}


def _flat(nodes: list) -> list:
    out = []
    for n in nodes:
        out.append(n)
        out.extend(_flat(n.get("children", [])))
    return out


def _kinds(model: dict) -> list[tuple[str, str]]:
    return [(n["kind"], n["name"]) for n in _flat(model["nodes"])]


def _opaque(model: dict) -> list[str]:
    return [n["reason"] for n in _flat(model["nodes"]) if n["kind"] == "opaque"]


def test_a_table_of_classes_of_another_file(tmp_path, monkeypatch):
    models = _models(tmp_path, monkeypatch)
    assert [n["fn"] for n in _flat(models["WithTable"]["nodes"]) if n["kind"] == "activation"] == ["sigmoid"]
    assert not _opaque(models["WithTable"])
    assert models["WithTable"]["chains"]  # fc1 .. fc2 through the sigmoid
    # through the module (`acts.ACT2CLS`), to a class of that file: its own forward
    assert not _opaque(models["WithModuleTable"])
    assert ("param", "fc") in _kinds(models["WithModuleTable"])
    assert [n["fn"] for n in _flat(models["WithModuleTable"]["nodes"]) if n["kind"] == "activation"] == ["relu"]


def test_the_class_a_function_of_another_file_returns_called(tmp_path, monkeypatch):
    models = _models(tmp_path, monkeypatch)
    assert not _opaque(models["FromFunction"])
    assert [n["fn"] for n in _flat(models["FromFunction"]["nodes"]) if n["kind"] == "activation"] == ["tanh"]


def test_a_class_of_the_callers_file_passed_to_a_block_of_another(tmp_path, monkeypatch):
    models = _models(tmp_path, monkeypatch)
    # the caller's MyNorm (a LayerNorm), not blocks.py's MyNorm of the same name (a BatchNorm)
    assert _kinds(models["WithLocalNorm"]) == [("param", "block.fc"), ("norm", "block.norm.ln")]
    assert [n["norm"] for n in _flat(models["WithLocalNorm"]["nodes"]) if n["kind"] == "norm"] == ["layer"]


def test_look_alikes_stay_opaque(tmp_path, monkeypatch):
    models = _models(tmp_path, monkeypatch)
    for name in ("ChangedTable", "KeyNotKnown", "Undecided", "WithUnknownNorm"):
        assert _opaque(models[name]), name
    assert not any(n["kind"] == "activation" for n in _flat(models["ChangedTable"]["nodes"]))


def test_the_per_file_facts_hold_placeholders(tmp_path):
    pkg = _project(tmp_path)
    nets = {n.name: n for n in _extract(pkg / "model.py", "pkg/model.py").networks}
    (_fc1, act, _fc2) = nets["WithTable"].nodes
    assert isinstance(act, Extern) and act.cls == "ACT2CLS"
    assert act.args == (("[]", ("sigmoid",)), ("()", ((),)))
    (act,) = [n for n in nets["WithModuleTable"].nodes if isinstance(n, Extern)]
    assert act.cls == "acts.ACT2CLS" and act.args[0] == ("[]", ("mine",))
    # a key that is not a constant makes no placeholder: the module is unknown
    assert not any(isinstance(n, Extern) for n in nets["KeyNotKnown"].nodes)


DEEP = '''
import torch.nn as nn
from .acts import ACT2CLS


class DeepTable(nn.Module):
    def __init__(self, d=256, act="sigmoid"):
        super().__init__()
        layers = []
        for _ in range(12):
            layers += [nn.Linear(d, d), ACT2CLS[act]()]
        self.net = nn.Sequential(*layers)  # expect: GL101

    def forward(self, x):
        return self.net(x)


class DeepChanged(nn.Module):
    def __init__(self, d=256):
        super().__init__()
        layers = []
        for _ in range(12):
            layers += [nn.Linear(d, d), CHANGED_ACT["sigmoid"]()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


from .acts import CHANGED as CHANGED_ACT
'''


def test_rules_see_the_table_flagged_and_look_alike_quiet(tmp_path, monkeypatch):
    pkg = _project(tmp_path)
    (pkg / "deep.py").write_text(DEEP)
    monkeypatch.chdir(tmp_path)
    result = check_paths(["pkg/deep.py"], Config(root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    found = sorted((f.span.line, f.code) for f in result.findings)
    line = next(i for i, t in enumerate(DEEP.splitlines(), 1) if "expect: GL101" in t)
    # the deep sigmoid stack whose activation comes from another file's table is flagged; the one
    # whose table is changed after it is built is not (its activation is not known)
    assert [c for _l, c in found if c.startswith("GL10")] == ["GL101"]
    assert [(ln, c) for ln, c in found if c == "GL101"][0][0] <= line + 1


PARENTS = '''
import torch.nn as nn


class Base(nn.Module):
    def __init__(self, d=64, act_layer=nn.Sigmoid):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.act = act_layer()

    def forward(self, x):
        return self.act(self.fc(x))


class WithFeatures(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return self.features(x)

    def features(self, x):
        return self.fc(x)
'''

SUBS = '''
import torch.nn as nn
from .parents import Base, WithFeatures


class Sub(Base):
    def __init__(self, d=64):
        super().__init__(d, act_layer=nn.Tanh)
        self.out = nn.Linear(d, d)

    def forward(self, x):
        y = super().forward(x)
        return self.out(y)


# -- look-alikes: each stays opaque --------------------------------------------------------------

class ReplacesAct(Base):
    def __init__(self, d=64):
        super().__init__(d)
        self.act = nn.ReLU()  # the base's forward calls this one, not the one its re-run builds

    def forward(self, x):
        return super().forward(x)


class ReinitsBase(Base):
    def __init__(self, d=64):
        super().__init__(d)
        nn.init.zeros_(self.fc.weight)

    def forward(self, x):
        return super().forward(x)


class OverridesMethod(WithFeatures):
    def __init__(self, d=64):
        super().__init__(d)

    def features(self, x):
        return x

    def forward(self, x):
        return super().forward(x)
'''


def _subs(tmp_path: Path, monkeypatch) -> dict:
    pkg = _project(tmp_path)
    (pkg / "parents.py").write_text(PARENTS)
    (pkg / "subs.py").write_text(SUBS)
    monkeypatch.chdir(tmp_path)
    described = describe_paths([pkg / "subs.py"], Config(root=str(tmp_path)))
    assert not described.errors
    return {m["name"]: m for m in described.models}


def test_super_forward_of_a_base_of_another_file(tmp_path, monkeypatch):
    models = _subs(tmp_path, monkeypatch)
    sub = models["Sub"]
    assert not _opaque(sub)
    # the base's layers, built with the arguments of super().__init__ (Tanh, not its Sigmoid)
    assert [(n["kind"], n["name"]) for n in sub["nodes"]] == [("param", "fc"), ("activation", "act"), ("param", "out")]
    assert sub["nodes"][1]["fn"] == "tanh"
    for name in ("ReplacesAct", "ReinitsBase", "OverridesMethod"):
        assert _opaque(models[name]) == ["Base.forward: a class of another file, run on this instance"
                                         if name != "OverridesMethod" else
                                         "WithFeatures.forward: a class of another file, run on this instance"], name


CATALOGUE = '''
import torch.nn as nn
from timm.layers import get_act_layer, get_norm_layer


class Named(nn.Module):
    """timm's factories take names in any case, with underscores: 'LayerNorm', 'GELU'."""
    def __init__(self, d=64, norm="Layer_Norm", act="GELU"):
        super().__init__()
        self.norm = get_norm_layer(norm)(d)
        self.fc = nn.Linear(d, d)
        self.act = get_act_layer(act)()

    def forward(self, x):
        return self.act(self.fc(self.norm(x)))


class NotAName(nn.Module):
    def __init__(self, d=64, norm="no_such_norm"):
        super().__init__()
        self.norm = get_norm_layer(norm)(d)

    def forward(self, x):
        return self.norm(x)
'''


def test_timm_factories_of_the_catalogue_take_names_as_timm_does():
    from gradlint.model.ir import Activation, Norm, Opaque
    from gradlint.source import models, parse

    nets = {n.name: n for n in models.extract(parse("m.py", CATALOGUE))[0]}
    norm, _fc, act = nets["Named"].nodes
    assert isinstance(norm, Norm) and norm.kind == "layer"
    assert isinstance(act, Activation) and act.fn == "gelu"
    (unknown,) = nets["NotAName"].nodes
    assert isinstance(unknown, Opaque)


def test_the_keys_a_placeholder_carries_survive_the_cache(tmp_path, monkeypatch):
    """The table key, the call's arguments (a nested tuple) and a subclass's names go through the
    cache's codec unchanged, and a warm run gives the cold run's findings."""
    import json

    from gradlint import cache

    pkg = _project(tmp_path)
    (pkg / "deep.py").write_text(DEEP)
    (pkg / "parents.py").write_text(PARENTS)
    (pkg / "subs.py").write_text(SUBS)
    for file in ("model.py", "subs.py"):
        facts = _extract(pkg / file, f"pkg/{file}")
        assert cache.decode(json.loads(json.dumps(cache.encode(facts)))) == facts
    monkeypatch.chdir(tmp_path)

    def run():
        result = check_paths(["pkg"], Config(root=str(tmp_path)), use_cache=True, jobs=1)
        return sorted((f.path, f.span.line, f.code) for f in result.findings)

    cold = run()
    assert ("pkg/deep.py", 11, "GL101") in [(Path(p).as_posix(), ln, c) for p, ln, c in cold]
    assert run() == cold
