"""Models as real projects write them (issue 9, item 6): what the source front-end lowers them to."""

from __future__ import annotations

from gradlint.api import check_source
from gradlint.model.blocks import transformer_blocks
from gradlint.model.ir import Activation, Network, Norm, Opaque, Param, Residual, walk
from gradlint.model.propagation import analyse
from gradlint.source import models, parse
from tests.conftest import ROOT


def lower(source: str, path: str = "m.py"):
    networks, summaries = models.extract(parse(path, source))
    return {n.name: n for n in networks}, {s.name: s for s in summaries}


def kinds(nodes) -> list[str]:
    return [type(n).__name__ for n in nodes]


POST_LN_SDPA = (ROOT / "tests" / "data" / "post_ln_sdpa.py").read_text()


def test_sdpa_transformer_is_one_definition_for_gl106_and_gl201():
    # A 24-block Post-LN model whose attention is F.scaled_dot_product_attention: GL106 called it
    # a deep transformer and GL201 did not; both now read gradlint.model.blocks.
    nets, sums = lower(POST_LN_SDPA)
    assert sums["GPT"].transformer_blocks == 24
    assert len(transformer_blocks(nets["GPT"].nodes)) == 24
    codes = sorted(f.code for f in check_source(POST_LN_SDPA))
    assert codes == ["GL106", "GL201"]


def test_pre_ln_sdpa_transformer_is_deep_for_gl201_but_not_post_ln():
    pre = POST_LN_SDPA.replace("x = self.norm1(x + self.attend(x))", "x = x + self.attend(self.norm1(x))").replace(
        "x = self.norm2(x + self.ff(x))", "x = x + self.ff(self.norm2(x))")
    nets, sums = lower(pre)
    assert sums["GPT"].transformer_blocks == 24
    assert sorted(f.code for f in check_source(pre)) == ["GL201"]


def test_residual_stack_without_attention_is_not_a_transformer():
    resnet = POST_LN_SDPA.replace("self.proj(F.scaled_dot_product_attention(q, k, v))", "self.proj(q)").replace(
        "x = self.norm1(x + self.attend(x))", "x = x + self.attend(x)").replace(
        "x = self.norm2(x + self.ff(x))", "x = x + self.ff(x)")
    nets, sums = lower(resnet)
    assert sums["GPT"].transformer_blocks == 0
    assert "GL201" not in [f.code for f in check_source(resnet)]


SETTINGS = """
import torch.nn as nn
import torch.nn.functional as F

class Block(nn.Module):
    def __init__(self, d=64, use_norm=False, act_layer=None, drop_path=0.0):
        super().__init__()
        self.use_norm = use_norm
        act_layer = act_layer or nn.GELU
        self.fc = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d) if use_norm else nn.Identity()
        self.act = act_layer()
        self.grad_checkpointing = False

    def forward(self, x, mask=None):
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint(self.fc, x)
        else:
            x = self.fc(x)
        if self.use_norm:
            x = self.norm(x)
        if mask is not None:
            x = x * mask
        return self.act(x)
"""


def test_conditions_on_construction_values_are_decided():
    nets, _ = lower(SETTINGS)
    net = nets["Block"]
    assert net.forward_known and net.variants == ()
    assert kinds(net.nodes) == ["Param", "Activation"]
    assert net.nodes[1].fn == "gelu"
    on = SETTINGS.replace("use_norm=False", "use_norm=True")
    assert kinds(lower(on)[0]["Block"].nodes) == ["Param", "Norm", "Activation"]


def test_undecidable_condition_gives_one_path_per_branch():
    src = """
import torch.nn as nn
class Net(nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.a = nn.Linear(d, d)
        self.b = nn.Linear(d, d)
    def forward(self, x):
        if x.shape[0] > 1:
            x = self.a(x)
        else:
            x = self.b(x)
        return x
"""
    net = lower(src)[0]["Net"]
    assert [[n.name for n in p] for p in net.paths] == [["a"], ["b"]]
    assert not any(isinstance(n, Opaque) for p in net.paths for n in walk(p))


def test_a_chain_counts_only_when_every_path_has_it():
    deep = tuple(n for i in range(6) for n in (Param(f"l{i}", "linear", 64, 64, _init()), Activation(f"a{i}", "sigmoid")))
    short = deep[:2]
    assert analyse(Network("N", "m.py", deep)).chains
    assert analyse(Network("N", "m.py", deep, variants=(deep,))).chains
    assert analyse(Network("N", "m.py", deep, variants=(short,))).chains == ()


def _init():
    from gradlint.model.ir import InitSpec

    return InitSpec("torch-linear")


def test_cat_of_branches_is_a_concatenating_residual():
    src = """
import torch
import torch.nn as nn
class Dense(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3)
        self.b1 = nn.Conv2d(c, c, 1)
        self.b2 = nn.Conv2d(c, c, 3)
    def forward(self, x):
        x = torch.cat([x, self.conv(x)], 1)
        return torch.stack((self.b1(x), self.b2(x)))
"""
    net = lower(src)[0]["Dense"]
    first, second = net.nodes
    assert isinstance(first, Residual) and first.join == "cat" and first.skip_scale is None
    assert [n.name for n in first.body] == ["conv"]
    assert isinstance(second, Residual) and second.skip_scale == 0.0
    assert [n.name for n in second.body] == ["b1"] and [[n.name for n in b] for b in second.branches] == [["b2"]]


def test_library_blocks_are_lowered_with_their_module_paths():
    src = """
import torch.nn as nn
from torchvision.ops.misc import Conv2dNormActivation
from timm.layers import Mlp, DropPath, trunc_normal_

class Net(nn.Module):
    def __init__(self, c=32):
        super().__init__()
        self.stem = Conv2dNormActivation(3, c)
        self.mlp = Mlp(c, 4 * c)
        self.drop_path = DropPath(0.1)
    def forward(self, x):
        x = self.stem(x)
        return x + self.drop_path(self.mlp(x))
"""
    net = lower(src)[0]["Net"]
    names = [(type(n).__name__, n.name) for n in walk(net.nodes) if not isinstance(n, Residual)]
    assert names == [("Param", "stem.0"), ("Norm", "stem.1"), ("Activation", "stem.2"), ("Param", "mlp.fc1"),
                     ("Activation", "mlp.act"), ("Passthrough", "mlp.drop1"), ("Activation", "mlp.norm"),
                     ("Param", "mlp.fc2"), ("Passthrough", "mlp.drop2"), ("Passthrough", "drop_path")]
    stem = net.nodes[0]
    assert stem.fan_in == 27 and stem.fan_out == 32 * 9
    assert stem.origin.line == 9  # the user's call, not a line of the catalogue


def test_the_catalogue_names_read_off_its_text_are_its_parsed_definitions():
    # library_name answers from the text, without parsing the catalogue
    import libcst as cst

    from gradlint.source import library

    parsed = {s.name.value for s in cst.parse_module(library.SOURCE).body if isinstance(s, (cst.ClassDef, cst.FunctionDef))}
    assert library._names() == parsed and {"Mlp", "Conv2dNormActivation", "get_act_layer"} <= parsed


def test_a_relative_import_inside_the_library_reads_the_same_from_any_folder(tmp_path, monkeypatch):
    # torchvision's own models/convnext.py imports `from ..ops.misc import Permute`: a catalogue
    # block whichever folder gradlint runs from, though the path as shown (`models/convnext.py`
    # from inside the package, `torchvision/models/convnext.py` from its root) names no package
    src = """
import torch.nn as nn
from ..ops.misc import Permute

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.perm = Permute([0, 2, 3, 1])
    def forward(self, x):
        return self.perm(x)
"""
    package = tmp_path / "torchvision" / "models"
    package.mkdir(parents=True)
    (tmp_path / "torchvision" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    for cwd, shown in ((tmp_path, "torchvision/models/net.py"), (tmp_path / "torchvision", "models/net.py"),
                       (package, "net.py")):
        monkeypatch.chdir(cwd)
        assert kinds(lower(src, shown)[0]["Net"].nodes) == ["Passthrough"], shown
    # a file of another package: the same relative import is the project's own class
    monkeypatch.chdir(tmp_path)
    assert kinds(lower(src, "mylib/models/net.py")[0]["Net"].nodes) == ["Extern"]
    # nor does a folder that only holds the project (`~/timm/proj/pkg`): no relative import
    # climbs out of the package chain (a second read found its own Mlp read as timm's)
    (tmp_path / "timm" / "proj" / "pkg").mkdir(parents=True)
    (tmp_path / "timm" / "proj" / "pkg" / "__init__.py").write_text("")
    assert kinds(lower(src, "timm/proj/pkg/net.py")[0]["Net"].nodes) == ["Extern"]


def test_a_class_of_the_same_name_not_from_the_library_stays_opaque():
    src = """
import torch.nn as nn
from mypackage.blocks import Mlp

class Net(nn.Module):
    def __init__(self, c=32):
        super().__init__()
        self.mlp = Mlp(c, 4 * c)
    def forward(self, x):
        return self.mlp(x)
"""
    net = lower(src)[0]["Net"]
    # an opaque placeholder that only the project index can resolve (model/inline.py)
    assert kinds(net.nodes) == ["Extern"] and net.nodes[0].cls == "Mlp"


def test_checkpoint_seq_and_training_branch():
    src = """
import torch.nn as nn
import torch.nn.functional as F
from timm.models._manipulate import checkpoint_seq

class Net(nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.blocks = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.grad_checkpointing = True
    def forward(self, x):
        if self.grad_checkpointing:
            x = checkpoint_seq(self.blocks, x)
        if self.training:
            x = F.dropout(x, 0.1)
        return x
"""
    net = lower(src)[0]["Net"]
    assert [n.name for n in net.nodes] == ["blocks.0", "blocks.1", "blocks.2", ""]
    # F.dropout's training defaults to True: in train mode it scales by 1 / (1 - p)
    assert (net.nodes[-1].dropout, net.nodes[-1].p) == ("inverted", 0.1)


def test_pretrained_config_style_class():
    src = """
import torch.nn as nn
class Cfg:
    def __init__(self, n_layer=5, width=16, **kwargs):
        self.n_layer = n_layer
        self.width = width
class Net(nn.Module):
    def __init__(self, config: Cfg):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(config.width, config.width) for _ in range(config.n_layer)])
    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
"""
    net = lower(src)[0]["Net"]
    assert [n.name for n in net.nodes] == [f"layers.{i}" for i in range(5)]
    assert all(isinstance(n, Param) and n.fan_in == 16 for n in net.nodes)


def test_a_class_built_in_its_own_init_says_the_limit_not_an_unseen_class():
    # Past the nesting limit the node is opaque; its reason once said the file's own class was
    # "a class gradlint does not see (another file or library)".
    src = """
import torch.nn as nn

class Tree(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.proj = nn.Linear(d, d)
        self.kids = nn.ModuleList([Tree(d) for _ in range(2)])
    def forward(self, x):
        x = self.proj(x)
        for k in self.kids:
            x = k(x)
        return x
"""
    net = lower(src)[0]["Tree"]
    reasons = {n.what for p in net.paths for n in walk(p) if isinstance(n, Opaque)}
    assert reasons and all("own __init__ more than" in r for r in reasons), reasons
    assert not any("does not see" in r for r in reasons)


ONE_LINE_SUITES = '''
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, depth=2, act=True):
        super().__init__()
        layers = []
        for i in range(depth): layers.append(nn.Linear(8, 8))
        if act: layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(8, 8)
        for m in self.modules():
            if isinstance(m, nn.Linear): nn.init.zeros_(m.weight)

    def forward(self, x):
        x = self.body(x)
        if self.head is not None: return self.head(x)
        return x
'''


def test_one_line_suites_run_like_indented_blocks():
    # `for i in range(n): layers.append(...)` and `if act: ...` on one line: the statement walker
    # (engine/interp.py) runs a one-line suite's statements; __init__ and forward skipped them,
    # which left this network empty.
    nets, _ = lower(ONE_LINE_SUITES)
    nodes = nets["Net"].nodes
    assert kinds(nodes) == ["Param", "Param", "Activation", "Param"]
    assert [n.name for n in nodes] == ["body.0", "body.1", "body.2", "head"]
    assert [n.init.scheme for n in nodes if isinstance(n, Param)] == ["zeros"] * 3


MODULE_DICT = '''\
import torch.nn as nn
from dataclasses import dataclass


@dataclass
class Cfg:
    n_layer: int = 48
    n_embd: int = 64


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Linear(c.n_embd, c.n_embd)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.fc(x))


class GPT(nn.Module):
    def __init__(self, config: Cfg = Cfg()):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Linear(8, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
        ))

    def forward(self, x):
        x = self.transformer.wte(x)
        for block in self.transformer.h:
            x = block(x)
        return x
'''


def test_a_module_dict_built_from_dict_is_read_by_its_keys_as_attributes():
    # nanoGPT's layout: `nn.ModuleDict(dict(wte=..., h=...))`, then `self.transformer.wte(x)` and
    # `for block in self.transformer.h` in forward (torch registers each module under its key)
    nets, _ = lower(MODULE_DICT)
    gpt = nets["GPT"]
    assert not [n for n in walk(gpt.nodes) if isinstance(n, Opaque)]
    params = [n.name for n in walk(gpt.nodes) if isinstance(n, Param)]
    assert params[0] == "transformer.wte" and params[-1] == "transformer.h.47.fc" and len(params) == 49
    assert [f.code for f in check_source(MODULE_DICT)] == ["GL101"]
    # the look-alike: a norm after every block keeps the scale, so nothing vanishes
    normed = MODULE_DICT.replace("return self.act(self.fc(x))", "return self.norm(self.act(self.fc(x)))").replace(
        "self.act = nn.Sigmoid()", "self.act = nn.Sigmoid()\n        self.norm = nn.LayerNorm(c.n_embd)")
    assert [f.code for f in check_source(normed)] == []
    # a key the dict does not hold stays unknown (opaque), never a finding
    missing = MODULE_DICT.replace("x = self.transformer.wte(x)", "x = self.transformer.wpe(x)")
    assert any(isinstance(n, Opaque) for n in walk(lower(missing)[0]["GPT"].nodes))


AS_WRITTEN = ROOT / "fixtures" / "architecture" / "models_as_written.py"


def inits(network) -> dict[str, str]:
    return {n.name: n.init.scheme for n in walk(network.nodes) if isinstance(n, Param)}


def test_init_functions_given_the_instance_or_a_submodule_run_in_init():
    """`zero_every_linear(self)` in __init__ runs as `self.apply` would; given `self.head`, it
    reaches the head only; `zero_head_of(self)` reads `model.head` as `self.head`. A function of
    another file given `self`, or a loop that hands each module to one (or to `m.reset_parameters()`,
    which puts torch's default back: measured, the weights are no longer zero), leaves the layers'
    initialisation unknown: quiet (the fixture's expectations: test_architecture)."""
    nets, _ = lower(AS_WRITTEN.read_text(), str(AS_WRITTEN))
    assert set(inits(nets["CallsZeroOnSelf"]).values()) == {"zeros"}
    assert set(inits(nets["CallsApplyOnSelf"]).values()) == {"zeros"}
    head_only = inits(nets["CallsZeroOnHead"])
    assert head_only.pop("head.0") == "zeros" and set(head_only.values()) == {"torch-linear"}
    head_only = inits(nets["ZeroesHeadThroughFunction"])
    assert head_only.pop("head") == "zeros" and set(head_only.values()) == {"torch-linear"}
    for name in ("ZeroedThenReinitialised", "ZeroedThenReset", "ZeroedThenOtherFileLoop"):
        assert set(inits(nets[name]).values()) == {"unknown"}, name
    # a function of the file that only looks (print, isinstance) leaves the zeroing as it was
    assert set(inits(nets["ZeroedThenDescribed"]).values()) == {"zeros"}


def test_an_init_under_an_undecided_test_is_unknown_unless_the_test_asks_for_the_tensor():
    """`if "head" in name:` in a loop over `named_modules()` may or may not hold for a layer: what
    its branches initialise is unknown. `if m.bias is not None:` only skips a missing tensor: the
    bias stays zero-initialised."""
    nets, _ = lower(AS_WRITTEN.read_text(), str(AS_WRITTEN))
    assert set(inits(nets["ZeroesHeadByName"]).values()) == {"unknown"}
    zeroed = [n for n in walk(nets["ZeroesEveryLinearWithItsBias"].nodes) if isinstance(n, Param)]
    assert {n.init.scheme for n in zeroed} == {"zeros"}
    assert {n.bias_init.scheme for n in zeroed} == {"zeros"}


INIT_CALLS = '''
import torch.nn as nn
from mmcv.cnn import kaiming_init, constant_init


def zero_all(module, std=0.0):
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)


class Base(nn.Module):
    def __init__(self):
        super().__init__()


class Net(Base):
    def __init__(self, d=64, n=6):
        Base.__init__(self)
        self.body = nn.Sequential(*[nn.Sequential(nn.Linear(d, d), nn.ReLU()) for _ in range(n)])
        self.head = nn.Linear(d, 10)
        CALL

    def _zero(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.weight)

    def forward(self, x):
        return self.head(self.body(x))
'''


def test_init_calls_given_modules_in_init_are_followed_or_unknown():
    def net(call: str) -> dict[str, str]:
        return inits(lower(INIT_CALLS.replace("CALL", call))[0]["Net"])

    # functions of the file, however the module is passed, and what they call on it
    for call in ("zero_all(self)", "zero_all(module=self, std=0.1)", "zero_all(self, 0.1)"):
        assert set(net(call).values()) == {"zeros"}, call
    # `module._zero()` on the instance it was given: the class's method, as `self._zero()`
    by_method = INIT_CALLS.replace("    for m in module.modules():\n        if", "    module._zero()\n    for m in []:\n        if")
    assert by_method != INIT_CALLS
    assert set(inits(lower(by_method.replace("CALL", "zero_all(self)"))[0]["Net"]).values()) == {"zeros"}
    # a module built here and handed to mmcv's init before it is kept: its init is unknown
    layer = net("layer = nn.Linear(64, 10)\n        kaiming_init(layer)\n        self.head = layer")
    assert layer.pop("head") == "unknown" and set(layer.values()) == {"torch-linear"}
    assert net("constant_init(self.head, 0)")["head"] == "unknown"
    assert net("kaiming_init(self.body)")["body.0.0"] == "unknown" and net("kaiming_init(self.body)")["head"] == "torch-linear"
    # a function of the file that cannot be bound to what it is given: unknown
    assert set(net("zero_all(std=0.1, other=self)").values()) == {"unknown"}
    # calls that name or look at the instance, or a container's own methods: not hand-overs
    for call in ("print(self)", "setattr(self, 'extra', nn.ReLU())", "Base.__init__(self)",
                 "self.body.insert(0, self.head)", "isinstance(self.head, nn.Linear)", "self.head.requires_grad_(False)"):
        assert set(net(call).values()) == {"torch-linear"}, call


_ODE_FIELD = '''
import torch.nn as nn


class Field(nn.Module):
    def __init__(self, d=16, w=512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, w), nn.Tanh(), nn.Linear(w, w), nn.Tanh(), nn.Linear(w, d))
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1.0)

    def forward({params}):
        return {body}
'''


def test_an_ode_vector_field_called_with_time_first_follows_its_state():
    # torchdiffeq calls `func(t, y)`: the signal is the second input, the first only a time
    nets, _ = lower(_ODE_FIELD.format(params="self, t, z", body="self.net(z)"))
    assert nets["Field"].forward_known
    assert [f.code for f in check_source(_ODE_FIELD.format(params="self, t, z", body="self.net(z)"))] == ["GL104"]


def test_a_forward_that_reaches_its_output_from_the_first_input_or_from_none_is_as_before():
    # `forward(self, x, t)` follows x; an output computed from an input with a default (a mask,
    # a flag) or from no input at all is still not followed
    nets, _ = lower(_ODE_FIELD.format(params="self, x, t", body="self.net(x) * t"))
    assert nets["Field"].forward_known
    nets, _ = lower(_ODE_FIELD.format(params="self, t, z=None", body="self.net(z)"))
    assert not nets["Field"].forward_known
    nets, _ = lower(_ODE_FIELD.format(params="self, t, z", body="self.net[0].weight.sum()"))
    assert not nets["Field"].forward_known


ISINSTANCE_ON_LAYERS = '''
import torch.nn as nn


class Looped(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d))
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.weight)

    def forward(self, x):
        return self.net(x)


class Checked(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.act = nn.ReLU6()
        self.out = nn.LazyLinear(d)
        if isinstance(self.fc, nn.Conv2d):
            nn.init.zeros_(self.fc.weight)
        if isinstance(self.act, nn.Hardtanh):
            nn.init.zeros_(self.fc.weight)
        if isinstance(self.out, nn.Linear):
            nn.init.orthogonal_(self.out.weight)

    def forward(self, x):
        return self.out(self.act(self.fc(x)))
'''


def test_isinstance_on_a_layer_built_here_is_decided():
    """`for m in self.net: if isinstance(m, nn.Linear): zeros_(m.weight)` zeroes each Linear of the
    Sequential (GL105); `isinstance(self.fc, nn.Conv2d)` on a Linear is False; ReLU6 is a Hardtanh
    in torch, which the walk does not decide (the init it guards is unknown); a LazyLinear is a
    Linear."""
    nets, _ = lower(ISINSTANCE_ON_LAYERS)
    assert set(inits(nets["Looped"]).values()) == {"zeros"}
    assert [f.code for f in check_source(ISINSTANCE_ON_LAYERS)] == ["GL105"]
    assert inits(nets["Checked"]) == {"fc": "unknown", "out": "orthogonal"}


def test_module_constants_unpacked_from_a_tuple_are_read():
    """`nz, ngf, nc = 100, 64, 3` at module level (the DCGAN tutorial) gives each name its number;
    a swap reads the values before binding, and a starred or mismatched unpacking binds nothing."""
    src = ("import torch.nn as nn\n\nnz, ngf, nc = 100, 64, 3\nngf, nc = nc, ngf\na, *rest = 1, 2, 3\n\n\n"
           "class G(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
           "        self.fc = nn.Linear(nz, ngf)\n        self.out = nn.Linear(nc, a)\n\n"
           "    def forward(self, z):\n        return self.out(self.fc(z))\n")
    nets, _ = lower(src)
    fans = {n.name: (n.fan_in, n.fan_out) for n in walk(nets["G"].nodes) if isinstance(n, Param)}
    assert fans["fc"] == (100, 3) and fans["out"][0] == 64
    assert fans["out"][1] != 1  # `a` is not known to be 1 (a starred unpacking)


def test_only_a_test_of_the_tensor_alone_keeps_the_init_it_guards():
    """`if m.bias is not None:` only skips a missing bias (the zeroing holds); with `and "head" in
    name` the zeroing may not happen (unknown). A LazyBatchNorm1d is no BatchNorm1d before its
    first call: isinstance on it is not decided."""
    src = ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self, d=64):\n"
           "        super().__init__()\n        self.a = nn.Linear(d, d)\n        self.b = nn.Linear(d, d)\n"
           "        self.bn = nn.LazyBatchNorm1d()\n"
           "        for name, m in self.named_modules():\n            if isinstance(m, nn.Linear):\n"
           "                if m.bias is not None and 'a' in name:\n                    nn.init.zeros_(m.bias)\n"
           "                if hasattr(m, 'weight') and not m.weight is None:\n                    nn.init.orthogonal_(m.weight)\n"
           "        if isinstance(self.bn, nn.BatchNorm1d):\n            nn.init.zeros_(self.a.weight)\n\n"
           "    def forward(self, x):\n        return self.bn(self.b(self.a(x)))\n")
    nets, _ = lower(src)
    params = {n.name: n for n in walk(nets["Net"].nodes) if isinstance(n, Param)}
    assert params["b"].init.scheme == "orthogonal"
    assert params["a"].init.scheme == "unknown"  # zeroed under the undecided LazyBatchNorm test
    assert {params[k].bias_init.scheme for k in ("a", "b")} == {"unknown"}


def test_timm_style_bias_test_repeating_the_dispatch_keeps_the_init():
    """timm's `if isinstance(m, nn.Linear) and m.bias is not None: nn.init.constant_(m.bias, 0)`
    asks the module's kind and whether its bias exists: the bias is zero-initialised."""
    src = ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self, d=64):\n"
           "        super().__init__()\n        self.a = nn.Linear(d, d)\n        self.b = nn.Linear(d, d)\n"
           "        self.apply(self._init_weights)\n\n"
           "    def _init_weights(self, m):\n        if isinstance(m, nn.Linear):\n"
           "            nn.init.trunc_normal_(m.weight, std=0.02)\n"
           "            if isinstance(m, nn.Linear) and m.bias is not None:\n"
           "                nn.init.constant_(m.bias, 0)\n\n"
           "    def forward(self, x):\n        return self.b(self.a(x))\n")
    nets, _ = lower(src)
    params = [n for n in walk(nets["Net"].nodes) if isinstance(n, Param)]
    assert {p.init.scheme for p in params} == {"trunc_normal"}
    assert {p.bias_init.scheme for p in params} == {"zeros"}


CONTAINERS = (ROOT / "fixtures" / "architecture" / "containers.py").read_text()


def test_parts_of_a_module_without_forward_are_networks_as_it_builds_them():
    nets, _ = lower(CONTAINERS)
    critic = nets["ActorCritic.v"]
    assert critic.forward_known
    layers = [n for n in critic.nodes if isinstance(n, Param)]
    assert len(layers) == 13 and layers[0].name == "v.v_net.0" and layers[0].fan_in == 17
    assert {n.fn for n in critic.nodes if isinstance(n, Activation)} == {"sigmoid", "identity"}
    # alone, the critic's widths and activation are unknown: its network has nothing to analyse
    assert not any(isinstance(n, Param) for n in nets["MLPCritic"].nodes)
    assert "ShallowActorCritic.v" in nets


def test_a_part_its_class_models_alone_is_no_second_network():
    source = CONTAINERS + '''

class Discriminator(nn.Module):
    def __init__(self, width=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, x):
        return self.net(x)


class GAN(nn.Module):
    def __init__(self):
        super().__init__()
        self.d = Discriminator()
        self.critic = MLPCritic(4, (8,), nn.ReLU)
'''
    nets, _ = lower(source)
    assert "GAN.d" not in nets  # Discriminator alone is the same network
    assert "GAN.critic" in nets


HANDED_TO_A_BLOCK = """
import torch.nn as nn
from timm.layers import Mlp, GroupNorm1

class {name}(nn.Module):
    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()
    def forward(self, x):
        return self.relu(x)

class Net(nn.Module):
    def __init__(self, c=32, mlp_act={name}):
        super().__init__()
        self.mlp = Mlp(c, 4 * c, act_layer=mlp_act)
        self.norm = GroupNorm1(c)
    def forward(self, x):
        return self.norm(self.mlp(x))
"""


def test_a_class_of_the_file_handed_to_a_library_block_is_built_from_the_file():
    # metaformer's `Mlp(dim, act_layer=StarReLU)`: the catalogue's Mlp builds the user's class,
    # which it cannot see on its own; timm's GroupNorm1 is a GroupNorm of one group
    net = lower(HANDED_TO_A_BLOCK.format(name="MyAct"))[0]["Net"]
    assert [(type(n).__name__, n.name) for n in walk(net.nodes)] == [
        ("Param", "mlp.fc1"), ("Activation", "mlp.act.relu"), ("Passthrough", "mlp.drop1"),
        ("Activation", "mlp.norm"), ("Param", "mlp.fc2"), ("Passthrough", "mlp.drop2"), ("Norm", "norm")]
    assert net.nodes[-1].kind == "group"


def test_a_class_of_the_file_named_as_a_catalogue_block_is_still_the_file_s_class():
    # the user's `LayerNorm2d` here is a ReLU, not the catalogue's LayerNorm2d of that name
    net = lower(HANDED_TO_A_BLOCK.format(name="LayerNorm2d"))[0]["Net"]
    assert [type(n).__name__ for n in walk(net.nodes)][:2] == ["Param", "Activation"]
    assert not any(isinstance(n, Norm) for n in walk(net.nodes) if n.name.startswith("mlp"))
