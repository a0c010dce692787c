"""Recall case torchfields_vote_softmin (fixed): the softmin is computed with Tensor.softmax, which shifts by the max."""
# https://github.com/seung-lab/torchfields/pull/18 -- the hand-written softmin over subset distances had no max-shift; for large distances or a small temperature every exp() underflowed to 0 and the vote weights became 0/0 = NaN, fixed with (-mavg / softmin_temp).softmax(dim=0).
from itertools import combinations

import torch
import torch.nn as nn


def get_vote_shape(self):
    n, _, *shape = self.shape
    return n, shape


def get_subset_size(self, subset_size=None):
    n, _ = get_vote_shape(self)
    m = (n + 1) // 2
    if subset_size is not None:
        m = subset_size
    return m


def get_vote_subsets(self, subset_size=None):
    n, _ = get_vote_shape(self)
    m = get_subset_size(self, subset_size=subset_size)
    return list(combinations(range(n), m))


def distance(field_a, field_b):
    return (field_a - field_b).norm(dim=-3)


def get_vote_weights(self, softmin_temp=1, subset_size=None):
    n, shape = get_vote_shape(self)
    mtuples = get_vote_subsets(self, subset_size=subset_size)

    # compute distances for all pairs of fields
    dists = torch.zeros((n, n, *shape))
    for i in range(n):
        for j in range(i):
            dists[i, j] = dists[j, i] = distance(self[i], self[j])

    # compute mean distance for all majority tuples
    mtuple_avg = []
    for mtuple in mtuples:
        delta = torch.stack([dists[i, j] for i, j in combinations(mtuple, 2)]).mean(dim=0)
        mtuple_avg.append(delta)
    mavg = torch.stack(mtuple_avg)

    # compute weights for mtuples: smaller mean distance -> higher weight
    mt_weights = (-mavg / softmin_temp).softmax(dim=0)

    # assign mtuple weights back to individual fields
    field_weights = torch.zeros((n, *shape))
    for i, mtuple in enumerate(mtuples):
        for j in mtuple:
            field_weights[j] += mt_weights[i]
    elements_per_subset = field_weights.sum(dim=0, keepdim=True)
    return field_weights / elements_per_subset


def vote(self, softmin_temp=1, subset_size=None):
    weights = get_vote_weights(self, softmin_temp=softmin_temp, subset_size=subset_size)
    return (self * weights.unsqueeze(-3)).sum(dim=0, keepdim=True)


class FieldNet(nn.Module):
    def __init__(self, n_fields=5):
        super().__init__()
        self.n_fields = n_fields
        self.conv = nn.Conv2d(2, 2 * n_fields, 3, padding=1)

    def forward(self, src_tgt):
        out = self.conv(src_tgt)
        return out.view(self.n_fields, 2, *out.shape[-2:])


def train(net, batches, softmin_temp=0.01, lr=1e-3):
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for src_tgt, field_gt in batches:
        fields = net(src_tgt)
        pred = vote(fields, softmin_temp=softmin_temp)
        loss = ((pred - field_gt) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
