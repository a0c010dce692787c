"""Recall case espnet_attref_sqrt (fixed): an eps inside the square root keeps the amplitude's gradient finite."""
# https://github.com/espnet/espnet/pull/3904 -- the beamformer's reference-channel attention took a square root of |psd|**2, whose gradient is NaN wherever the masked cross-channel PSD is exactly zero.
import torch
import torch.nn as nn
import torch.nn.functional as F


def get_power_spectral_density_matrix(xs, mask, normalization=True, eps=1e-15):
    # xs, mask: (B, F, C, T) -> psd: (B, F, C, C)
    psd_Y = torch.einsum("...ct,...et->...tce", [xs, xs.conj()])
    mask = mask.mean(dim=-2)
    if normalization:
        mask = mask / (mask.sum(dim=-1, keepdim=True) + eps)
    return (psd_Y * mask[..., None, None]).sum(dim=-3)


class MaskEstimator(nn.Module):
    def __init__(self, idim):
        super().__init__()
        self.linear = nn.Linear(idim, idim)

    def forward(self, xs):
        # xs: (B, F, C, T) complex -> mask in (0, 1), same shape
        feat = xs.abs().permute(0, 2, 3, 1)
        mask = torch.sigmoid(self.linear(feat))
        return mask.permute(0, 3, 1, 2)


class AttentionReference(nn.Module):
    def __init__(self, bidim, att_dim, eps=1e-6):
        super().__init__()
        self.mlp_psd = nn.Linear(bidim, att_dim)
        self.gvec = nn.Linear(att_dim, 1)
        self.eps = eps

    def forward(self, psd_in, ilens, scaling=2.0):
        B, _, C = psd_in.size()[:3]
        assert psd_in.size(2) == psd_in.size(3), psd_in.size()
        # psd_in: (B, F, C, C)
        psd = psd_in.masked_fill(torch.eye(C, dtype=torch.bool, device=psd_in.device), 0)
        # psd: (B, F, C, C) -> (B, C, F)
        psd = (psd.sum(dim=-1) / (C - 1)).transpose(-1, -2)

        # Calculate amplitude
        psd_feat = (psd.real ** 2 + psd.imag ** 2 + self.eps) ** 0.5

        # (B, C, F) -> (B, C, F2)
        mlp_psd = self.mlp_psd(psd_feat)
        # (B, C, F2) -> (B, C, 1) -> (B, C)
        e = self.gvec(torch.tanh(mlp_psd)).squeeze(-1)
        u = F.softmax(scaling * e, dim=-1)
        return u, ilens


class DNN_Beamformer(nn.Module):
    def __init__(self, bidim, badim=32):
        super().__init__()
        self.mask = MaskEstimator(bidim)
        self.ref = AttentionReference(bidim, badim)

    def forward(self, data, ilens):
        # data: (B, F, C, T) complex
        mask_speech = self.mask(data)
        psd_speech = get_power_spectral_density_matrix(data, mask_speech)
        u, _ = self.ref(psd_speech, ilens)
        return torch.einsum("bfct,bc->bft", data, u.to(data.dtype))


def train(beamformer, loader, lr=1e-3):
    optimizer = torch.optim.Adam(beamformer.parameters(), lr=lr)
    for data, ilens, target in loader:
        enhanced = beamformer(data, ilens)
        loss = ((enhanced.real - target.real) ** 2 + (enhanced.imag - target.imag) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
