"""Recall case mmrotate_gwd_sqrt (fixed): every sqrt argument is clamped to at least 1e-7."""
# https://github.com/open-mmlab/mmrotate/issues/205 -- sqrt(x) has an infinite/NaN gradient at x == 0; the reference code clamped to 1e-7, mmrotate to 0.
import torch
import torch.nn as nn


def gwd_loss(pred, target, tau=1.0, alpha=1.0):
    xy_p, Sigma_p = pred
    xy_t, Sigma_t = target
    xy_distance = (xy_p - xy_t).square().sum(dim=-1)
    whr_distance = Sigma_p.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
    whr_distance = whr_distance + Sigma_t.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
    _t_tr = (Sigma_p.bmm(Sigma_t)).diagonal(dim1=-2, dim2=-1).sum(dim=-1)
    _t_det_sqrt = (Sigma_p.det() * Sigma_t.det()).clamp(1e-7).sqrt()
    whr_distance = whr_distance + (-2) * ((_t_tr + 2 * _t_det_sqrt).clamp(1e-7).sqrt())
    distance = (xy_distance + alpha * alpha * whr_distance).clamp(1e-7).sqrt()
    distance = torch.log1p(distance)
    return 1 - 1 / (tau + distance)


class GDLoss(nn.Module):
    def forward(self, pred, target):
        return gwd_loss(pred, target).mean()


def train_step(head, loss_fn, optimizer, feats, target):
    xy, sigma = head(feats)
    loss = loss_fn((xy, sigma), target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
