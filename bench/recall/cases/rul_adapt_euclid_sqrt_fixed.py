"""Recall case rul_adapt_euclid_sqrt (fixed): an epsilon inside the sqrt."""
# https://github.com/tilman151/rul-adapt/pull/22 -- the gradient of a Euclidean distance is undefined at distance 0 (identical feature vectors gave NaN).
import torch
import torch.nn as nn


def _pairwise_euclidean(x, y, eps=1e-8):
    diff = x.unsqueeze(1) - y.unsqueeze(0)
    return torch.sqrt(torch.sum(diff ** 2, dim=-1) + eps)


class ConsistencyLoss(nn.Module):
    def forward(self, source_feats, target_feats):
        dist = _pairwise_euclidean(source_feats, target_feats)
        return dist.min(dim=1).values.mean()


def train_step(encoder, regressor, loss_fn, optimizer, x_src, y_src, x_tgt):
    f_src, f_tgt = encoder(x_src), encoder(x_tgt)
    loss = nn.functional.mse_loss(regressor(f_src).squeeze(-1), y_src) + loss_fn(f_src, f_tgt)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
