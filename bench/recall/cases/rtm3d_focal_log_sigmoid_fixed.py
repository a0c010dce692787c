"""Recall case rtm3d_focal_log_sigmoid (fixed): the heatmap sigmoid is clamped to [1e-4, 1 - 1e-4] before the focal loss."""
# https://github.com/maudzung/RTM3D/issues/13 -- log(pred) and log(1 - pred) of an unclamped sigmoid output gave log(0) and a NaN loss.
import torch
import torch.nn as nn


def _sigmoid(x):
    return torch.clamp(x.sigmoid_(), min=1e-4, max=1 - 1e-4)


def _neg_loss(pred, gt):
    pos_inds = gt.eq(1).float()
    neg_inds = gt.lt(1).float()
    neg_weights = torch.pow(1 - gt, 4)
    pos_loss = torch.log(pred) * torch.pow(1 - pred, 2) * pos_inds
    neg_loss = torch.log(1 - pred) * torch.pow(pred, 2) * neg_weights * neg_inds
    num_pos = pos_inds.float().sum()
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos.clamp(min=1)


class FocalLoss(nn.Module):
    def forward(self, out, target):
        return _neg_loss(out, target)


class Compute_Loss(nn.Module):
    def __init__(self):
        super().__init__()
        self.focal_loss = FocalLoss()

    def forward(self, outputs, tg):
        outputs['hm_mc'] = _sigmoid(outputs['hm_mc'])
        return self.focal_loss(outputs['hm_mc'], tg['hm_mc'])


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.hm_mc = nn.Conv2d(64, 3, kernel_size=1)

    def forward(self, feats):
        return {'hm_mc': self.hm_mc(feats)}


def train_step(head, criterion, optimizer, feats, targets):
    loss = criterion(head(feats), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
