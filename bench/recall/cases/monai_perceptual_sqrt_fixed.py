"""Recall case monai_perceptual_sqrt (fixed): normalize_tensor adds eps inside the sqrt, as in the merged fix."""
# https://github.com/Project-MONAI/MONAI/pull/8982 -- normalize_tensor computed norm_factor = torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) and divided by (norm_factor + eps): the eps guards the division but not the sqrt, so a zero feature vector (near-identical input and target) gave 'SqrtBackward0 returned nan' (issue #8412); the merged fix moves eps inside the sqrt.
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PerceptualLoss(nn.Module):
    """Perceptual loss using features from pretrained deep neural networks (RadImageNet / MedicalNet)."""

    def __init__(self, spatial_dims: int, network_type: str = "radimagenet_resnet50", is_fake_3d: bool = True,
                 fake_3d_ratio: float = 0.5):
        super().__init__()
        if spatial_dims not in [2, 3]:
            raise NotImplementedError("Perceptual loss is implemented only in 2D and 3D.")
        self.spatial_dims = spatial_dims
        self.perceptual_function: nn.Module
        if spatial_dims == 3 and is_fake_3d is False:
            self.perceptual_function = MedicalNetPerceptualSimilarity(net=network_type, verbose=False)
        else:
            self.perceptual_function = RadImageNetPerceptualSimilarity(net=network_type, verbose=False)
        self.is_fake_3d = is_fake_3d
        self.fake_3d_ratio = fake_3d_ratio

    def _calculate_axis_loss(self, input: torch.Tensor, target: torch.Tensor, spatial_axis: int) -> torch.Tensor:
        def batchify_axis(x: torch.Tensor, fake_3d_perm: tuple) -> torch.Tensor:
            slices = x.float().permute((0,) + fake_3d_perm).contiguous()
            slices = slices.view(-1, x.shape[fake_3d_perm[1]], x.shape[fake_3d_perm[2]], x.shape[fake_3d_perm[3]])
            return slices

        preserved_axes = [2, 3, 4]
        preserved_axes.remove(spatial_axis)
        channel_axis = 1
        input_slices = batchify_axis(x=input, fake_3d_perm=(spatial_axis, channel_axis) + tuple(preserved_axes))
        indices = torch.randperm(input_slices.shape[0])[: int(input_slices.shape[0] * self.fake_3d_ratio)].to(input_slices.device)
        input_slices = torch.index_select(input_slices, dim=0, index=indices)
        target_slices = batchify_axis(x=target, fake_3d_perm=(spatial_axis, channel_axis) + tuple(preserved_axes))
        target_slices = torch.index_select(target_slices, dim=0, index=indices)
        return torch.mean(self.perceptual_function(input_slices, target_slices))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape != input.shape:
            raise ValueError(f"ground truth has differing shape ({target.shape}) from input ({input.shape})")
        if self.spatial_dims == 3 and self.is_fake_3d:
            loss_sagittal = self._calculate_axis_loss(input, target, spatial_axis=2)
            loss_coronal = self._calculate_axis_loss(input, target, spatial_axis=3)
            loss_axial = self._calculate_axis_loss(input, target, spatial_axis=4)
            loss = loss_sagittal + loss_axial + loss_coronal
        else:
            loss = self.perceptual_function(input, target)
        return torch.mean(loss)


class MedicalNetPerceptualSimilarity(nn.Module):
    def __init__(self, net: str = "medicalnet_resnet10_23datasets", verbose: bool = False) -> None:
        super().__init__()
        torch.hub._validate_not_a_forked_repo = lambda a, b, c: True
        self.model = torch.hub.load("warvito/MedicalNet-models", model=net, verbose=verbose)
        self.eval()
        for param in self.parameters():
            param.requires_grad = False

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        input = medicalnet_intensity_normalisation(input)
        target = medicalnet_intensity_normalisation(target)
        for ch_idx in range(input.shape[1]):
            input_channel = input[:, ch_idx, ...].unsqueeze(1)
            target_channel = target[:, ch_idx, ...].unsqueeze(1)
            if ch_idx == 0:
                outs_input = self.model.forward(input_channel)
                outs_target = self.model.forward(target_channel)
            else:
                outs_input = torch.cat([outs_input, self.model.forward(input_channel)], dim=1)
                outs_target = torch.cat([outs_target, self.model.forward(target_channel)], dim=1)
        feats_input = normalize_tensor(outs_input)
        feats_target = normalize_tensor(outs_target)
        results: torch.Tensor = (feats_input - feats_target) ** 2
        results = spatial_average_3d(results.sum(dim=1, keepdim=True), keepdim=True)
        return results


def spatial_average_3d(x: torch.Tensor, keepdim: bool = True) -> torch.Tensor:
    return x.mean([2, 3, 4], keepdim=keepdim)


def normalize_tensor(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    norm_factor = torch.sqrt(torch.sum(x**2, dim=1, keepdim=True) + eps)
    return x / (norm_factor + eps)


def medicalnet_intensity_normalisation(volume):
    mean = volume.mean()
    std = volume.std()
    return (volume - mean) / std


class RadImageNetPerceptualSimilarity(nn.Module):
    def __init__(self, net: str = "radimagenet_resnet50", verbose: bool = False) -> None:
        super().__init__()
        self.model = torch.hub.load("Warvito/radimagenet-models", model=net, verbose=verbose)
        self.eval()
        for param in self.parameters():
            param.requires_grad = False

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.shape[1] == 1 and target.shape[1] == 1:
            input = input.repeat(1, 3, 1, 1)
            target = target.repeat(1, 3, 1, 1)
        input = input[:, [2, 1, 0], ...]
        target = target[:, [2, 1, 0], ...]
        input = subtract_mean(input)
        target = subtract_mean(target)
        outs_input = self.model.forward(input)
        outs_target = self.model.forward(target)
        feats_input = normalize_tensor(outs_input)
        feats_target = normalize_tensor(outs_target)
        results: torch.Tensor = (feats_input - feats_target) ** 2
        results = spatial_average(results.sum(dim=1, keepdim=True), keepdim=True)
        return results


def spatial_average(x: torch.Tensor, keepdim: bool = True) -> torch.Tensor:
    return x.mean([2, 3], keepdim=keepdim)


def subtract_mean(x: torch.Tensor) -> torch.Tensor:
    mean = [0.406, 0.456, 0.485]
    x[:, 0, :, :] -= mean[0]
    x[:, 1, :, :] -= mean[1]
    x[:, 2, :, :] -= mean[2]
    return x


class AutoEncoder(nn.Module):
    def __init__(self, channels=1, width=32):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.SiLU(),
                                     nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.SiLU())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(width * 2, width, 4, stride=2, padding=1), nn.SiLU(),
                                     nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def train(train_loader, n_epochs=100, perceptual_weight=0.001):
    """The generative tutorials' autoencoder stage: L1 reconstruction plus the perceptual loss."""
    model = AutoEncoder()
    perceptual_loss = PerceptualLoss(spatial_dims=2, network_type="radimagenet_resnet50")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    for epoch in range(n_epochs):
        model.train()
        for batch in train_loader:
            images = batch["image"]
            optimizer.zero_grad(set_to_none=True)
            reconstruction = model(images)
            recons_loss = F.l1_loss(reconstruction.float(), images.float())
            p_loss = perceptual_loss(reconstruction.float(), images.float())
            loss = recons_loss + perceptual_weight * p_loss
            loss.backward()
            optimizer.step()
