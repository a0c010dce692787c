"""Operations the exporters spell out in several nodes, read back as the one operation: tanh-form
GELU (GPT-2's gelu_new), T5's RMSNorm, Softplus with beta and threshold, SiLU as x*sigmoid(x), and
nn.RNN unrolled by the dynamo exporter (one MatMul per step with a shared weight: GL107 kept)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest

from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.model.ir import Activation, Norm, Opaque
from gradlint.onnx import extract_onnx

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")
nn = torch.nn


class GeluNew(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class T5LayerNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = 1e-6

    def forward(self, x):
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x


class HandSiLU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


def between_linears(middle) -> nn.Module:
    return nn.Sequential(nn.Linear(16, 16), middle, nn.Linear(16, 16))


def lowered(model, tmp_path: Path, dynamo: bool):
    path = tmp_path / f"m_{'dyn' if dynamo else 'ts'}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript")
            torch.onnx.export(model.eval(), (torch.randn(3, 16),), str(path), dynamo=True, verbose=False)
        else:
            torch.onnx.export(model.eval(), (torch.randn(3, 16),), str(path), dynamo=False, opset_version=17)
    facts = extract_onnx(path, path.name)
    assert facts.input_errors == ()
    (net,) = facts.networks
    assert not any(isinstance(n, Opaque) for n in net.nodes), net.nodes
    return net.nodes[1:-1]


@pytest.mark.parametrize("dynamo", [False, True])
def test_gelu_new_tanh_form(tmp_path, dynamo):
    (act,) = lowered(between_linears(GeluNew()), tmp_path, dynamo)
    assert isinstance(act, Activation) and act.fn == "gelu"


def test_gelu_tanh_approximation_below_opset_20(tmp_path):
    (act,) = lowered(between_linears(nn.GELU(approximate="tanh")), tmp_path, False)
    assert isinstance(act, Activation) and act.fn == "gelu"


@pytest.mark.parametrize("dynamo", [False])  # dynamo's form (no Cast, Reciprocal) is the plain RMSNorm
def test_t5_rmsnorm(tmp_path, dynamo):
    nodes = lowered(between_linears(T5LayerNorm(16)), tmp_path, dynamo)
    assert [type(n).__name__ for n in nodes if not n.__class__.__name__ == "Passthrough"] == ["Norm"]
    assert next(n for n in nodes if isinstance(n, Norm)).kind == "rms"


@pytest.mark.parametrize("dynamo,beta", [(False, 1.0), (False, 2.0), (True, 2.0)])
def test_softplus_with_beta_and_threshold(tmp_path, dynamo, beta):
    (act,) = lowered(between_linears(nn.Softplus(beta=beta, threshold=10.0)), tmp_path, dynamo)
    assert isinstance(act, Activation) and act.fn == "softplus" and (act.param or 1.0) == beta


@pytest.mark.parametrize("dynamo", [False])
def test_silu_written_by_hand(tmp_path, dynamo):
    (act,) = lowered(between_linears(HandSiLU()), tmp_path, dynamo)
    assert isinstance(act, Activation) and act.fn == "silu"


class ReluRNN(nn.Module):
    def __init__(self, identity: bool = False, hidden: int = 16):
        super().__init__()
        self.rnn = nn.RNN(16, hidden, nonlinearity="relu", batch_first=True)
        if identity:
            nn.init.eye_(self.rnn.weight_hh_l0)
        self.out = nn.Linear(hidden, 4)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y)


# (hidden 64: the exporter writes W_hh once per time step, each copy its own tensor)
@pytest.mark.parametrize("hidden", [16, 64])
@pytest.mark.parametrize("identity", [False, True])
def test_unrolled_relu_rnn_keeps_gl107(tmp_path, identity, hidden):
    pytest.importorskip("onnxscript")
    path = tmp_path / "rnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ReluRNN(identity, hidden).eval(), (torch.randn(2, 5, 16),), str(path), dynamo=True,
                          verbose=False)
    import onnx

    assert "RNN" not in {n.op_type for n in onnx.load(str(path)).graph.node}  # really unrolled
    found = check_paths([path], Config(select=("GL107",), root=str(tmp_path)), use_cache=False, jobs=1).findings
    if identity:
        assert found == []  # IRNN
    else:
        (f,) = found
        assert f.data_dict["module"] == "rnn"


def test_cloned_relu_layers_are_not_a_recurrence(tmp_path):
    """Equal weights of distinct (cloned) layers are deduplicated into one tensor by the exporter;
    with no input term added at each step they are a deep stack, not an RNN."""
    import copy

    block = nn.Sequential(nn.Linear(16, 16), nn.ReLU())
    model = nn.Sequential(*[copy.deepcopy(block) for _ in range(4)])
    path = tmp_path / "clones.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(3, 16),), str(path), dynamo=False, opset_version=17)
    (net,) = extract_onnx(path, "clones.onnx").networks
    assert net.recurrents == ()
