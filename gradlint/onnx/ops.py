"""What each ONNX op means to the lowering, keyed by domain and type: the standard ops, onnxruntime's
`com.microsoft` fused ops (what its graph optimiser writes at the default level) and its
hardware-specific `com.microsoft.nchwc` ops. An op of any other domain is unknown: it is never
matched by its type alone, since a custom `Relu` may be anything.
"""

from __future__ import annotations

import onnx
from onnx import helper

STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
MS = "com.microsoft"
NCHWC = "com.microsoft.nchwc"


def op_key(node: onnx.NodeProto) -> str:
    """`Relu` for a standard op, `com.microsoft:FusedGemm` for any other domain's."""
    return node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}:{node.op_type}"


ACTIVATIONS = {
    "Relu": "relu", "LeakyRelu": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Gelu": "gelu",
    "Softplus": "softplus", "HardSigmoid": "hardsigmoid", "Elu": "elu", "Selu": "selu", "Celu": "celu",
    "HardSwish": "hardswish", "Mish": "mish", "Softsign": "softsign", "PRelu": "prelu", "Softmax": "softmax",
    # onnxruntime's GELU kernels: the exact form, the tanh form (FastGelu), and both with a fused bias.
    f"{MS}:Gelu": "gelu", f"{MS}:FastGelu": "gelu", f"{MS}:BiasGelu": "gelu", f"{MS}:BiasFastGelu": "gelu",
    # Their quantized forms (the represented values follow the float activation).
    f"{MS}:QLinearSigmoid": "sigmoid", f"{MS}:QLinearLeakyRelu": "leaky_relu", f"{MS}:QLinearSoftmax": "softmax",
}
# ONNX defaults of the parameter each activation takes.
ACT_PARAM = {"LeakyRelu": ("alpha", 0.01), "Elu": ("alpha", 1.0), "Celu": ("alpha", 1.0),
             "HardSigmoid": ("alpha", 0.2), f"{MS}:QLinearLeakyRelu": ("alpha", 0.01)}

NORMS = {
    "BatchNormalization": "batch", "LayerNormalization": "layer", "InstanceNormalization": "instance",
    "GroupNormalization": "group", "SimplifiedLayerNormalization": "rms", "RMSNormalization": "rms",
    "LRN": "local_response",
    f"{MS}:LayerNormalization": "layer", f"{MS}:SimplifiedLayerNormalization": "rms",
    f"{MS}:GroupNorm": "group", f"{MS}:SkipGroupNorm": "group",
}
# Residual add and norm in one node: output 0 is norm(input + skip [+ bias]); the optional output 3
# is the sum itself (written when the sum also feeds the next residual: Pre-LN).
SKIP_NORMS = {f"{MS}:SkipLayerNormalization": "layer", f"{MS}:SkipSimplifiedLayerNormalization": "rms"}

PASSTHROUGH = frozenset({
    "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "Reshape",
    "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Cast", "CastLike", "Pad", "Slice", "Concat",
    "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "Expand", "Tile", "Gather", "Split",
    "ReduceMean", "ReduceMax", "LogSoftmax", "MaxRoiPool", "Shrink",
    # Quantize/dequantize of activations: the represented value is (nearly) the same.
    "QuantizeLinear", "DequantizeLinear", f"{MS}:QLinearAveragePool", f"{MS}:QLinearGlobalAveragePool",
    f"{MS}:QLinearConcat",
    # NCHWc layout changes and pools: values are moved, not scaled.
    f"{NCHWC}:ReorderInput", f"{NCHWC}:ReorderOutput", f"{NCHWC}:MaxPool", f"{NCHWC}:AveragePool",
    f"{NCHWC}:GlobalAveragePool", f"{NCHWC}:GlobalMaxPool", f"{NCHWC}:Upsample",
})
SKIP = frozenset({"Identity"})
RECURRENT = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}

# Ops whose static operand is a layer's weight, by the standard op they compute.
LAYERS = {
    "MatMul": "MatMul", "Gemm": "Gemm", "Conv": "Conv", "ConvTranspose": "ConvTranspose", "Gather": "Gather",
    f"{MS}:FusedGemm": "Gemm", f"{MS}:FusedConv": "Conv", f"{MS}:FusedMatMul": "MatMul",
    # Quantized layers (QOperator format), read with the dequantised statistics of their weights.
    "QLinearMatMul": "MatMul", "QLinearConv": "Conv", f"{MS}:QGemm": "Gemm",
}

# Quantized layers (QOperator format): the weight is input 3, dequantised by inputs 4 and 5 along
# this axis when the scale is per channel (a conv's output channels, a MatMul's columns).
QUANTIZED_LAYERS = {"QLinearMatMul": -1, "QLinearConv": 0, f"{MS}:QGemm": 0}
# The output zero point of each (input index): at the type's minimum the output cannot be negative,
# which is how onnxruntime's quantizer folds a following ReLU away.
_QUANT_OUT_ZERO = {"QLinearMatMul": 7, "QLinearConv": 7, f"{MS}:QGemm": 8}


def quantized_relu(g, i: int) -> bool:
    """True when quantized layer i's output range starts at zero: a ReLU folded into quantization.
    Also a QuantizeLinear right after a layer (QDQ format), never one after an activation (a
    sigmoid's output is positive anyway)."""
    pos = _QUANT_OUT_ZERO.get(g.ops[i])
    node = g.nodes[i]
    if g.ops[i] == "QuantizeLinear" and node.input:
        found = g.through(node.input[0])
        if found is None or found[0] is not g or not layer_op(g.ops[found[1]]):
            return False
        pos = 2
    if pos is None or len(node.input) <= pos or not node.input[pos]:
        return False
    zero = g.value(node.input[pos])
    if zero is None or zero.size != 1:
        return False
    lowest = {"int8": -128, "uint8": 0, "int16": -32768, "uint16": 0}.get(str(zero.dtype))
    return lowest is not None and int(zero.reshape(-1)[0]) == lowest


# Ops refused with the reason the user reads in the coverage report.
REFUSED = {
    "MatMulInteger": "dynamically quantized MatMulInteger (its scale is applied after the product): not modelled",
    "ConvInteger": "dynamically quantized ConvInteger (its scale is applied after the product): not modelled",
    f"{NCHWC}:Conv": "onnxruntime's NCHWc Conv (optimisation level 'all'; its weights are padded "
                     "to the CPU's block size): save the model at the 'extended' level to check it",
}


def layer_op(key: str) -> str | None:
    """The standard op a weighted op computes (`com.microsoft:FusedGemm` -> `Gemm`), else None."""
    return LAYERS.get(key)


def fused_activation(node: onnx.NodeProto) -> tuple[str, float | None] | None | str:
    """The activation a FusedGemm/FusedConv applies after the layer: (fn, param), None for none,
    or the name of an activation gradlint does not know (a string)."""
    act = _attr(node, "activation")
    if act is None:
        return None
    act = act.decode() if isinstance(act, bytes) else str(act)
    if not act:
        return None
    fn = ACTIVATIONS.get(act)
    if fn is None:
        return act
    param = None
    if act in ACT_PARAM:
        params = _attr(node, "activation_params")
        alpha = _attr(node, "activation_alpha")
        value = alpha if alpha is not None else (params[0] if params else ACT_PARAM[act][1])
        param = float(f"{float(value):.7g}")
    return fn, param


def quick_gelu(node: onnx.NodeProto) -> str | None:
    """QuickGelu is x * sigmoid(alpha * x): SiLU at alpha 1, the sigmoid approximation of GELU at
    the default 1.702, else no activation gradlint models."""
    alpha = float(_attr(node, "alpha", 1.702))
    if abs(alpha - 1.0) < 1e-6:
        return "silu"
    if abs(alpha - 1.702) < 1e-3:
        return "gelu"
    return None


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


__all__ = ["op_key", "layer_op", "quantized_relu", "fused_activation", "quick_gelu", "QUANTIZED_LAYERS",
           "ACTIVATIONS", "NORMS", "SKIP_NORMS", "PASSTHROUGH", "RECURRENT", "REFUSED", "LAYERS", "ACT_PARAM", "SKIP"]
