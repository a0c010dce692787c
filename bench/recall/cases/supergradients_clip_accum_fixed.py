"""Recall case supergradients_clip_accum (fixed): clip once per optimizer step, on unscaled gradients, inside the accumulation guard."""
# https://github.com/Deci-AI/super-gradients/pull/653 -- clip_grad_norm_ ran on every batch (on partial, still-scaled sums) while the optimizer stepped only once per batch_accumulate batches; the fix clips once, after unscale_, right before the step.
import torch
import torch.nn as nn
from torch.cuda.amp import GradScaler, autocast


class Trainer:
    def __init__(self, net, train_loader, criterion, lr=0.1, batch_accumulate=4,
                 clip_grad_norm=1.0, mixed_precision=False, max_epochs=1):
        self.net = net
        self.train_loader = train_loader
        self.criterion = criterion
        self.batch_accumulate = batch_accumulate
        self.clip_grad_norm = clip_grad_norm
        self.mixed_precision = mixed_precision
        self.max_epochs = max_epochs
        self.optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
        self.scaler = GradScaler(enabled=mixed_precision)

    def _backward_step(self, loss, epoch, batch_idx):
        # SCALER IS ENABLED ONLY IF mixed_precision=True
        self.scaler.scale(loss).backward()

        # ACCUMULATE GRADIENT FOR X BATCHES BEFORE OPTIMIZING
        integrated_batches_num = batch_idx + len(self.train_loader) * epoch + 1
        if integrated_batches_num % self.batch_accumulate == 0:
            # APPLY GRADIENT CLIPPING IF REQUIRED
            if self.clip_grad_norm:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip_grad_norm)

            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad()

    def _train_epoch(self, epoch):
        self.net.train()
        for batch_idx, (inputs, targets) in enumerate(self.train_loader):
            with autocast(enabled=self.mixed_precision):
                outputs = self.net(inputs)
                loss = self.criterion(outputs, targets)
            self._backward_step(loss, epoch, batch_idx)

    def train(self):
        for epoch in range(self.max_epochs):
            self._train_epoch(epoch)
