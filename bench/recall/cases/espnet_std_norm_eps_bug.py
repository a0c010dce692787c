"""Recall case espnet_std_norm_eps (bug): ESPnet's multi-resolution spectral loss divided by the signal std with no epsilon."""
# https://github.com/espnet/espnet/pull/6309 -- normalize_variance divided target and estimate by torch.std(...), which is 0 for silent/constant signals.
import torch
import torch.nn as nn


class MultiResL1SpecLoss(nn.Module):
    def __init__(self, window_sz=(512,), normalize_variance=True, eps=1e-8):
        super().__init__()
        self.window_sz = window_sz
        self.normalize_variance = normalize_variance
        self.eps = eps

    def forward(self, target, estimate):
        if self.normalize_variance:
            target = target / torch.std(target, dim=1, keepdim=True)
            estimate = estimate / torch.std(estimate, dim=1, keepdim=True)
        scaling = torch.sum(estimate * target, -1, keepdim=True) / (
            torch.sum(estimate ** 2, -1, keepdim=True) + self.eps
        )
        time_loss = torch.sum(torch.abs(target - estimate * scaling), -1)
        spec_loss = 0.0
        for n in self.window_sz:
            win = torch.hann_window(n, device=target.device)
            t_spec = torch.stft(target, n, window=win, return_complex=True).abs()
            e_spec = torch.stft(estimate * scaling, n, window=win, return_complex=True).abs()
            spec_loss = spec_loss + torch.abs(t_spec - e_spec).sum((1, 2))
        return (time_loss + spec_loss).mean()


def train_step(enh_model, criterion, optimizer, noisy, clean):
    loss = criterion(clean, enh_model(noisy))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
