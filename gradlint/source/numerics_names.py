"""The torch names the numerics walk knows, by what calling them makes of a value: the
probabilities, the losses, the factories, the calls that cut a value from the graph, the methods
that keep what a value is. The handlers that read them are numerics_ops.TorchOps."""

from __future__ import annotations

F = "torch.nn.functional."
SOFTMAX = frozenset({"torch.softmax", F + "softmax", "torch.special.softmax", "torch.Tensor.softmax"})
SIGMOID = frozenset({"torch.sigmoid", F + "sigmoid", "torch.special.expit", "torch.Tensor.sigmoid"})
LOG_SOFTMAX = frozenset({"torch.log_softmax", F + "log_softmax", "torch.special.log_softmax"})
LOGSIGMOID = frozenset({F + "logsigmoid"})
LOSS_FUNCTIONS = {
    F + "cross_entropy": "ce",
    F + "binary_cross_entropy": "bce",
    F + "binary_cross_entropy_with_logits": "bce_logits",
}
# Losses of an input against a target (`F.mse_loss(input, target)`) that gradlint's numerics
# have no other use for: what they give is cut when the input is and the target carries no gradient.
TARGET_LOSSES = frozenset(F + name for name in (
    "mse_loss l1_loss smooth_l1_loss huber_loss nll_loss kl_div poisson_nll_loss soft_margin_loss "
    "multilabel_soft_margin_loss multi_margin_loss multilabel_margin_loss hinge_embedding_loss").split())
LOSS_MODULES = {
    "torch.nn.CrossEntropyLoss": "ce",
    "torch.nn.BCELoss": "bce",
    "torch.nn.BCEWithLogitsLoss": "bce_logits",
}
PROB_MODULES = {"torch.nn.Softmax": "softmax", "torch.nn.Sigmoid": "sigmoid",
                "torch.nn.LogSoftmax": "log_softmax", "torch.nn.LogSigmoid": "logsigmoid"}
# Modules whose output is never below 0 whatever their arguments (V.nonneg)
NONNEG_MODULES = frozenset({"torch.nn.ReLU", "torch.nn.ReLU6"})
# torch.nn modules without parameters: a Sequential of them trains nothing (V.through)
PARAM_FREE_MODULES = frozenset("torch.nn." + n for n in (
    "ReLU ReLU6 LeakyReLU ELU SELU CELU GELU SiLU Mish Sigmoid Tanh Softmax LogSoftmax LogSigmoid "
    "Softplus Softsign Hardtanh Hardsigmoid Hardswish Tanhshrink Threshold Identity Flatten Unflatten "
    "Dropout Dropout1d Dropout2d Dropout3d AlphaDropout MaxPool1d MaxPool2d MaxPool3d AvgPool1d AvgPool2d "
    "AvgPool3d AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d AdaptiveMaxPool1d AdaptiveMaxPool2d "
    "AdaptiveMaxPool3d Upsample").split())
# torch.nn modules that keep a value that is never negative so, and all zero where it was: a
# Sequential ending in ReLU then Dropout or pooling still ends in a ReLU's output (V.nonneg)
SIGN_KEEPING_MODULES = frozenset("torch.nn." + n for n in (
    "Dropout Dropout1d Dropout2d Dropout3d Identity Flatten Unflatten MaxPool1d MaxPool2d MaxPool3d AvgPool1d "
    "AvgPool2d AvgPool3d AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d AdaptiveMaxPool1d "
    "AdaptiveMaxPool2d AdaptiveMaxPool3d").split())
FACTORIES = frozenset("torch." + n for n in (
    "zeros ones empty full rand randn randint randperm arange linspace logspace eye zeros_like "
    "ones_like empty_like full_like rand_like randn_like randint_like normal bernoulli multinomial "
    "tril_indices triu_indices").split())
TENSOR_FROM_DATA = frozenset({"torch.tensor", "torch.as_tensor", "torch.from_numpy", "torch.Tensor",
                              "torch.FloatTensor", "torch.DoubleTensor", "torch.LongTensor",
                              "torch.cuda.FloatTensor", "torch.scalar_tensor"})
VARIABLE = frozenset({"torch.autograd.Variable", "torch.autograd.variable.Variable"})
GRADCHECK = frozenset({"torch.autograd.gradcheck", "torch.autograd.gradgradcheck",
                       "torch.autograd.gradcheck.gradcheck", "torch.autograd.gradcheck.gradgradcheck",
                       "torch.testing._internal.common_utils.gradcheck"})
# Methods that move, reshape or re-type a tensor: what a value is survives them.
KEEP = frozenset(
    "view view_as reshape reshape_as flatten squeeze unsqueeze permute transpose contiguous float "
    "double half bfloat16 to type type_as clone cuda cpu t expand expand_as gather index_select "
    "masked_select narrow select movedim swapaxes flip roll repeat tile squeeze_ unsqueeze_ diagonal diag "
    "take_along_dim unflatten".split())
# Of KEEP, the selections: what they keep of pairwise distances may leave the zero diagonal out
# (V.pairs); the other methods there keep every element.
_SELECTIONS = frozenset("gather index_select masked_select narrow select diagonal diag take_along_dim".split())
# The same selections and reshapes written as torch functions (`torch.diagonal(probs)`,
# `torch.gather(p, 1, idx)`): the result is what their first argument is.
KEEP_FUNCTIONS = frozenset("torch." + name for name in (
    "reshape flatten squeeze unsqueeze permute transpose t gather index_select masked_select "
    "narrow select movedim swapaxes flip roll tile diagonal diag take_along_dim unflatten").split())
# Linear transforms of a signal (their first argument): the rest are settings (sizes, a window).
SIGNAL_TRANSFORMS = frozenset({"torch.stft"} | {"torch.fft." + n for n in (
    "fft ifft rfft irfft fft2 ifft2 rfft2 irfft2 fftn ifftn rfftn irfftn hfft ihfft".split())})
CUTTING_METHODS = {"item": ".item()", "tolist": ".tolist()", "numpy": ".numpy()",
                   "argmax": "argmax", "argmin": "argmin", "round": "round", "detach": ".detach()",
                   "detach_": ".detach_()", "long": "an integer cast", "int": "an integer cast",
                   "bool": "a bool cast"}
CUTTING_FUNCTIONS = {"torch.argmax": "argmax", "torch.argmin": "argmin", "torch.round": "round"}
_BACKWARD_HOSTS = frozenset({"accelerator", "fabric", "engine", "model_engine", "deepspeed", "strategy",
                             "trainer", "self", "amp", "booster"})


_MAX_REDUCTIONS = frozenset({"torch.logsumexp", "torch.special.logsumexp", "torch.amax"})
# Moving or re-typing a module or a tensor keeps everything known about it.
_MOVE = frozenset("to cuda cpu float double half bfloat16 train eval type".split())
_ARITH = frozenset("add sub mul div neg mean sum add_ sub_ mul_ div_ abs pow float double half to view reshape "
                   "squeeze unsqueeze".split())

# Functions that are zero only where their input is (odd or sign-keeping activations).
_ZERO_KEPT = frozenset({"torch.tanh", "torch.nn.functional.tanh", "torch.atan", "torch.sinh", "torch.asinh",
                        "torch.nn.functional.hardtanh", "torch.nn.functional.softsign",
                        "torch.nn.functional.leaky_relu", "torch.nn.functional.elu", "torch.nn.functional.selu",
                        "torch.nn.functional.celu"})
