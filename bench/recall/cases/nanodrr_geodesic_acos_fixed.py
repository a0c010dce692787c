"""Recall case nanodrr_geodesic_acos (fixed): the cosine is clamped strictly inside (-1, 1) before acos."""
# https://github.com/eigenvivek/nanodrr/pull/31 -- acos'(x) is infinite at |x| = 1, so identical rotations gave infinite gradients; the PR clamps the input.
import torch
import torch.nn as nn


def rotmat_geodesic_distance(R1, R2, eps=1e-6):
    R = R1.transpose(-1, -2) @ R2
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.acos(cos.clamp(-1 + eps, 1 - eps))


class PoseLoss(nn.Module):
    def forward(self, R_pred, t_pred, R_true, t_true):
        geo = rotmat_geodesic_distance(R_pred, R_true)
        return geo.mean() + (t_pred - t_true).abs().mean()


def register(pose_net, images, R_true, t_true, steps=100):
    optimizer = torch.optim.Adam(pose_net.parameters(), lr=1e-3)
    loss_fn = PoseLoss()
    for _ in range(steps):
        R_pred, t_pred = pose_net(images)
        loss = loss_fn(R_pred, t_pred, R_true, t_true)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
