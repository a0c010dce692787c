"""Recall case vnn_batchnorm_norm_eps (fixed): torch.norm(...) + EPS as the divisor."""
# https://github.com/FlyingGiraffe/vnn/pull/4 -- x / norm gave NaN when a vector v_i = [0, 0, 0]; the PR adds EPS and uses torch.norm instead of sqrt.
import torch
import torch.nn as nn

EPS = 1e-6


class VNBatchNorm(nn.Module):
    def __init__(self, num_features, dim):
        super().__init__()
        self.dim = dim
        if dim == 3 or dim == 4:
            self.bn = nn.BatchNorm1d(num_features)
        elif dim == 5:
            self.bn = nn.BatchNorm2d(num_features)

    def forward(self, x):
        # x: point features of shape [B, N_feat, 3, N_samples, ...]
        norm = torch.norm(x, dim=2) + EPS
        norm_bn = self.bn(norm)
        norm = norm.unsqueeze(2)
        norm_bn = norm_bn.unsqueeze(2)
        x = x / norm * norm_bn
        return x


class VNLinearBN(nn.Module):
    def __init__(self, in_channels, out_channels, dim=4):
        super().__init__()
        self.map_to_feat = nn.Linear(in_channels, out_channels, bias=False)
        self.batchnorm = VNBatchNorm(out_channels, dim=dim)

    def forward(self, x):
        p = self.map_to_feat(x.transpose(1, -1)).transpose(1, -1)
        return self.batchnorm(p)
