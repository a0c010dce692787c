"""Recall case wekws_missing_zero_grad (bug): wekws' Executor.train never called optimizer.zero_grad()."""
# https://github.com/wenet-e2e/wekws/pull/73 -- gradients of every batch summed into the next update because they were never cleared.
import torch
from torch.nn.utils import clip_grad_norm_


class Executor:
    def __init__(self):
        self.step = 0

    def train(self, model, optimizer, data_loader, device, criterion, args):
        model.train()
        clip = args.get("grad_clip", 50.0)
        for batch_idx, batch in enumerate(data_loader):
            key, feats, target, feats_lengths = batch
            feats = feats.to(device)
            target = target.to(device)
            logits = model(feats)
            loss, acc = criterion(logits, target, feats_lengths)
            loss.backward()
            grad_norm = clip_grad_norm_(model.parameters(), clip)
            if torch.isfinite(grad_norm):
                optimizer.step()
            self.step += 1
