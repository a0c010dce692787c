"""An example model with the gradient hazards gradlint finds. Try: gradlint check examples/"""
import torch
import torch.nn as nn


class DeepSigmoidMLP(nn.Module):
    """Twelve Linear(256) + Sigmoid layers with PyTorch's default init: gradients vanish (~4e-10)."""

    def __init__(self, depth: int = 12, width: int = 256):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.body(x))


class WideTanh(nn.Module):
    """normal_(std=1) on 512-wide layers before tanh: saturated units and exploding gradients."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(512, 512) for _ in range(8))
        for layer in self.layers:
            nn.init.normal_(layer.weight, std=1.0)

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


class HealthyResidualMLP(nn.Module):
    """Pre-norm residual blocks: nothing to report."""

    def __init__(self, width: int = 256, depth: int = 24):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.fcs = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))

    def forward(self, x):
        for norm, fc in zip(self.norms, self.fcs):
            x = x + torch.relu(fc(norm(x)))
        return x


def make_model():
    """A factory `gradlint probe examples/model.py:make_model` can load."""
    return DeepSigmoidMLP()
