"""Recall case kornia_binary_focal_log_sigmoid (bug): kornia's binary_focal_loss_with_logits took torch.log of sigmoid(input) and of sigmoid(-input)."""
# https://github.com/kornia/kornia/pull/2125 -- in kornia 0.6.9 the positive/negative terms used torch.log(probs_pos) and torch.log(probs_neg) with probs = sigmoid(+-input); for a large logit sigmoid(-logit) underflows to 0, log gives -inf and (1 - target) * -inf = NaN (issue #2115); the fix uses F.logsigmoid(input) / F.logsigmoid(-input). (The segmentation loop at the bottom is the reporter's usage.)
import warnings
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def binary_focal_loss_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = 'none',
    eps: Optional[float] = None,
) -> torch.Tensor:
    r"""Function that computes Binary Focal loss.

    .. math::
        \text{FL}(p_t) = -\alpha_t (1 - p_t)^{\gamma} \, \text{log}(p_t)
    """
    if eps is not None and not torch.jit.is_scripting():
        warnings.warn(
            "`binary_focal_loss_with_logits` has been reworked for improved numerical stability "
            "and the `eps` argument is no longer necessary",
            DeprecationWarning,
            stacklevel=2,
        )

    if not isinstance(input, torch.Tensor):
        raise TypeError(f"Input type is not a torch.Tensor. Got {type(input)}")

    if not len(input.shape) >= 2:
        raise ValueError(f"Invalid input shape, we expect BxCx*. Got: {input.shape}")

    if input.size(0) != target.size(0):
        raise ValueError(f'Expected input batch_size ({input.size(0)}) to match target batch_size ({target.size(0)}).')

    probs_pos = torch.sigmoid(input)
    probs_neg = torch.sigmoid(-input)
    loss_tmp = -alpha * torch.pow(probs_neg, gamma) * target * torch.log(probs_pos) - (
        1 - alpha
    ) * torch.pow(probs_pos, gamma) * (1.0 - target) * torch.log(probs_neg)

    if reduction == 'none':
        loss = loss_tmp
    elif reduction == 'mean':
        loss = torch.mean(loss_tmp)
    elif reduction == 'sum':
        loss = torch.sum(loss_tmp)
    else:
        raise NotImplementedError(f"Invalid reduction mode: {reduction}")
    return loss


class BinaryFocalLossWithLogits(nn.Module):
    r"""Criterion that computes Focal loss."""

    def __init__(self, alpha: float, gamma: float = 2.0, reduction: str = 'none') -> None:
        super().__init__()
        self.alpha: float = alpha
        self.gamma: float = gamma
        self.reduction: str = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_focal_loss_with_logits(input, target, self.alpha, self.gamma, self.reduction)


class SegHead(nn.Module):
    def __init__(self, in_channels=3, width=32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        )
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x):
        return self.head(self.body(x))


def train(loader, epochs=10):
    model = SegHead()
    criterion = BinaryFocalLossWithLogits(alpha=0.25, gamma=2.0, reduction='mean')
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        for images, masks in loader:
            logits = model(images)
            loss = criterion(logits, masks.float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
