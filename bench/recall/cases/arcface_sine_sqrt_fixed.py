"""Recall case arcface_sine_sqrt (fixed): the argument of sqrt is clamped to [1e-6, 1]."""
# https://github.com/ronghuaiyang/arcface-pytorch/issues/91 -- d/dx sqrt(x) = 1/(2 sqrt x) is infinite at 0, so |cos| -> 1 gave NaN loss; the fix clamps to 1e-6.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ArcMarginProduct(nn.Module):
    def __init__(self, in_features, out_features, s=30.0, m=0.50):
        super().__init__()
        self.s, self.m = s, m
        self.weight = nn.Parameter(torch.FloatTensor(out_features, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)

    def forward(self, input, label):
        cosine = F.linear(F.normalize(input), F.normalize(self.weight))
        sine = torch.sqrt((1.0 - torch.pow(cosine, 2)).clamp(1e-6, 1))
        phi = cosine * self.cos_m - sine * self.sin_m
        one_hot = torch.zeros_like(cosine).scatter_(1, label.view(-1, 1).long(), 1)
        return ((one_hot * phi) + ((1.0 - one_hot) * cosine)) * self.s


def train_step(model, metric_fc, criterion, optimizer, data, label):
    output = metric_fc(model(data), label)
    loss = criterion(output, label)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
