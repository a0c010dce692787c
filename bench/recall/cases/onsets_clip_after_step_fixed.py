"""Recall case onsets_clip_after_step (fixed): the clip runs between backward() and optimizer.step()."""
# https://github.com/jongwook/onsets-and-frames/issues/24 -- clip_grad_norm_ came after backward() and step(), so no update was clipped.
from itertools import cycle

import torch
from torch.nn.utils import clip_grad_norm_
from torch.optim.lr_scheduler import StepLR


def train(model, loader, iterations, learning_rate, clip_gradient_norm=3):
    optimizer = torch.optim.Adam(model.parameters(), learning_rate)
    scheduler = StepLR(optimizer, step_size=1000, gamma=0.98)
    for i, batch in zip(range(1, iterations + 1), cycle(loader)):
        predictions, losses = model.run_on_batch(batch)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        if clip_gradient_norm:
            clip_grad_norm_(model.parameters(), clip_gradient_norm)
        optimizer.step()
        scheduler.step()
    return model
