"""Recall case stoi_sqrt_eps (bug): pytorch_stoi took .pow(0.5) of band energies that can be exactly 0."""
# https://github.com/mpariente/pytorch_stoi/issues/7 -- the one-third-octave band magnitudes were sqrt(sum of squares) with no EPS, so silent bands gave NaN gradients.
import torch
import torch.nn as nn

EPS = 1e-8


class NegSTOILoss(nn.Module):
    def __init__(self, obm, win, nfft):
        super().__init__()
        self.register_buffer("OBM", obm)
        self.register_buffer("win", win)
        self.nfft = nfft

    def forward(self, est_targets, targets):
        x_spec = torch.stft(targets, self.nfft, window=self.win, return_complex=False)
        y_spec = torch.stft(est_targets, self.nfft, window=self.win, return_complex=False)
        x_tob = torch.matmul(self.OBM, torch.norm(x_spec, 2, -1) ** 2).pow(0.5)
        y_tob = torch.matmul(self.OBM, torch.norm(y_spec, 2, -1) ** 2).pow(0.5)
        x_n = x_tob - x_tob.mean(-1, keepdim=True)
        y_n = y_tob - y_tob.mean(-1, keepdim=True)
        x_n = x_n / (x_n.norm(dim=-1, keepdim=True) + EPS)
        y_n = y_n / (y_n.norm(dim=-1, keepdim=True) + EPS)
        return -(x_n * y_n).sum(-1).mean()


def train_step(separator, loss_func, optimizer, mix, clean):
    loss = loss_func(separator(mix), clean)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
