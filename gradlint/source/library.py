"""Common building blocks of torchvision and timm, written as the small modules they are, so that a
user's model that uses them is lowered through them instead of stopping at an opaque node.

The blocks below are not the libraries' code: each is the part of a block that matters for the
gradient (its layers, their order, their defaults, the module paths the library gives them),
written with torch.nn only, checked against the libraries' sources (torchvision 0.2x
`ops/misc.py`, timm 1.x `layers/`). They are interpreted like a class of the user's file, with
the user's arguments bound. A block is used only when the user imports it from its library
(`from torchvision.ops import Conv2dNormActivation`, `from timm.layers import Mlp`, or a relative
import inside those packages); a class of the same name defined anywhere else is not this one.

PASS holds the blocks that lower to one Passthrough node: pooling heads, re-layouts, and
stochastic depth, which scales the branch it keeps in train mode as dropout does (DROP_PATHS).
"""

from __future__ import annotations

import functools
import os
import re

import libcst as cst

from gradlint.findings import SourceSpan

SOURCE = '''
import functools
import torch.nn as nn
import torch.nn.functional as F


class ConvNormActivation(nn.Sequential):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, dilation=1, inplace=True, bias=None,
                 conv_layer=nn.Conv2d):
        if bias is None:
            bias = norm_layer is None
        layers = [conv_layer(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                             groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer())
        super().__init__(*layers)


class Conv2dNormActivation(nn.Sequential):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, dilation=1, inplace=True, bias=None):
        if bias is None:
            bias = norm_layer is None
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                            groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer())
        super().__init__(*layers)


class Conv1dNormActivation(nn.Sequential):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=nn.BatchNorm1d, activation_layer=nn.ReLU, dilation=1, inplace=True, bias=None):
        if bias is None:
            bias = norm_layer is None
        layers = [nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                            groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer())
        super().__init__(*layers)


class Conv3dNormActivation(nn.Sequential):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=nn.BatchNorm3d, activation_layer=nn.ReLU, dilation=1, inplace=True, bias=None):
        if bias is None:
            bias = norm_layer is None
        layers = [nn.Conv3d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                            groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer())
        super().__init__(*layers)


class MLP(nn.Sequential):
    def __init__(self, in_channels, hidden_channels, norm_layer=None, activation_layer=nn.ReLU, inplace=None,
                 bias=True, dropout=0.0):
        layers = []
        in_dim = in_channels
        for hidden_dim in hidden_channels[:-1]:
            layers.append(nn.Linear(in_dim, hidden_dim, bias=bias))
            if norm_layer is not None:
                layers.append(norm_layer(hidden_dim))
            layers.append(activation_layer())
            layers.append(nn.Dropout(dropout))
            in_dim = hidden_dim
        layers.append(nn.Linear(in_dim, hidden_channels[-1], bias=bias))
        layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


def get_act_layer(name="relu"):
    if name is None:
        return None
    if isinstance(name, str):
        name = name.lower()
    if name == "relu":
        return nn.ReLU
    if name == "relu6":
        return nn.ReLU6
    if name == "leaky_relu":
        return nn.LeakyReLU
    if name == "elu":
        return nn.ELU
    if name == "celu":
        return nn.CELU
    if name == "selu":
        return nn.SELU
    if name == "gelu":
        return nn.GELU
    if name == "gelu_tanh":
        return nn.GELU
    if name == "silu":
        return nn.SiLU
    if name == "swish":
        return nn.SiLU
    if name == "mish":
        return nn.Mish
    if name == "sigmoid":
        return nn.Sigmoid
    if name == "tanh":
        return nn.Tanh
    if name == "hard_sigmoid":
        return nn.Hardsigmoid
    if name == "hard_swish":
        return nn.Hardswish
    if name == "identity":
        return nn.Identity
    if name == "prelu":
        return nn.PReLU
    return name


def create_act_layer(name, inplace=None, **kwargs):
    layer = get_act_layer(name)
    if layer is None:
        return None
    return layer()


def get_norm_layer(norm_layer):
    if norm_layer is None:
        return None
    if isinstance(norm_layer, str):
        norm_layer = norm_layer.replace("_", "").lower()
    if norm_layer == "batchnorm" or norm_layer == "batchnorm2d":
        return nn.BatchNorm2d
    if norm_layer == "batchnorm1d":
        return nn.BatchNorm1d
    if norm_layer == "groupnorm":
        return nn.GroupNorm
    if norm_layer == "layernorm":
        return nn.LayerNorm
    if norm_layer == "layernorm2d":
        return LayerNorm2d
    if norm_layer == "rmsnorm":
        return nn.RMSNorm
    return norm_layer


def create_conv2d(in_channels, out_channels, kernel_size, stride=1, padding="", dilation=1, depthwise=False,
                  groups=1, bias=False, **kwargs):
    if depthwise:
        groups = in_channels
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, groups=groups, bias=bias)


def create_aa(aa_layer, channels=None, stride=2, enable=True, noop=nn.Identity, **kwargs):
    if not aa_layer or not enable:
        if noop is None:
            return None
        return noop()
    return BlurPool2d(channels)


class LayerNorm2d(nn.LayerNorm):
    pass


class LayerNorm(nn.LayerNorm):
    pass


class RmsNorm(nn.RMSNorm):
    pass


class GroupNorm(nn.GroupNorm):
    pass


class GroupNorm1(nn.GroupNorm):
    def __init__(self, num_channels, **kwargs):
        super().__init__(1, num_channels)


class Linear(nn.Linear):
    pass


class BatchNormAct2d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 apply_act=True, act_layer=nn.ReLU, act_kwargs=None, inplace=True, drop_layer=None, **kwargs):
        self.norm = nn.BatchNorm2d(num_features)
        self.drop = nn.Identity()
        act_layer = get_act_layer(act_layer)
        if act_layer is not None and apply_act:
            self.act = act_layer()
        else:
            self.act = nn.Identity()

    def forward(self, x):
        x = self.norm(x)
        x = self.drop(x)
        x = self.act(x)
        return x


def get_norm_act_layer(norm_layer, act_layer=None):
    return functools.partial(BatchNormAct2d, act_layer=act_layer)


class ConvNormAct(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding="", dilation=1, groups=1,
                 bias=False, apply_norm=True, apply_act=True, norm_layer=nn.BatchNorm2d, act_layer=nn.ReLU,
                 aa_layer=None, drop_layer=None, **kwargs):
        self.conv = create_conv2d(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=bias)
        if apply_norm:
            self.bn = BatchNormAct2d(out_channels, apply_act=apply_act, act_layer=act_layer)
        else:
            self.bn = nn.Identity()

    def forward(self, x):
        x = self.conv(x)
        x = self.bn(x)
        return x


class ConvBnAct(ConvNormAct):
    pass


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, norm_layer=None,
                 bias=True, drop=0., use_conv=False, **kwargs):
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        if use_conv:
            self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        else:
            self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        if norm_layer is not None:
            self.norm = norm_layer(hidden_features)
        else:
            self.norm = nn.Identity()
        if use_conv:
            self.fc2 = nn.Conv2d(hidden_features, out_features, 1)
        else:
            self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop1(x)
        x = self.norm(x)
        x = self.fc2(x)
        x = self.drop2(x)
        return x


class PatchEmbed(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, norm_layer=None, flatten=True,
                 bias=True, **kwargs):
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)
        if norm_layer is not None:
            self.norm = norm_layer(embed_dim)
        else:
            self.norm = nn.Identity()

    def forward(self, x):
        x = self.proj(x)
        x = x.flatten(2)
        x = self.norm(x)
        return x


def create_classifier(num_features, num_classes, pool_type="avg", use_conv=False, input_fmt="NCHW", drop_rate=None,
                      **kwargs):
    global_pool = SelectAdaptivePool2d(pool_type=pool_type)
    if num_classes <= 0:
        fc = nn.Identity()
    elif use_conv:
        fc = nn.Conv2d(num_features, num_classes, 1, bias=True)
    else:
        fc = nn.Linear(num_features, num_classes, bias=True)
    if drop_rate is not None:
        return global_pool, nn.Dropout(drop_rate), fc
    return global_pool, fc


def create_pool2d(pool_type, kernel_size, stride=None, **kwargs):
    if pool_type == "max":
        return nn.MaxPool2d(kernel_size, stride)
    return nn.AvgPool2d(kernel_size, stride)


def create_norm_layer(layer_name, num_features, **kwargs):
    layer = get_norm_layer(layer_name)
    return layer(num_features)


def get_attn(attn_type):
    if not attn_type:
        return None
    if attn_type == "se":
        return SEModule
    if attn_type == "ese":
        return EffectiveSEModule
    if isinstance(attn_type, str):
        return AttentionOfAnotherKind  # not in this catalogue: a module gradlint does not see
    return attn_type


def create_attn(attn_type, channels, **kwargs):
    module_cls = get_attn(attn_type)
    if module_cls is not None:
        return module_cls(channels, **kwargs)
    return None


class SEModule(nn.Module):
    def __init__(self, channels, rd_ratio=1. / 16, rd_channels=None, rd_divisor=8, add_maxpool=False, bias=True,
                 act_layer=nn.ReLU, norm_layer=None, gate_layer="sigmoid", **kwargs):
        if not rd_channels:
            rd_channels = make_divisible(channels * rd_ratio, rd_divisor)
        self.fc1 = nn.Conv2d(channels, rd_channels, kernel_size=1, bias=bias)
        if norm_layer:
            self.bn = norm_layer(rd_channels)
        else:
            self.bn = nn.Identity()
        self.act = create_act_layer(act_layer, inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, kernel_size=1, bias=bias)
        self.gate = create_act_layer(gate_layer)

    def forward(self, x):
        x_se = x.mean((2, 3), keepdim=True)
        x_se = self.fc1(x_se)
        x_se = self.act(self.bn(x_se))
        x_se = self.fc2(x_se)
        return x * self.gate(x_se)


class EffectiveSEModule(nn.Module):
    def __init__(self, channels, add_maxpool=False, gate_layer="hard_sigmoid", **kwargs):
        self.fc = nn.Conv2d(channels, channels, kernel_size=1, padding=0)
        self.gate = create_act_layer(gate_layer)

    def forward(self, x):
        x_se = x.mean((2, 3), keepdim=True)
        x_se = self.fc(x_se)
        return x * self.gate(x_se)


class SqueezeExcite(SEModule):
    pass


class ConvMlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.ReLU, norm_layer=None,
                 bias=True, drop=0., **kwargs):
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Conv2d(in_features, hidden_features, kernel_size=1)
        if norm_layer:
            self.norm = norm_layer(hidden_features)
        else:
            self.norm = nn.Identity()
        self.act = act_layer()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Conv2d(hidden_features, out_features, kernel_size=1)

    def forward(self, x):
        x = self.fc1(x)
        x = self.norm(x)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)
        return x


class NormMlpClassifierHead(nn.Module):
    def __init__(self, in_features, num_classes, hidden_size=None, pool_type="avg", drop_rate=0.,
                 norm_layer=LayerNorm2d, act_layer=nn.Tanh, **kwargs):
        self.global_pool = SelectAdaptivePool2d(pool_type=pool_type)
        self.norm = norm_layer(in_features)
        self.flatten = nn.Flatten(1)
        if hidden_size:
            self.pre_logits = nn.Sequential(nn.Linear(in_features, hidden_size), act_layer())
            num_features = hidden_size
        else:
            self.pre_logits = nn.Identity()
            num_features = in_features
        self.drop = nn.Dropout(drop_rate)
        if num_classes > 0:
            self.fc = nn.Linear(num_features, num_classes)
        else:
            self.fc = nn.Identity()

    def forward(self, x, pre_logits=False):
        x = self.global_pool(x)
        x = self.norm(x)
        x = self.flatten(x)
        x = self.pre_logits(x)
        x = self.drop(x)
        x = self.fc(x)
        return x


class ClassifierHead(nn.Module):
    def __init__(self, in_features, num_classes, pool_type="avg", drop_rate=0., use_conv=False, **kwargs):
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        if num_classes > 0:
            self.fc = nn.Linear(in_features, num_classes)
        else:
            self.fc = nn.Identity()

    def forward(self, x, pre_logits=False):
        x = self.global_pool(x)
        x = self.drop(x)
        x = x.flatten(1)
        x = self.fc(x)
        return x
'''

# Library blocks that lower to one Passthrough: name -> what the node says.
PASS = {
    "DropPath": "DropPath", "StochasticDepth": "StochasticDepth", "DropBlock2d": "DropBlock2d",
    "LayerScale": "LayerScale", "LayerScale2d": "LayerScale2d", "SelectAdaptivePool2d": "SelectAdaptivePool2d",
    "Permute": "Permute", "PatchDropout": "PatchDropout", "BlurPool2d": "BlurPool2d",
    "AdaptiveAvgMaxPool2d": "AdaptiveAvgMaxPool2d", "FastAdaptiveAvgPool": "FastAdaptiveAvgPool",
}
# The blocks of PASS that drop a residual branch per sample and rescale the kept ones by
# 1 / (1 - p) in train mode, like dropout: name -> (the drop probability's position and keyword,
# its default; None: none).
DROP_PATHS = {"DropPath": (0, "drop_prob", 0.0), "StochasticDepth": (0, "p", None)}
# The blocks of PASS that multiply their input by a trained gamma filled with `init_values` (timm's
# LayerScale(dim, init_values=1e-5, ...)): name -> (its position and keyword, its default).
LAYER_SCALES = {"LayerScale": (1, "init_values", 1e-5), "LayerScale2d": (1, "init_values", 1e-5)}
# Their function forms: name -> (default p, the position of `training`, its default), p being
# the second argument: timm's drop_path(x, drop_prob=0., training=False, scale_by_keep=True),
# torchvision's stochastic_depth(input, p, mode, training=True).
DROP_PATH_FUNCTIONS = {"drop_path": (0.0, 2, False), "stochastic_depth": (None, 3, True)}
# Library functions that apply a module or a sequence of modules to a tensor, as if called.
CHECKPOINT_FUNCTIONS = frozenset({"checkpoint", "checkpoint_seq", "checkpoint_sequential"})
# Library functions whose result decides nothing the gradient depends on: taken as False
# (scripting, tracing and export switches; the fused-attention switch picks one of two
# equivalent attention kernels).
FALSE_FUNCTIONS = frozenset({
    "torch.jit.is_scripting", "torch.jit.is_tracing", "torch.compiler.is_compiling", "torch._dynamo.is_compiling",
    "torch.onnx.is_in_onnx_export", "is_exportable", "is_scriptable", "is_no_jit",
})
# Functions that drop a path at random during training (stochastic depth; DROP_PATH_FUNCTIONS:
# those that rescale what they keep, as dropout does) or keep the scale.
PASS_FUNCTIONS = frozenset({"drop_path", "stochastic_depth", "drop_block_2d", "drop_block_fast_2d",
                            # 'same' padding: zeros at the border, the scale inside is kept
                            "pad_same"})
# timm's normalisation functions (layers/fast_norm.py), by the norm they compute: simple_norm
# divides by the root mean square without centring, which is RMSNorm.
NORM_FUNCTIONS = {
    "fast_group_norm": "group", "fast_layer_norm": "layer", "rms_norm": "rms", "fast_rms_norm": "rms",
    "rms_norm2d": "rms", "fast_rms_norm2d": "rms", "simple_norm": "rms", "fast_simple_norm": "rms",
}

_PACKAGES = ("torchvision.", "timm.")


def library_name(quals: frozenset[str], path: str) -> str | None:
    """The short name of a catalogue block or function that `quals` may denote, or None.

    An absolute import counts when it comes from torchvision or timm; a relative one when the file
    itself lies inside one of those packages (their own model files)."""
    inside = None
    for q in quals:
        last = q.rsplit(".", 1)[-1]
        if q.startswith("."):
            if inside is None:
                inside = _inside_packages(path)
            if not inside:
                continue
        elif not q.startswith(_PACKAGES):
            continue
        if (last in _names() or last in PASS or last in CHECKPOINT_FUNCTIONS or last in PASS_FUNCTIONS
                or last in NORM_FUNCTIONS):
            return last
        if last in ("to_2tuple", "to_ntuple", "make_divisible", "_make_divisible", "use_fused_attn"):
            return last
    return None


@functools.lru_cache(maxsize=64)
def _inside_packages(path: str) -> bool:
    """Whether the file lies inside a package named timm or torchvision: one of the folders of its
    chain of regular packages (each holding an `__init__.py`, up from the file's own), which is
    what its relative imports climb. Read from the file's absolute path: as displayed it is
    relative to where gradlint runs (`models/convnext.py` from inside torchvision/), and the
    verdict must not depend on that; nor may a folder that merely holds the project
    (`~/timm/myproject/`), which no relative import reaches."""
    folder = os.path.dirname(os.path.abspath(path))
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        if os.path.basename(folder) in ("timm", "torchvision"):
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return False


@functools.lru_cache(maxsize=1)
def _module() -> cst.Module:
    from gradlint.source import parse_trusted

    return parse_trusted(SOURCE)


@functools.lru_cache(maxsize=1)
def _names() -> frozenset[str]:
    # The top-level classes and functions, read off the text: a file that imports from timm or
    # torchvision asks for them, and parsing the catalogue costs a model file that uses none of
    # its blocks 30 ms (a test compares them with the parsed module's).
    return frozenset(re.findall(r"^(?:class|def) (\w+)", SOURCE, re.MULTILINE))


class LibrarySource:
    """Stands in for a SourceFile while the catalogue is interpreted: positions inside it mean
    nothing to the user, so its layers take the position of the user's call (Ctor.site)."""

    path = "<library>"

    def __init__(self) -> None:
        from gradlint.source.names import build_import_table

        self.module = _module()
        self.text = SOURCE
        self.imports = build_import_table(self.module)

    def span(self, node: cst.CSTNode) -> SourceSpan:
        return SourceSpan.point(1, 1)

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)
