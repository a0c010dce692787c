"""Recall case speechbrain_aam_sqrt (fixed): cosine is clamped to [-1 + 1e-7, 1 - 1e-7] before sqrt(1 - cosine**2)."""
# https://github.com/speechbrain/speechbrain/pull/1279 -- the cosine from normalized embeddings and weights can reach or slightly exceed 1.0, so sqrt(1 - cos**2) is NaN (or has an infinite gradient at 0) and speaker-embedding training stops with a non-finite loss; the fix clamps cosine to [-1 + 1e-7, 1 - 1e-7] first.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class AngularMargin(nn.Module):
    def __init__(self, margin=0.0, scale=1.0):
        super(AngularMargin, self).__init__()
        self.margin = margin
        self.scale = scale

    def forward(self, outputs, targets):
        outputs = outputs - self.margin * targets
        return self.scale * outputs


class AdditiveAngularMargin(AngularMargin):
    def __init__(self, margin=0.0, scale=1.0, easy_margin=False):
        super(AdditiveAngularMargin, self).__init__(margin, scale)
        self.easy_margin = easy_margin

        self.cos_m = math.cos(self.margin)
        self.sin_m = math.sin(self.margin)
        self.th = math.cos(math.pi - self.margin)
        self.mm = math.sin(math.pi - self.margin) * self.margin

    def forward(self, outputs, targets):
        cosine = outputs.float()
        cosine = torch.clamp(cosine, -1 + 1e-7, 1 - 1e-7)
        sine = torch.sqrt(1.0 - torch.pow(cosine, 2))
        phi = cosine * self.cos_m - sine * self.sin_m  # cos(theta + m)
        if self.easy_margin:
            phi = torch.where(cosine > 0, phi, cosine)
        else:
            phi = torch.where(cosine > self.th, phi, cosine - self.mm)
        outputs = (targets * phi) + ((1.0 - targets) * cosine)
        return self.scale * outputs


class LogSoftmaxWrapper(nn.Module):
    def __init__(self, loss_fn):
        super(LogSoftmaxWrapper, self).__init__()
        self.loss_fn = loss_fn
        self.criterion = torch.nn.KLDivLoss(reduction="sum")

    def forward(self, outputs, targets, length=None):
        outputs = outputs.squeeze(1)
        targets = targets.squeeze(1)
        targets = F.one_hot(targets.long(), outputs.shape[1]).float()
        try:
            predictions = self.loss_fn(outputs, targets)
        except TypeError:
            predictions = self.loss_fn(outputs)

        predictions = F.log_softmax(predictions, dim=1)
        loss = self.criterion(predictions, targets) / targets.sum()
        return loss


class Classifier(nn.Module):
    """Cosine classifier of the ECAPA-TDNN speaker recipe (trimmed)."""

    def __init__(self, input_size, lin_neurons=192, out_neurons=1211):
        super().__init__()
        self.blocks = nn.ModuleList()
        self.weight = nn.Parameter(torch.FloatTensor(out_neurons, input_size))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x):
        for layer in self.blocks:
            x = layer(x)
        x = F.linear(F.normalize(x.squeeze(1)), F.normalize(self.weight))
        return x.unsqueeze(1)


class SpeakerBrain:
    """Brain subclass of the speaker-embedding recipe with the parts of Brain.fit_batch it uses."""

    def __init__(self, modules, hparams, opt_class):
        self.modules = modules
        self.hparams = hparams
        self.optimizer = opt_class(modules.parameters())
        self.max_grad_norm = 5.0
        self.grad_accumulation_factor = 1
        self.step = 0
        self.optimizer_step = 0
        self.compute_cost = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30))

    def compute_forward(self, batch):
        wavs, lens = batch["sig"]
        feats = self.modules["compute_features"](wavs)
        feats = self.modules["mean_var_norm"](feats, lens)
        embeddings = self.modules["embedding_model"](feats, lens)
        outputs = self.modules["classifier"](embeddings)
        return outputs, lens

    def compute_objectives(self, predictions, batch):
        predictions, lens = predictions
        spkid, _ = batch["spk_id_encoded"]
        loss = self.compute_cost(predictions, spkid, lens)
        return loss

    def check_gradients(self, loss):
        if not torch.isfinite(loss):
            return False
        torch.nn.utils.clip_grad_norm_(self.modules.parameters(), self.max_grad_norm)
        return True

    def fit_batch(self, batch):
        self.step += 1
        should_step = self.step % self.grad_accumulation_factor == 0
        outputs = self.compute_forward(batch)
        loss = self.compute_objectives(outputs, batch)
        (loss / self.grad_accumulation_factor).backward()
        if should_step:
            if self.check_gradients(loss):
                self.optimizer.step()
            self.optimizer.zero_grad()
            self.optimizer_step += 1
        return loss.detach().cpu()

    def fit(self, epochs, train_set):
        for epoch in range(epochs):
            self.modules.train()
            for batch in train_set:
                self.fit_batch(batch)
