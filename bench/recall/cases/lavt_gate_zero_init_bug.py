"""Recall case lavt_gate_zero_init (bug): LAVT zero-initialised both Linear layers of its residual gate."""
# https://github.com/yz93/LAVT-RIS/issues/25 -- with both weights zero (Linear -> ReLU -> Linear -> Tanh) each layer's gradient is exactly zero, so the gate never trains; the thread's fix keeps only the second zero init.
import torch
import torch.nn as nn


class PWAM(nn.Module):
    """Pixel-word attention (reduced): visual features gated by attended language features."""

    def __init__(self, dim, l_in_channels=768):
        super().__init__()
        self.vis_project = nn.Sequential(nn.Conv1d(dim, dim, 1, 1), nn.GELU())
        self.lang_project = nn.Linear(l_in_channels, dim)
        self.project_mm = nn.Sequential(nn.Conv1d(dim, dim, 1, 1), nn.GELU())

    def forward(self, x, l, l_mask):
        vis = self.vis_project(x.permute(0, 2, 1))
        attn = torch.softmax(x @ self.lang_project(l.permute(0, 2, 1)).transpose(1, 2), dim=-1)
        lang = (attn @ (self.lang_project(l.permute(0, 2, 1)) * l_mask)).permute(0, 2, 1)
        return self.project_mm(vis * lang).permute(0, 2, 1)


class MMBasicLayer(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.fusion = PWAM(dim)
        self.res_gate = nn.Sequential(
            nn.Linear(dim, dim, bias=False),
            nn.ReLU(),
            nn.Linear(dim, dim, bias=False),
            nn.Tanh()
        )
        # initialize the gate to 0
        nn.init.zeros_(self.res_gate[0].weight)
        nn.init.zeros_(self.res_gate[2].weight)

    def forward(self, x, l, l_mask):
        x_residual = self.fusion(x, l, l_mask)
        x = x + (self.res_gate(x_residual) * x_residual)
        return x_residual, x
