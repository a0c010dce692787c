"""What the torch.nn classes and functions the front-end recognises are, for lowering to the IR."""

from __future__ import annotations

NN = "torch.nn."
F = "torch.nn.functional."

# class -> (IR op, dimensionality of the kernel; 0 for Linear)
PARAM_LAYERS = {
    "Linear": ("linear", 0), "LazyLinear": ("linear", 0), "Bilinear": ("bilinear", 0),
    "Conv1d": ("conv1d", 1), "Conv2d": ("conv2d", 2), "Conv3d": ("conv3d", 3),
    "LazyConv1d": ("conv1d", 1), "LazyConv2d": ("conv2d", 2), "LazyConv3d": ("conv3d", 3),
    "ConvTranspose1d": ("convtranspose1d", 1), "ConvTranspose2d": ("convtranspose2d", 2),
    "ConvTranspose3d": ("convtranspose3d", 3), "LazyConvTranspose1d": ("convtranspose1d", 1),
    "LazyConvTranspose2d": ("convtranspose2d", 2), "LazyConvTranspose3d": ("convtranspose3d", 3),
    "Embedding": ("embedding", 0), "EmbeddingBag": ("embedding", 0),
}

# activation module -> (IR fn, name of the constructor argument that is its parameter, its position)
# (PReLU's first argument is num_parameters, the number of slopes: its slope `init` is second)
ACTIVATION_MODULES = {
    "ReLU": ("relu", None, 0), "ReLU6": ("relu6", None, 0), "LeakyReLU": ("leaky_relu", "negative_slope", 0),
    "PReLU": ("prelu", "init", 1), "RReLU": ("leaky_relu", None, 0), "ELU": ("elu", "alpha", 0),
    "CELU": ("celu", "alpha", 0), "SELU": ("selu", None, 0), "GELU": ("gelu", None, 0), "SiLU": ("silu", None, 0),
    "Mish": ("mish", None, 0), "Tanh": ("tanh", None, 0), "Sigmoid": ("sigmoid", None, 0),
    "Hardtanh": ("hardtanh", None, 0), "Softsign": ("softsign", None, 0), "Softplus": ("softplus", "beta", 0),
    "Hardsigmoid": ("hardsigmoid", None, 0), "Hardswish": ("hardswish", None, 0), "Identity": ("identity", None, 0),
    "LogSigmoid": ("logsigmoid", None, 0), "Tanhshrink": ("tanhshrink", None, 0), "Softmax": ("softmax", None, 0),
    "LogSoftmax": ("softmax", None, 0),
}
ACTIVATION_DEFAULT_PARAM = {"leaky_relu": 0.01, "prelu": 0.25, "elu": 1.0, "celu": 1.0, "softplus": 1.0}

# functional and tensor-method activations
ACTIVATION_FUNCTIONS = {
    F + "relu": "relu", F + "relu_": "relu", F + "relu6": "relu6", F + "leaky_relu": "leaky_relu",
    F + "elu": "elu", F + "selu": "selu", F + "celu": "celu", F + "gelu": "gelu", F + "silu": "silu",
    F + "mish": "mish", F + "tanh": "tanh", F + "sigmoid": "sigmoid", F + "hardtanh": "hardtanh",
    F + "softsign": "softsign", F + "softplus": "softplus", F + "hardsigmoid": "hardsigmoid",
    F + "hardswish": "hardswish", F + "logsigmoid": "logsigmoid", F + "tanhshrink": "tanhshrink",
    F + "softmax": "softmax", F + "log_softmax": "softmax",
    "torch.relu": "relu", "torch.relu_": "relu", "torch.tanh": "tanh", "torch.sigmoid": "sigmoid",
    "torch.selu": "selu", "torch.celu": "celu", "torch.softmax": "softmax", "torch.log_softmax": "softmax",
    "torch.special.expit": "sigmoid",
}
ACTIVATION_METHODS = {
    "relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh", "sigmoid": "sigmoid",
    "sigmoid_": "sigmoid", "softmax": "softmax", "log_softmax": "softmax",
}

NORM_MODULES = {
    "BatchNorm1d": "batch", "BatchNorm2d": "batch", "BatchNorm3d": "batch", "SyncBatchNorm": "batch",
    "LazyBatchNorm1d": "batch", "LazyBatchNorm2d": "batch", "LazyBatchNorm3d": "batch",
    "LayerNorm": "layer", "GroupNorm": "group", "InstanceNorm1d": "instance", "InstanceNorm2d": "instance",
    "InstanceNorm3d": "instance", "RMSNorm": "rms", "LocalResponseNorm": "local_response",
}
NORM_FUNCTIONS = {
    F + "layer_norm": "layer", F + "batch_norm": "batch", F + "group_norm": "group",
    F + "instance_norm": "instance", F + "normalize": "layer", F + "rms_norm": "rms",
    F + "local_response_norm": "local_response", "torch.layer_norm": "layer",
}

PASSTHROUGH_MODULES = {
    "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "Flatten", "Unflatten", "Upsample", "UpsamplingNearest2d",
    "UpsamplingBilinear2d", "PixelShuffle", "PixelUnshuffle", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
    "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ReflectionPad1d", "ReflectionPad2d",
    "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d", "ChannelShuffle", "LPPool1d", "LPPool2d",
}
PASSTHROUGH_FUNCTIONS = {
    F + "dropout", F + "dropout1d", F + "dropout2d", F + "dropout3d", F + "alpha_dropout", F + "feature_alpha_dropout",
    F + "max_pool1d", F + "max_pool2d", F + "max_pool3d", F + "avg_pool1d", F + "avg_pool2d",
    F + "avg_pool3d", F + "adaptive_avg_pool1d", F + "adaptive_avg_pool2d", F + "adaptive_avg_pool3d",
    F + "adaptive_max_pool1d", F + "adaptive_max_pool2d", F + "adaptive_max_pool3d", F + "pad",
    F + "interpolate", F + "pixel_shuffle", "torch.flatten", "torch.dropout",
    # torch's function forms of the re-layouts in NEUTRAL_METHODS: each output element is one
    # input element, so the gradient is the same numbers rearranged
    "torch.reshape", "torch.permute", "torch.transpose", "torch.swapaxes", "torch.swapdims", "torch.movedim",
    "torch.moveaxis", "torch.squeeze", "torch.unsqueeze", "torch.flip", "torch.roll", "torch.t",
}
# Dropouts among the passthroughs, by how they scale in train mode (model/ir.Passthrough.dropout).
DROPOUT_MODULES = {
    "Dropout": "inverted", "Dropout1d": "inverted", "Dropout2d": "inverted", "Dropout3d": "inverted",
    "AlphaDropout": "alpha", "FeatureAlphaDropout": "alpha",
}
# Functional dropouts: qualified name -> (kind, default p, default of `training`), both read at
# position 1 and 2 or by keyword (`torch.dropout` names it `train` and has no defaults). The
# alpha dropouts default to training=False: without it they do nothing.
DROPOUT_FUNCTIONS = {
    F + "dropout": ("inverted", 0.5, True), F + "dropout1d": ("inverted", 0.5, True),
    F + "dropout2d": ("inverted", 0.5, True), F + "dropout3d": ("inverted", 0.5, True),
    F + "alpha_dropout": ("alpha", 0.5, False), F + "feature_alpha_dropout": ("alpha", 0.5, False),
    "torch.dropout": ("inverted", None, None),
}
# nn.Module methods that move, re-type or put the module in training mode and return it, its
# layers and their initialisation unchanged (`Generator(ngpu).to(device)`).
MODULE_MOVES = frozenset({"to", "cuda", "cpu", "float", "double", "half", "bfloat16", "train"})
# Tensor methods that reshape or re-type without changing the gradient's scale.
NEUTRAL_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "contiguous", "squeeze", "unsqueeze",
    "float", "half", "bfloat16", "double", "to", "type_as", "clone", "expand", "expand_as",
    "view_as", "reshape_as", "flip", "roll", "chunk_", "cuda", "cpu", "mT", "T",
    "swapaxes", "swapdims", "movedim", "moveaxis", "unflatten", "t",
}

RECURRENT_MODULES = {
    "RNN": "rnn", "LSTM": "lstm", "GRU": "gru", "RNNCell": "rnn_cell", "LSTMCell": "lstm_cell", "GRUCell": "gru_cell",
}
TRANSFORMER_LAYERS = {"TransformerEncoderLayer": "encoder", "TransformerDecoderLayer": "decoder"}
TRANSFORMER_STACKS = {"TransformerEncoder": "encoder", "TransformerDecoder": "decoder"}
ATTENTION_MODULES = {"MultiheadAttention"}
CONTAINERS = {"Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"}

INIT_FUNCTIONS = {
    "normal_": "normal", "normal": "normal", "uniform_": "uniform", "uniform": "uniform",
    "trunc_normal_": "trunc_normal", "xavier_normal_": "xavier_normal", "xavier_normal": "xavier_normal",
    "xavier_uniform_": "xavier_uniform", "xavier_uniform": "xavier_uniform",
    "kaiming_normal_": "kaiming_normal", "kaiming_normal": "kaiming_normal",
    "kaiming_uniform_": "kaiming_uniform", "kaiming_uniform": "kaiming_uniform",
    "orthogonal_": "orthogonal", "orthogonal": "orthogonal", "zeros_": "zeros", "ones_": "ones",
    "constant_": "constant", "constant": "constant", "eye_": "eye", "dirac_": "dirac", "sparse_": "unknown",
}
# Positional parameter names of the init functions after the tensor.
INIT_POSITIONAL = {
    "normal": ("mean", "std"), "uniform": ("a", "b"), "trunc_normal": ("mean", "std", "a", "b"),
    "xavier_normal": ("gain",), "xavier_uniform": ("gain",),
    "kaiming_normal": ("a", "mode", "nonlinearity"), "kaiming_uniform": ("a", "mode", "nonlinearity"),
    "orthogonal": ("gain",), "constant": ("val",),
}
INIT_DEFAULTS = {
    "normal": {"mean": 0.0, "std": 1.0}, "uniform": {"a": 0.0, "b": 1.0},
    "trunc_normal": {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0},
    "xavier_normal": {"gain": 1.0}, "xavier_uniform": {"gain": 1.0},
    "kaiming_normal": {"a": 0.0, "mode": "fan_in", "nonlinearity": "leaky_relu"},
    "kaiming_uniform": {"a": 0.0, "mode": "fan_in", "nonlinearity": "leaky_relu"},
    "orthogonal": {"gain": 1.0}, "constant": {"val": 0.0},
}
# In-place tensor methods that initialise: weight.data.normal_(mean, std) ...
INIT_METHODS = {
    "normal_": ("normal", ("mean", "std")), "uniform_": ("uniform", ("a", "b")),
    "zero_": ("zeros", ()), "fill_": ("constant", ("val",)),
}


def short(qualname: str) -> str | None:
    """'torch.nn.Linear' -> 'Linear' for names under torch.nn; None otherwise."""
    if qualname.startswith(NN) and qualname.count(".") == 2:
        return qualname[len(NN):]
    return None
