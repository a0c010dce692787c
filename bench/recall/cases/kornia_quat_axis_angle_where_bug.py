"""Recall case kornia_quat_axis_angle_where (bug): kornia's quaternion_to_axis_angle took sqrt of the vector part's squared norm and divided by it, relying on torch.where to pick k_neg at the identity."""
# https://github.com/kornia/kornia/pull/3980 -- sin_theta = sqrt(q1^2 + q2^2 + q3^2) and k_pos = two_theta / sin_theta are evaluated for every element; at the identity quaternion (1, 0, 0, 0) where(sin_squared_theta > 0, k_pos, k_neg) selects k_neg, but backward still runs through sqrt(0) and the division and the gradient is NaN (issue #3949); the fix feeds sqrt a safe radicand (double where) and guards the division with the same mask.
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor, tensor, where


def quaternion_to_axis_angle(quaternion: Tensor) -> Tensor:
    """Convert quaternion vector to axis angle of rotation in radians.

    The quaternion should be in (w, x, y, z) format.
    """
    if not torch.is_tensor(quaternion):
        raise TypeError(f"Input type is not a Tensor. Got {type(quaternion)}")

    if not quaternion.shape[-1] == 4:
        raise ValueError(f"Input must be a tensor of shape Nx4 or 4. Got {quaternion.shape}")

    # unpack input and compute conversion
    q1: Tensor = tensor([])
    q2: Tensor = tensor([])
    q3: Tensor = tensor([])
    cos_theta: Tensor = tensor([])

    cos_theta = quaternion[..., 0]
    q1 = quaternion[..., 1]
    q2 = quaternion[..., 2]
    q3 = quaternion[..., 3]

    sin_squared_theta: Tensor = q1 * q1 + q2 * q2 + q3 * q3

    sin_theta: Tensor = torch.sqrt(sin_squared_theta)
    two_theta: Tensor = 2.0 * where(
        cos_theta < 0.0, torch.atan2(-sin_theta, -cos_theta), torch.atan2(sin_theta, cos_theta)
    )

    k_pos: Tensor = two_theta / sin_theta
    k_neg: Tensor = 2.0 * torch.ones_like(sin_theta)
    k: Tensor = where(sin_squared_theta > 0.0, k_pos, k_neg)

    axis_angle: Tensor = torch.zeros_like(quaternion)[..., :3]
    axis_angle[..., 0] += q1 * k
    axis_angle[..., 1] += q2 * k
    axis_angle[..., 2] += q3 * k
    return axis_angle


class RotationHead(nn.Module):
    """Pose regression: predicts a unit quaternion from image features."""

    def __init__(self, in_features=512):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(in_features, 256), nn.ReLU(), nn.Linear(256, 4))

    def forward(self, feats):
        return F.normalize(self.fc(feats), dim=-1)


def train(loader, epochs=10):
    model = RotationHead()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    for epoch in range(epochs):
        for feats, target_axis_angle in loader:
            quat = model(feats)
            pred_axis_angle = quaternion_to_axis_angle(quat)
            loss = F.l1_loss(pred_axis_angle, target_axis_angle)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
