"""Recall case unet_amp_clip (fixed): scaler.unscale_(optimizer) before the clip."""
# https://github.com/milesial/Pytorch-UNet/pull/470 -- clip_grad_norm_ ran on loss-scaled gradients (no scaler.unscale_ first).
import torch
import torch.nn as nn
import torch.nn.functional as F


def train_model(model, train_loader, device, epochs=5, learning_rate=1e-5,
                amp=False, weight_decay=1e-8, momentum=0.999, gradient_clipping=1.0):
    optimizer = torch.optim.RMSprop(model.parameters(), lr=learning_rate,
                                    weight_decay=weight_decay, momentum=momentum, foreach=True)
    grad_scaler = torch.cuda.amp.GradScaler(enabled=amp)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in train_loader:
            images, true_masks = batch['image'].to(device), batch['mask'].to(device)
            with torch.autocast(device.type, enabled=amp):
                masks_pred = model(images)
                loss = criterion(masks_pred, true_masks)
                loss += 1 - F.softmax(masks_pred, dim=1).mean()

            optimizer.zero_grad(set_to_none=True)
            grad_scaler.scale(loss).backward()
            grad_scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), gradient_clipping)
            grad_scaler.step(optimizer)
            grad_scaler.update()
