"""Recall case returnn_amp_clip (bug): RETURNN's torch Updater clipped before unscaling the GradScaler's gradients."""
# https://github.com/rwth-i6/returnn/pull/1595 -- the engine scaled the loss, and Updater.step clipped the still-scaled gradients.
import torch


class Updater:
    def __init__(self, network, optimizer, grad_clip_global_norm=None):
        self.network = network
        self.optimizer = optimizer
        self._grad_clip_global_norm = grad_clip_global_norm

    def step(self, *, grad_scaler=None):
        if self._grad_clip_global_norm:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self._grad_clip_global_norm)
        if grad_scaler is not None:
            grad_scaler.step(self.optimizer)
            grad_scaler.update()
        else:
            self.optimizer.step()


class Engine:
    def __init__(self, model, use_amp=True):
        self._model = model
        self._grad_scaler = torch.cuda.amp.GradScaler() if use_amp else None
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        self._updater = Updater(model, optimizer, grad_clip_global_norm=5.0)

    def train_epoch(self, data_loader):
        for batch in data_loader:
            self._updater.optimizer.zero_grad()
            total_loss = self._model(batch).mean()
            if self._grad_scaler is not None:
                self._grad_scaler.scale(total_loss).backward()
            else:
                total_loss.backward()
            self._updater.step(grad_scaler=self._grad_scaler)
