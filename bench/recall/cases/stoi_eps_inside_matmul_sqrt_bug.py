"""Recall case stoi_eps_inside_matmul_sqrt (bug): NegSTOILoss added EPS to the bin energies inside the OBM matmul, then took .pow(0.5) of the band sums."""
# https://github.com/mpariente/pytorch_stoi/pull/14 -- after the #7 fix the band magnitudes were matmul(OBM, |X|**2 + EPS).pow(0.5): the EPS is multiplied by the one-third-octave band matrix (an all-zero row when a band maps to no FFT bin), so the sqrt argument can still be 0 or ~1e-8 and training hit NaN/exploding gradients; the merged fix adds EPS after the matmul, just before the sqrt.
import numpy as np
import torch
import torchaudio
from torch import nn
from torch.nn.functional import pad, unfold


def thirdoct(fs, nfft, num_bands, min_freq):
    """Returns the 1/3 octave band matrix and its center frequencies."""
    f = np.linspace(0, fs, nfft + 1)
    f = f[: int(nfft / 2) + 1]
    k = np.array(range(num_bands)).astype(float)
    cf = np.power(2.0 ** (1.0 / 3), k) * min_freq
    freq_low = min_freq * np.power(2.0, (2 * k - 1) / 6)
    freq_high = min_freq * np.power(2.0, (2 * k + 1) / 6)
    obm = np.zeros((num_bands, len(f)))
    for i in range(len(cf)):
        f_bin = np.argmin(np.square(f - freq_low[i]))
        freq_low[i] = f[f_bin]
        fl_ii = f_bin
        f_bin = np.argmin(np.square(f - freq_high[i]))
        freq_high[i] = f[f_bin]
        fh_ii = f_bin
        obm[i, fl_ii:fh_ii] = 1
    return obm, cf


EPS = 1e-8
FS = 10000
N_FRAME = 256
NUMBAND = 15
MINFREQ = 150
N = 30
BETA = -15.
DYN_RANGE = 40


class NegSTOILoss(nn.Module):
    """Negated Short Term Objective Intelligibility (STOI) metric, to be used as a loss function."""

    def __init__(self, sample_rate: int, use_vad: bool = True, extended: bool = False, do_resample: bool = True):
        super().__init__()
        self.sample_rate = sample_rate
        self.use_vad = use_vad
        self.extended = extended
        self.intel_frames = N
        self.beta = BETA
        self.dyn_range = DYN_RANGE
        self.do_resample = do_resample
        if self.do_resample:
            sample_rate = FS
            self.resample = torchaudio.transforms.Resample(orig_freq=self.sample_rate, new_freq=FS)
        self.win_len = (N_FRAME * sample_rate) // FS
        self.nfft = 2 * self.win_len
        win = torch.from_numpy(np.hanning(self.win_len + 2)[1:-1]).float()
        self.win = nn.Parameter(win, requires_grad=False)
        obm_mat = thirdoct(sample_rate, self.nfft, NUMBAND, MINFREQ)[0]
        self.OBM = nn.Parameter(torch.from_numpy(obm_mat).float(), requires_grad=False)

    def forward(self, est_targets: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.shape != est_targets.shape:
            raise RuntimeError('targets and est_targets should have the same shape')
        if targets.ndim == 1:
            return self.forward(est_targets[None], targets[None])[0]
        if targets.ndim > 2:
            *inner, wav_len = targets.shape
            return self.forward(est_targets.view(-1, wav_len), targets.view(-1, wav_len)).view(inner)
        if self.do_resample and self.sample_rate != FS:
            targets = self.resample(targets)
            est_targets = self.resample(est_targets)

        # Here comes the real computation, take STFT
        x_spec = self.stft(targets, self.win, self.nfft, overlap=2)
        y_spec = self.stft(est_targets, self.win, self.nfft, overlap=2)
        # Apply OB matrix to the spectrograms as in Eq. (1)
        x_tob = torch.matmul(self.OBM, torch.norm(x_spec, 2, -1) ** 2 + EPS).pow(0.5)
        y_tob = torch.matmul(self.OBM, torch.norm(y_spec, 2, -1) ** 2 + EPS).pow(0.5)
        # Perform N-frame segmentation --> (batch, 15, N, n_chunks)
        batch = targets.shape[0]
        x_seg = unfold(x_tob.unsqueeze(2), kernel_size=(1, self.intel_frames), stride=(1, 1)).view(batch, x_tob.shape[1], N, -1)
        y_seg = unfold(y_tob.unsqueeze(2), kernel_size=(1, self.intel_frames), stride=(1, 1)).view(batch, y_tob.shape[1], N, -1)
        if self.use_vad:
            mask = self.detect_silent_frames(targets, self.dyn_range, self.win_len, self.win_len // 2)
            mask = pad(mask, [0, x_tob.shape[-1] - mask.shape[-1]])
            mask_f = unfold(mask.unsqueeze(2).float(), kernel_size=(1, self.intel_frames), stride=(1, 1)).view(batch, 1, N, -1)
        else:
            mask_f = None

        if self.extended:
            x_n = self.rowcol_norm(x_seg, mask=mask_f)
            y_n = self.rowcol_norm(y_seg, mask=mask_f)
            corr_comp = x_n * y_n
            correction = self.intel_frames * x_n.shape[-1]
        else:
            norm_const = (masked_norm(x_seg, dim=2, keepdim=True, mask=mask_f) /
                          (masked_norm(y_seg, dim=2, keepdim=True, mask=mask_f) + EPS))
            y_seg_normed = y_seg * norm_const
            clip_val = 10 ** (-self.beta / 20)
            y_prim = torch.min(y_seg_normed, x_seg * (1 + clip_val))
            y_prim = meanvar_norm(y_prim, dim=2, mask=mask_f)
            x_seg = meanvar_norm(x_seg, dim=2, mask=mask_f)
            corr_comp = y_prim * x_seg
            correction = x_seg.shape[1] * x_seg.shape[-1]

        sum_over = list(range(1, x_seg.ndim))
        if self.use_vad:
            corr_comp = corr_comp * mask_f
            correction = correction * mask_f.mean() + EPS
        return - torch.sum(corr_comp, dim=sum_over) / correction

    @staticmethod
    def detect_silent_frames(x, dyn_range, framelen, hop):
        x_frames = unfold(x[:, None, None, :], kernel_size=(1, framelen), stride=(1, hop))[..., :-1]
        x_energies = 20 * torch.log10(torch.norm(x_frames, dim=1, keepdim=True) + EPS)
        mask = (torch.max(x_energies, dim=2, keepdim=True)[0] - dyn_range - x_energies) < 0
        return mask

    @staticmethod
    def stft(x, win, fft_size, overlap=4):
        win_len = win.shape[0]
        hop = int(win_len / overlap)
        x_padded = torch.nn.functional.pad(x, pad=[0, hop])
        return torch.stft(x_padded, fft_size, hop_length=hop, window=win, center=False,
                          win_length=win_len, return_complex=False)

    @staticmethod
    def rowcol_norm(x, mask=None):
        for dim in [2, 1]:
            x = meanvar_norm(x, mask=mask, dim=dim)
        return x


def meanvar_norm(x, mask=None, dim=-1):
    x = x - masked_mean(x, dim=dim, mask=mask, keepdim=True)
    x = x / (masked_norm(x, p=2, dim=dim, keepdim=True, mask=mask) + EPS)
    return x


def masked_mean(x, dim=-1, mask=None, keepdim=False):
    if mask is None:
        return x.mean(dim=dim, keepdim=keepdim)
    return (x * mask).sum(dim=dim, keepdim=keepdim) / (mask.sum(dim=dim, keepdim=keepdim) + EPS)


def masked_norm(x, p=2, dim=-1, mask=None, keepdim=False):
    if mask is None:
        return torch.norm(x, p=p, dim=dim, keepdim=keepdim)
    return torch.norm(x * mask, p=p, dim=dim, keepdim=keepdim)


def train(model, loader, sample_rate=16000, epochs=10):
    """README usage: the negated STOI of the enhanced signal as the training loss."""
    loss_func = NegSTOILoss(sample_rate=sample_rate)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        for noisy, clean in loader:
            optimizer.zero_grad()
            est_targets = model(noisy)
            loss_batch = loss_func(est_targets, clean)
            loss_batch.mean().backward()
            optimizer.step()
