"""Recall case catalyst_frozen_encoder (bug): catalyst's ResnetEncoder(frozen=True) set requires_grad on modules, not parameters."""
# https://github.com/catalyst-team/catalyst/pull/81 -- nn.Module has no requires_grad attribute, so the "frozen" encoder kept training.
import torch.nn as nn
import torchvision


class ResnetEncoder(nn.Module):
    def __init__(self, arch="resnet18", pretrained=True, frozen=True):
        super().__init__()
        resnet = torchvision.models.__dict__[arch](pretrained=pretrained)
        modules = list(resnet.children())[:-2]
        if frozen:
            for module in modules:
                module.requires_grad = False
        self.feature_net = nn.Sequential(*modules)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = resnet.fc.in_features

    def forward(self, image):
        return self.pool(self.feature_net(image)).flatten(1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = ResnetEncoder(arch="resnet18")
        self.logits = nn.Linear(self.enc.out_features, 1)

    def forward(self, x):
        return self.logits(self.enc(x))
