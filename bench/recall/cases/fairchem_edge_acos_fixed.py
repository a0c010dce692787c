"""Recall case fairchem_edge_acos (fixed): the acos argument is clamped to [-1 + EPS, 1 - EPS]."""
# https://github.com/facebookresearch/fairchem/pull/1574 -- nearly y-aligned edges gave nan/inf gradients in acos's backward when fine-tuning with forces; the fix adds an EPS clamp.
import torch
import torch.nn as nn

EPS = 1e-7


def init_edge_rot_euler_angles(edge_distance_vec):
    xyz = torch.nn.functional.normalize(edge_distance_vec).clamp(-1.0, 1.0)
    x, y, z = torch.split(xyz, 1, dim=1)
    beta = torch.acos(y.clamp(-1.0 + EPS, 1.0 - EPS))
    alpha = torch.atan2(x, z)
    return alpha.squeeze(-1), beta.squeeze(-1)


class EdgeRotation(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.proj = nn.Linear(3, hidden)

    def forward(self, pos, edge_index):
        edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
        alpha, beta = init_edge_rot_euler_angles(edge_vec)
        return self.proj(torch.stack([alpha, beta, alpha * beta], dim=-1))


def finetune_step(model, optimizer, pos, edge_index, energy_target, forces_target):
    pos = pos.requires_grad_(True)
    energy = model(pos, edge_index).sum()
    forces = -torch.autograd.grad(energy, pos, create_graph=True)[0]
    loss = (energy - energy_target) ** 2 + ((forces - forces_target) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
