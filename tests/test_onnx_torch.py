"""Real exports (torch.onnx.export, TorchScript exporter) of hand-written ResNet-18-like,
MobileNetV3-like and nn.TransformerEncoder models with their default random initialisation.
torchvision cannot be imported beside this torch build, so the architectures are written here."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from gradlint.model.ir import Activation, Norm, Opaque, Param, Recurrent, Residual
from gradlint.onnx import extract_onnx

pytestmark = pytest.mark.torch


def _export(model, args, path: Path, opset: int = 17) -> Path:
    import torch

    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset)
    return path


def longest_chain(nodes) -> int:
    """Params in a row with no norm, residual or opaque node between them (bodies included)."""
    best = run = 0
    for n in nodes:
        if isinstance(n, Param):
            run += 1
            best = max(best, run)
        elif isinstance(n, (Norm, Residual, Opaque, Recurrent)):
            run = 0
        if isinstance(n, Residual):
            best = max(best, longest_chain(n.body))
    return best


def resnet18_like():
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            chans, layers, cin = (16, 32, 64, 128), [], 16
            for i, c in enumerate(chans):
                layers.append(nn.Sequential(Block(cin, c, 1 if i == 0 else 2), Block(c, c, 1)))
                cin = c
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(128, 10)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet()


def mobilenet_v3_like():
    import torch.nn as nn

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(c, c // 4, 1)
            self.fc2 = nn.Conv2d(c // 4, c, 1)

        def forward(self, x):
            s = nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(self.pool(x)))))
            return x * s

    class InvertedResidual(nn.Module):
        def __init__(self, cin, exp, cout, stride, se):
            super().__init__()
            layers = [nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), nn.Hardswish(),
                      nn.Conv2d(exp, exp, 3, stride, 1, groups=exp, bias=False), nn.BatchNorm2d(exp), nn.Hardswish()]
            if se:
                layers.append(SE(exp))
            layers += [nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.block = nn.Sequential(*layers)
            self.use_res = stride == 1 and cin == cout

        def forward(self, x):
            out = self.block(x)
            return x + out if self.use_res else out

    class MobileNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()),
                InvertedResidual(16, 16, 16, 1, True), InvertedResidual(16, 64, 24, 2, False),
                InvertedResidual(24, 72, 24, 1, False), InvertedResidual(24, 96, 40, 2, True),
                InvertedResidual(40, 240, 40, 1, True),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(40, 128), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(128, 10))

        def forward(self, x):
            return self.classifier(self.pool(self.features(x)).flatten(1))

    return MobileNet()


def test_resnet18_like_export(tmp_path: Path):
    import torch

    path = _export(resnet18_like(), (torch.randn(1, 3, 64, 64),), tmp_path / "resnet.onnx")
    facts = extract_onnx(path, "resnet.onnx")
    assert facts.input_errors == ()
    (net,) = facts.networks
    residuals = [n for n in net.nodes if isinstance(n, Residual)]
    assert len(residuals) == 8
    # BN folded into the convs by the exporter: each body is conv-relu-conv, measured from the weights.
    assert all(sum(isinstance(b, Param) for b in r.body) == 2 for r in residuals)
    assert residuals[2].name == "layer2.0"
    assert longest_chain(net.nodes) <= 3
    assert net.nodes[-1].name == "fc" and net.nodes[-1].init.scheme == "measured"


def test_mobilenet_v3_like_export(tmp_path: Path):
    import torch

    path = _export(mobilenet_v3_like(), (torch.randn(1, 3, 64, 64),), tmp_path / "mobilenet.onnx")
    facts = extract_onnx(path, "mobilenet.onnx")
    assert facts.input_errors == ()
    (net,) = facts.networks
    acts = {n.fn for n in net.nodes if isinstance(n, Activation)}
    assert "hardswish" in acts
    assert sum(isinstance(n, Residual) for n in net.nodes) == 3
    depthwise = [p for p in net.params if p.op == "conv2d" and p.fan_in == 9]
    assert depthwise, "depthwise convs: fan_in = 1 channel x 3x3"
    assert longest_chain(net.nodes) <= 4


def test_transformer_encoder_export_is_post_ln(tmp_path: Path):
    import torch
    import torch.nn as nn

    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.1)
    model = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False)
    path = _export(model, (torch.randn(7, 2, 32),), tmp_path / "encoder.onnx")
    facts = extract_onnx(path, "encoder.onnx")
    assert facts.input_errors == ()
    (net,) = facts.networks
    pairs = sum(1 for a, b in zip(net.nodes, net.nodes[1:])
                if isinstance(a, Residual) and isinstance(b, Norm) and b.kind == "layer")
    assert pairs == 6  # attention and feed-forward sub-layers of 3 blocks
    names = [p.name for p in net.params]
    assert "layers.2.linear1" in names and "layers.1.self_attn.out_proj" in names
    assert longest_chain(net.nodes) <= 2
    # Softmax inside attention is not a Log input: no hazards in a plain encoder.
    assert facts.graph.hazards == ()


def test_log_softmax_written_by_hand_is_gl302_in_the_export(tmp_path: Path):
    import torch
    import torch.nn as nn

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return torch.log(torch.softmax(self.fc(x), dim=-1))

    path = _export(Head(), (torch.randn(2, 8),), tmp_path / "head.onnx")
    facts = extract_onnx(path, "head.onnx")
    assert [(h.kind, h.node.op_type) for h in facts.graph.hazards] == [("log_of_probability", "Log")]


@pytest.mark.parametrize("opset", [14, 17, 20])
def test_gelu_and_layernorm_across_opsets(tmp_path: Path, opset: int):
    """Older opsets spell LayerNorm out (ReduceMean/Sub/Pow/.../Div) and GELU as Erf: same IR."""
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(16, 16), nn.GELU(), nn.LayerNorm(16), nn.SiLU(), nn.Linear(16, 4))
    path = _export(model, (torch.randn(3, 16),), tmp_path / f"m{opset}.onnx", opset=opset)
    (net,) = extract_onnx(path, path.name).networks
    assert [type(n).__name__ for n in net.nodes] == ["Param", "Activation", "Norm", "Activation", "Param"]
    assert (net.nodes[1].fn, net.nodes[2].kind, net.nodes[3].fn) == ("gelu", "layer", "silu")
    assert [net.nodes[0].name, net.nodes[4].name] == ["0", "4"]
