"""Recall case scae_gmm_logsumexp (bug): scae-pytorch computed a mixture log-likelihood as log(sum(exp(.)))."""
# https://github.com/mlberkeley/scae-pytorch/pull/4 -- exp() of the per-component log-densities overflowed to inf and the loss went NaN; fixed with logsumexp.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class GaussianMixture(nn.Module):
    def __init__(self, n_components, dim):
        super().__init__()
        self.means = nn.Parameter(torch.randn(n_components, dim))
        self.log_scales = nn.Parameter(torch.zeros(n_components, dim))
        self.mixing_logits = nn.Parameter(torch.zeros(n_components))

    def log_prob(self, x):
        x = x.unsqueeze(-2)
        scales = self.log_scales.exp()
        log_gauss = (-0.5 * ((x - self.means) / scales) ** 2 - self.log_scales
                     - 0.5 * math.log(2 * math.pi)).sum(-1)
        mixing = F.softmax(self.mixing_logits, dim=-1)
        return torch.log(torch.sum(torch.exp(log_gauss) * mixing, dim=-1))


def train(mixture, data, steps=100):
    optimizer = torch.optim.Adam(mixture.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = -mixture.log_prob(data).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
