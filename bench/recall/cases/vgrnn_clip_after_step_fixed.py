"""Recall case vgrnn_clip_after_step (fixed): clipping moved before opt.step()."""
# https://github.com/VGraphRNN/VGRNN/issues/4 -- nn.utils.clip_grad_norm was called after optimizer.step(), so it did nothing.
import torch
import torch.nn as nn


class VGRNN(nn.Module):
    def __init__(self, x_dim, h_dim, z_dim):
        super().__init__()
        self.phi_x = nn.Sequential(nn.Linear(x_dim, h_dim), nn.ReLU())
        self.rnn = nn.GRU(h_dim, h_dim)
        self.enc = nn.Linear(2 * h_dim, z_dim)

    def forward(self, x_seq):
        h, _ = self.rnn(self.phi_x(x_seq))
        z = self.enc(torch.cat([h, h], dim=-1))
        kld_loss = (z ** 2).mean()
        nll_loss = ((z.sum(-1) - x_seq.sum(-1)) ** 2).mean()
        return kld_loss, nll_loss


model = VGRNN(16, 32, 8)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
clip = 10
x_in = torch.randn(20, 4, 16)
for k in range(1000):
    optimizer.zero_grad()
    kld_loss, nll_loss = model(x_in)
    loss = kld_loss + nll_loss
    loss.backward()
    nn.utils.clip_grad_norm(model.parameters(), clip)
    optimizer.step()
