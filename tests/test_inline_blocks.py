"""Blocks defined in other files of the project, inlined with their module paths: the per-file
lowering leaves an `Extern` placeholder, the project index resolves it (model/inline.py)."""

from __future__ import annotations

import json
from pathlib import Path

from gradlint.api import _extract
from gradlint.model.inline import _qualified, _same_arguments, inline
from gradlint.model.ir import ClassArg, Extern, InitSpec, Network, Opaque, Param, SeqArg, SymArg, walk
from tests.conftest import FIXTURES, run_cli
from tests.test_project_index import expected, findings_for, project_files

CROSS = FIXTURES / "architecture" / "crossfile"


def test_same_findings_alone_with_its_folder_and_with_the_project(monkeypatch):
    whole = {f: findings_for(CROSS, ["."], f, monkeypatch) for f in project_files(CROSS)}
    for file in project_files(CROSS):
        alone = findings_for(CROSS, [file], file, monkeypatch)
        assert alone == whole[file], file
        assert [(line, code) for line, _c, code, _m in whole[file]] == expected(CROSS / file), file
    # the stacks of model.py are flagged at model.py's own lines, not at blocks.py's (the init of
    # NormalTanh included, which GL104 names)
    assert [code for _l, _c, code, _m in whole["model.py"]] == ["GL101"] * 4 + ["GL102", "GL104"]


def test_the_lowering_leaves_a_placeholder_per_block():
    facts = _extract(CROSS / "model.py", "model.py")
    net = next(n for n in facts.networks if n.name == "DeepSigmoid")
    externs = [n for n in net.nodes if isinstance(n, Extern)]
    assert len(externs) == 20 and externs[0].name == "blocks.0"
    assert externs[0].cls == "SigmoidBlock" and externs[0].args == ()
    # no project index: nothing changes, the placeholder is an opaque node
    assert inline(net, None) is net


def test_arguments_other_than_the_defaults_need_the_block_re_run():
    facts = _extract(CROSS / "model.py", "model.py")
    net = next(n for n in facts.networks if n.name == "OtherWidth")
    ext = net.nodes[0]
    assert isinstance(ext, Extern) and ext.args == (("width", (128,)),)
    block = next(n for n in _extract(CROSS / "blocks.py", "blocks.py").networks if n.name == "SigmoidBlock")
    assert block.signature == (("width", False, "default", 256),)
    assert not _same_arguments(ext, block)

    def call(args):
        return _same_arguments(Extern("b", "", cls="SigmoidBlock", args=args), block)

    assert call(((0, (256,)),)) and call(())
    assert not call(((0, (256.0,)),))  # 256.0 is not 256
    assert not call(((0, ()),))  # an argument that is not a known constant
    assert not call(None)  # *args / **kwargs
    assert not call((("depth", (3,)),))  # no such parameter
    assert not call(((0, (256,)), ("width", (256,))))  # given twice
    # a parameter without a default is held by its name: it stands for a value not known, or
    # known by its text only; a known value is not the IR's (a width an absolute init depends on)
    free = Network("Free", "blocks.py", (), signature=(("dim", False, "symbol", None), ("act", True, "fixed", None)))
    assert _same_arguments(Extern("b", "", cls="Free", args=((0, ()),)), free)
    assert _same_arguments(Extern("b", "", cls="Free", args=(("dim", (SymArg("width"),)),)), free)
    assert not _same_arguments(Extern("b", "", cls="Free", args=(("dim", (512,)),)), free)
    assert not _same_arguments(Extern("b", "", cls="Free", args=(("act", ("relu",)),)), free)  # a non-constant default
    # without a way to re-run the other file's class with these arguments: opaque
    resolved = inline(net, lambda text: [(block, None)])
    assert all(isinstance(n, Opaque) for n in resolved.nodes)
    # re-run with them (as the project index does): the block's layers at width 128
    asked = []
    narrow = Network("SigmoidBlock", "blocks.py", (Param("fc", "linear", 128, 128, InitSpec("torch-linear")),))
    resolved = inline(net, lambda text: [(block, None, lambda args: asked.append(args) or narrow)])
    assert set(asked) == {(("width", (128,)),)}
    assert [(n.name, n.fan_in) for n in resolved.nodes[:2]] == [("blocks.0.fc", 128), ("blocks.1.fc", 128)]
    # a re-run that cannot hold for them (None) leaves the placeholder
    assert all(isinstance(n, Extern) for n in inline(net, lambda text: [(block, None, lambda args: None)]).nodes)


def _fc(name: str) -> Param:
    return Param(name, "linear", 8, 8, InitSpec("torch-linear"))


def test_renamed_under_the_placeholder_and_parent_inits_after_the_block_apply():
    block = Network("Blk", "blocks.py", (_fc("fc"), _fc("out")), signature=())
    zero = InitSpec("zeros")
    ext = Extern("enc.0", "Blk: a class gradlint does not see", cls="Blk", args=(),
                 inits=(((("conv2d",)), "weight", InitSpec("ones")), ((), "weight", zero)))
    parent = Network("P", "model.py", (ext, _fc("head")), params=(_fc("head"),))
    out = inline(parent, lambda text: [(block, None)] if text == "Blk" else [])
    assert [n.name for n in out.nodes] == ["enc.0.fc", "enc.0.out", "head"]
    assert out.nodes[0].init == zero  # the conv-only init does not reach a linear layer
    assert [p.name for p in out.params] == ["head", "enc.0.fc", "enc.0.out"]
    # a name that stands for two classes, or for none, stays a placeholder
    two = inline(parent, lambda text: [(block, None), (block, None)])
    assert isinstance(two.nodes[0], Extern)


def test_a_block_with_several_paths_gives_the_parent_one_path_per_choice():
    branched = Network("Blk", "blocks.py", (_fc("fc"),), variants=((_fc("other"), _fc("more")),), signature=())
    ext = [Extern(f"b.{i}", "", cls="Blk", args=()) for i in range(3)]
    parent = Network("P", "model.py", tuple(ext))
    out = inline(parent, lambda text: [(branched, None)])
    # every instance of one class takes the same path: two paths, not eight
    assert [[n.name for n in p] for p in out.paths] == [
        ["b.0.fc", "b.1.fc", "b.2.fc"], ["b.0.other", "b.0.more", "b.1.other", "b.1.more", "b.2.other", "b.2.more"]]
    # past MAX_PATHS paths in all, the blocks with several paths stay opaque
    many = Network("Blk", "blocks.py", (_fc("a"),), variants=tuple((_fc(f"v{i}"),) for i in range(9)), signature=())
    out = inline(parent, lambda text: [(many, None)])
    assert len(out.paths) == 1 and all(isinstance(n, Extern) for n in out.nodes)


def test_nested_blocks_resolve_in_their_own_file():
    inner = Network("Inner", "blocks.py", (_fc("fc"),), signature=())
    outer = Network("Outer", "blocks.py", (Extern("layers.0", "", cls="Inner", args=()),), signature=())

    def find_blocks(text):  # names as blocks.py writes them
        return [(inner, find_blocks)] if text == "Inner" else []

    def find_model(text):  # names as model.py writes them: only Outer is imported there
        return [(outer, find_blocks)] if text == "Outer" else []

    parent = Network("P", "model.py", (Extern("body", "", cls="Outer", args=()),))
    assert [n.name for n in walk(inline(parent, find_model).nodes)] == ["body.layers.0.fc"]


def test_apply_before_the_blocks_are_built_does_not_reach_them():
    facts = _extract(CROSS / "model_zeroed.py", "model_zeroed.py")
    nets = {n.name: n for n in facts.networks}
    assert [e.inits[-1][2].scheme for e in nets["ZeroedStack"].nodes] == ["zeros"] * 3
    assert all(e.inits == () for e in nets["ZeroedBeforeBuilt"].nodes)


def test_model_command_shows_inlined_layers_with_module_paths():
    res = run_cli("model", str(CROSS / "model.py"), "--format", "json")
    models = {m["name"]: m for m in json.loads(res.stdout)}
    names = [n["name"] for n in models["DeepSigmoid"]["nodes"]]
    assert names[:3] == ["blocks.0.fc", "blocks.0.act", "blocks.1.fc"] and names[-1] == "head"
    assert not any(n["kind"] == "opaque" for n in models["DeepSigmoid"]["nodes"])
    assert models["Stacked"]["nodes"][0]["name"] == "body.0.layers.0.fc"
    assert [n["fan_in"] for n in models["OtherWidth"]["nodes"][:3:2]] == [128, 128]
    quiet = {m["name"]: m for m in json.loads(run_cli("model", str(CROSS / "model_quiet.py"), "--format", "json").stdout)}
    assert len(quiet["UnknownNorm"]["other_paths"]) == 1
    assert quiet["DeepNormed"]["nodes"][1]["kind"] == "norm"


def test_a_block_whose_layers_init_changes_stays_opaque():
    facts = _extract(CROSS / "model_quiet.py", "model_quiet.py")
    net = next(n for n in facts.networks if n.name == "ReinitInside")
    assert all(type(n) is Opaque and "__init__ changes" in n.what for n in net.nodes)


ARGS = FIXTURES / "architecture" / "crossfile_args"


def test_blocks_re_run_with_the_layer_classes_and_widths_the_caller_passes(monkeypatch):
    files = project_files(ARGS)
    whole = {f: findings_for(ARGS, ["."], f, monkeypatch) for f in files}
    for file in files:
        assert findings_for(ARGS, [file], file, monkeypatch) == whole[file], file
        assert [(line, code) for line, _c, code, _m in whole[file]] == expected(ARGS / file), file
    assert len(whole["nets/model.py"]) == 4 and not whole["nets/model_quiet.py"]
    # GL201 counts the blocks of another file as GL106 does: 24 inlined blocks are a deep transformer
    assert [(code, "ViT is a transformer of 24 blocks" in m) for _l, _c, code, m in whole["nets/train.py"]] == [("GL201", True)]
    assert [code for _l, _c, code, _m in whole["nets/vit.py"]] == ["GL106"]
    assert not whole["nets/train_quiet.py"]


def test_placeholders_carry_lists_of_known_items():
    # builders.py's mlp([obs_dim] + [hidden] * depth + [1], nn.Sigmoid): the widths go as one list
    facts = _extract(ARGS / "nets" / "model.py", "nets/model.py")
    (critic,) = [n for n in facts.networks if n.name == "SigmoidCritic"]
    (placeholder,) = critic.nodes
    assert isinstance(placeholder, Extern) and placeholder.cls == "mlp"
    assert placeholder.args == ((0, (SeqArg((17,) + (256,) * 12 + (1,), False),)), (1, (ClassArg("torch", "Sigmoid"),)))
    quiet = _extract(ARGS / "nets" / "model_quiet.py", "nets/model_quiet.py")
    nets = {n.name: n for n in quiet.networks}
    assert nets["ShallowSigmoidCritic"].nodes[0].args[0] == (0, (SeqArg((17, 256, 1), True),))
    # `[obs_dim] + hidden + [1]` with `hidden` unknown: not carried
    assert nets["WidthsFromTheCaller"].nodes[0].args[0] == (0, ())


def test_placeholders_carry_symbols_and_classes():
    facts = _extract(ARGS / "nets" / "model.py", "nets/model.py")
    nets = {n.name: n for n in facts.networks}
    mlp = nets["SigmoidMlpStack"].nodes[0]
    assert isinstance(mlp, Extern) and mlp.cls == "Mlp"
    assert dict(mlp.args) == {"in_features": (256,), "hidden_features": (512,), "act_layer": (ClassArg("torch", "Sigmoid"),)}
    conv = nets["LeakyConvStack"].nodes[0]
    assert dict(conv.args)["act_layer"] == (ClassArg("torch", "LeakyReLU", (), (("negative_slope", 0.2),)),)
    # a class of another file held in a parameter: called, it is a placeholder of that class
    block = nets["BlockAsArgument"].nodes[0]
    assert isinstance(block, Extern) and block.cls == "Mlp" and block.args == ((0, (128,)), ("act_layer", (ClassArg("torch", "Sigmoid"),)))
    # a symbol of the caller travels as its text
    quiet = {n.name: n for n in _extract(ARGS / "nets" / "model_quiet.py", "nets/model_quiet.py").networks}
    assert dict(quiet["NormChosenOutside"].nodes[0].args)["norm_layer"] == (SymArg("norm_layer"),)
    # the block's own defaults: a torch class default is a default like a constant
    mlp_block = next(n for n in _extract(ARGS / "nets" / "layers.py", "nets/layers.py").networks if n.name == "Mlp")
    assert ("act_layer", False, "default", ClassArg("torch", "GELU")) in mlp_block.signature


def test_a_class_of_another_file_passed_as_a_value_is_named_by_its_qualified_name():
    class Scope:
        def resolve(self, text):
            return {"LayerNorm": ("pkg.norms.LayerNorm",), "Twice": ("a.Twice", "b.Twice")}.get(text, ())

    ln = ClassArg("extern", "LayerNorm")
    args = ((0, (SymArg("dim"),)), ("norm_layer", (ln,)), ("act", (ClassArg("extern", "Twice"),)), ("x", ()))
    assert _qualified(args, Scope()) == (
        (0, (SymArg("dim"),)), ("norm_layer", (ClassArg("extern", "pkg.norms.LayerNorm"),)), ("act", ()), ("x", ()))
    # two files may both write LayerNorm for two different classes: never taken for a default
    block = Network("B", "b.py", (), signature=(("norm_layer", False, "default", ln),))
    assert not _same_arguments(Extern("b", "", cls="B", args=(("norm_layer", (ln,)),)), block)
    torch_ln = ClassArg("torch", "LayerNorm")
    block = Network("B", "b.py", (), signature=(("norm_layer", False, "default", torch_ln),))
    assert _same_arguments(Extern("b", "", cls="B", args=(("norm_layer", (torch_ln,)),)), block)


def test_a_block_is_not_re_run_for_calls_python_would_refuse_or_it_cannot_bind():
    from gradlint.source import parse
    from gradlint.source.rerun import lower_class

    src = parse("blk.py", (
        "import torch.nn as nn\n"
        "class Blk(nn.Module):\n"
        "    def __init__(self, dim, act_layer=nn.ReLU):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(dim, dim)\n"
        "        self.act = act_layer()\n"
        "    def forward(self, x):\n"
        "        return self.act(self.fc(x))\n"
        "class Open(nn.Module):\n"
        "    def __init__(self, dim, **kwargs):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(dim, dim)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n"))
    ok = lower_class(src, "Blk", ((0, (64,)), ("act_layer", (ClassArg("torch", "Tanh"),))))
    assert [(type(n).__name__, getattr(n, "fn", None)) for n in ok.nodes] == [("Param", None), ("Activation", "tanh")]
    assert ok.nodes[0].fan_in == 64
    unknown = lower_class(src, "Blk", ((0, ()), ("act_layer", ())))
    assert unknown.nodes[0].fan_in is None and isinstance(unknown.nodes[1], Opaque)
    assert lower_class(src, "Blk", ((0, (64,)), ("depth", (3,)))) is None  # no such parameter
    assert lower_class(src, "Blk", (("dim", (64,)), (0, (64,)))) is None  # positional after keyword
    assert lower_class(src, "Blk", ((0, (64,)), ("dim", (64,)))) is None  # given twice
    assert lower_class(src, "Blk", ((0, (64,)), (1, (ClassArg("torch", "Tanh"),)), (2, (3,)))) is None  # too many
    # **kwargs that the call gives nothing: the class re-run, `kwargs` unknown
    assert [n.fan_in for n in lower_class(src, "Open", ((0, (64,)),)).nodes] == [64]
    # what goes to **kwargs (timm's `**dd`: device, dtype) is open, as every use of `kwargs` is
    assert [n.fan_in for n in lower_class(src, "Open", ((0, (64,)), ("device", (None,)))).nodes] == [64]
    assert lower_class(src, "Missing", ()) is None


def test_the_arguments_a_placeholder_carries_survive_the_cache(tmp_path, monkeypatch):
    import shutil

    from gradlint.api import check_paths
    from gradlint.config import Config

    root = tmp_path / "proj"
    shutil.copytree(ARGS, root)
    monkeypatch.chdir(root)

    def run():
        result = check_paths(["."], Config(root=str(root)), use_cache=True, jobs=1)
        return sorted((f.path, f.span.line, f.code, f.message) for f in result.findings)

    cold = run()
    assert any((root / ".gradlint_cache").iterdir())
    assert run() == cold and len(cold) == 6


def test_a_warm_run_takes_re_run_blocks_from_the_cache(tmp_path, monkeypatch):
    """Re-running a block of another file with a caller's arguments parses that file; the result
    is cached by the file's content, the class and the arguments, so a warm run parses nothing,
    and a changed block file is re-run again."""
    import shutil

    import gradlint.source as source
    from gradlint.api import check_paths
    from gradlint.config import Config

    root = tmp_path / "proj"
    shutil.copytree(ARGS, root)
    monkeypatch.chdir(root)
    parses: list[str] = []
    real = source.parsed

    def counting(path, display, *args, **kwargs):
        parses.append(str(path))
        return real(path, display, *args, **kwargs)

    monkeypatch.setattr(source, "parsed", counting)

    def run():
        result = check_paths(["."], Config(root=str(root)), use_cache=True, jobs=1)
        return sorted((f.path, f.span.line, f.code, f.message) for f in result.findings)

    cold = run()
    assert parses, "the fixture re-runs blocks of other files"
    block = Path(parses[0])
    parses.clear()
    assert run() == cold and parses == []
    # the block's file changes: its re-runs are stale, and made again
    block.write_text(block.read_text() + "\n# changed\n")
    run()
    assert parses


SHAPES = '''import torch
import torch.nn as nn


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return torch.permute(x, self.dims)


class Noop(nn.Module):
    def forward(self, x):
        return x


class Summed(nn.Module):
    def forward(self, x):
        return x.sum(-1, keepdim=True)


class Cumulative(nn.Module):
    def forward(self, x):
        return x.cumsum(-1)


class Frozen(nn.Module):
    def forward(self, x):
        with torch.no_grad():
            return x * 0.5
'''

STACK = '''import torch.nn as nn

from .shapes import {block}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), {call}, nn.Tanh()) for _ in range(30)])

    def forward(self, x):
        return self.body(x)
'''


def _layerless_project(tmp_path: Path, block: str, call: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\n')
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "shapes.py").write_text(SHAPES)
    (tmp_path / "pkg" / "model.py").write_text(STACK.format(block=block, call=call))
    return tmp_path


def test_a_block_of_another_file_with_no_layer_passes_the_chain_on(tmp_path, monkeypatch):
    # torchvision's ConvNeXt block holds `Permute([0, 2, 3, 1])` of ops/misc.py: a followed forward
    # with no node is the input passed on, as the same class in the same file is; it used to stay
    # opaque (a placeholder with nothing to splice in) and cut every chain through it
    for block, call in (("Permute", "Permute([1, 0])"), ("Noop", "Noop()")):
        root = _layerless_project(tmp_path / block, block, call)
        monkeypatch.chdir(root)
        got = json.loads(run_cli("check", "--no-cache", "--format", "json", "pkg").stdout)
        assert [(f["code"], f["location"]["row"]) for f in got] == [("GL101", 9)], block
        assert "across 30 layers" in got[0]["message"]
        nodes = {m["name"]: m for m in json.loads(run_cli("model", "pkg/model.py", "--format", "json").stdout)}["Net"]["nodes"]
        assert "opaque" not in json.dumps(nodes), block


def test_a_block_of_another_file_whose_forward_is_not_modelled_still_cuts_the_chain(tmp_path, monkeypatch):
    root = _layerless_project(tmp_path, "Cumulative", "Cumulative()")
    monkeypatch.chdir(root)
    assert json.loads(run_cli("check", "--no-cache", "--format", "json", "pkg").stdout) == []
    nodes = {m["name"]: m for m in json.loads(run_cli("model", "pkg/model.py", "--format", "json").stdout)}["Net"]["nodes"]
    assert "opaque" in json.dumps(nodes)


def test_a_block_of_another_file_that_sums_a_dimension_cuts_the_chain_with_an_unknown_scale(tmp_path, monkeypatch):
    # a sum over a dimension is modelled (no opaque node), but the scale after it is not known
    # (it grows with how many parts are added and how alike they are): no chain runs across it
    root = _layerless_project(tmp_path, "Summed", "Summed()")
    monkeypatch.chdir(root)
    assert json.loads(run_cli("check", "--no-cache", "--format", "json", "pkg").stdout) == []
    nodes = {m["name"]: m for m in json.loads(run_cli("model", "pkg/model.py", "--format", "json").stdout)}["Net"]["nodes"]
    assert "opaque" not in json.dumps(nodes) and "scale:?" in json.dumps(nodes)


def test_a_block_of_another_file_that_returns_under_no_grad_ends_every_chain(tmp_path, monkeypatch):
    # spliced in as a scale, a forward that computes its output under no_grad made 30 Linear+Tanh
    # layers one chain (GL101), though no layer before the last block gets any gradient (one that
    # returns its input as it came, after updating statistics, hands the gradient on: test below)
    root = _layerless_project(tmp_path, "Frozen", "Frozen()")
    monkeypatch.chdir(root)
    assert json.loads(run_cli("check", "--no-cache", "--format", "json", "pkg").stdout) == []
    nodes = {m["name"]: m for m in json.loads(run_cli("model", "pkg/model.py", "--format", "json").stdout)}["Net"]["nodes"]
    assert "computed without gradient" in json.dumps(nodes)


def test_a_block_that_only_names_its_input_under_no_grad_keeps_the_chain(tmp_path, monkeypatch):
    # `with torch.no_grad(): self.n += 1; return x` returns the caller's tensor, gradient and all
    # (a third read: marking it ended a chain that really vanishes, measured ratio 2e-17)
    root = _layerless_project(tmp_path, "Noop", "Noop()")
    shapes = root / "pkg" / "shapes.py"
    shapes.write_text(shapes.read_text().replace(
        "class Noop(nn.Module):\n    def forward(self, x):\n        return x\n",
        "class Noop(nn.Module):\n    def forward(self, x):\n        with torch.no_grad():\n            return x\n"))
    monkeypatch.chdir(root)
    got = json.loads(run_cli("check", "--no-cache", "--format", "json", "pkg").stdout)
    assert [f["code"] for f in got] == ["GL101"] and "across 30 layers" in got[0]["message"]
