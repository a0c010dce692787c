"""Quantized graphs as onnxruntime's quantizer writes them: QDQ (DequantizeLinear before each
weight) and QOperator (QGemm/QLinearConv with com.microsoft QLinearSigmoid), read with the
dequantised statistics of the integer weights; a ReLU folded into the output range is kept."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.model.ir import Activation, Param

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")
quantization = pytest.importorskip("onnxruntime.quantization")
nn = torch.nn


class _Reader(quantization.CalibrationDataReader):
    def __init__(self, name: str, width: int):
        rng = np.random.default_rng(0)
        self.batches = iter([{name: rng.standard_normal((8, width)).astype(np.float32)} for _ in range(4)])

    def get_next(self):
        return next(self.batches, None)


def _variants(model, width: int, folder: Path) -> dict[str, Path]:
    import onnx

    src = folder / "float.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(8, width),), str(src), dynamo=False, opset_version=17)
    name = onnx.load(str(src)).graph.input[0].name
    out = {"float": src}
    for fmt in ("QDQ", "QOperator"):
        out[fmt] = folder / f"{fmt}.onnx"
        quantization.quantize_static(str(src), str(out[fmt]), _Reader(name, width),
                                     quant_format=getattr(quantization.QuantFormat, fmt))
    return out


def _gain(path: Path) -> float:
    result = check_paths([path], Config(select=("GL101",), root=str(path.parent)), use_cache=False, jobs=1)
    (f,) = result.findings
    return f.data_dict["predicted"]


@pytest.mark.parametrize("act,depth", [("sigmoid", 12), ("relu", 16)])
def test_quantized_chains_predict_like_the_float_model(tmp_path, act, depth):
    width = 128
    layers: list = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Sigmoid() if act == "sigmoid" else nn.ReLU()]
    torch.manual_seed(0)
    files = _variants(nn.Sequential(*layers), width, tmp_path)
    reference = _gain(files["float"])
    for fmt in ("QDQ", "QOperator"):
        # int8 weights: each layer's variance is off by the rounding noise only.
        assert abs(_gain(files[fmt]) / reference - 1) < 0.10, fmt


def test_qoperator_layers_and_activations(tmp_path):
    from gradlint.onnx import extract_onnx

    width = 64
    model = nn.Sequential(nn.Linear(width, width), nn.Sigmoid(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, width))
    files = _variants(model, width, tmp_path)
    (net,) = extract_onnx(files["QOperator"], "q.onnx").networks
    kinds = [(type(n).__name__, getattr(n, "fn", None)) for n in net.nodes if isinstance(n, (Param, Activation))]
    assert kinds == [("Param", None), ("Activation", "sigmoid"), ("Param", None), ("Activation", "relu"),
                     ("Param", None)]
    assert all(p.init.scheme == "measured" for p in net.params)
