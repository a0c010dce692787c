"""Recall case leaf_gabor_no_grad (bug): GaborConstraint clamped the learnable Gabor kernel inside torch.no_grad()."""
# https://github.com/denfed/leaf-audio-pytorch/pull/4 -- the kernel constraint ran under torch.no_grad(), so the Gabor filterbank of the LEAF front end got no gradient and never trained.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def gabor_filters(kernel, size, t):
    center, fwhm = kernel[:, 0], kernel[:, 1]
    denominator = 1.0 / (math.sqrt(2.0 * math.pi) * fwhm)
    gaussian = torch.exp(torch.tensordot(1.0 / (2.0 * fwhm ** 2), -t ** 2, dims=0))
    sinusoid = torch.exp(1j * torch.tensordot(center.to(torch.complex64), t.to(torch.complex64), dims=0))
    return denominator.to(torch.complex64).unsqueeze(1) * sinusoid * gaussian.to(torch.complex64)


class GaborConstraint(nn.Module):
    def __init__(self, kernel_size):
        super().__init__()
        self._kernel_size = kernel_size

    def forward(self, kernel):
        with torch.no_grad():
            mu_lower = 0.
            mu_upper = math.pi
            sigma_lower = 4 * math.sqrt(2 * math.log(2)) / math.pi
            sigma_upper = self._kernel_size * math.sqrt(2 * math.log(2)) / math.pi
            clipped_mu = torch.clamp(kernel[:, 0], mu_lower, mu_upper)
            clipped_sigma = torch.clamp(kernel[:, 1], sigma_lower, sigma_upper)
            return torch.stack([clipped_mu, clipped_sigma], dim=1)


class GaborConv1D(nn.Module):
    def __init__(self, filters, kernel_size, strides, padding):
        super().__init__()
        self._filters = filters // 2
        self._kernel_size = kernel_size
        self._strides = strides
        self._padding = padding
        init = torch.stack([torch.linspace(0.1, 3.0, self._filters), torch.full((self._filters,), 20.0)], dim=1)
        self._kernel = nn.Parameter(init)
        self._kernel_constraint = GaborConstraint(self._kernel_size)
        self.register_buffer("t", torch.arange(-(kernel_size // 2), (kernel_size + 1) // 2, dtype=torch.float32))

    def forward(self, x):
        kernel = self._kernel_constraint(self._kernel)
        filters = gabor_filters(kernel, self._kernel_size, self.t)
        stacked = torch.stack([torch.real(filters), torch.imag(filters)], dim=1)
        stacked = stacked.view(2 * self._filters, self._kernel_size).unsqueeze(1)
        return F.conv1d(x, stacked, stride=self._strides, padding=self._padding)


class Leaf(nn.Module):
    def __init__(self, n_filters=40, window_len=401, window_stride=160):
        super().__init__()
        self.n_filters = n_filters
        self._complex_conv = GaborConv1D(2 * n_filters, window_len, 1, window_len // 2)
        self._pooling = nn.Conv1d(n_filters, n_filters, window_len, stride=window_stride,
                                  padding=window_len // 2, groups=n_filters, bias=False)

    def forward(self, x):
        out = self._complex_conv(x)
        out = out ** 2
        out = out.view(out.size(0), self.n_filters, 2, -1).sum(dim=2)
        return self._pooling(out)


def train(frontend, x, steps=100):
    opt = torch.optim.Adam(frontend.parameters(), lr=0.002, amsgrad=True)
    for _ in range(steps):
        b = frontend(x)
        b_gt = torch.ones_like(b)
        loss = torch.norm((b - b_gt).view(1, -1), p=2, dim=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
