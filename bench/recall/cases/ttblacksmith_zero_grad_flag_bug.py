"""Recall case ttblacksmith_zero_grad_flag (bug): the LoRA trainer's step helper only cleared gradients when asked, and never was."""
# https://github.com/tenstorrent/tt-blacksmith/pull/711 -- zero_grad was left out after each optimizer step, so gradients accumulated across steps.
import torch


class Trainer:
    def __init__(self, model, train_loader, lr=1e-4):
        self.model = model
        self.train_loader = train_loader
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=lr
        )

    def optimizer_step(self, zero_grad=False):
        self.optimizer.step()
        if zero_grad:
            self.optimizer.zero_grad()

    def train(self, epochs):
        for epoch in range(epochs):
            for batch in self.train_loader:
                outputs = self.model(input_ids=batch["input_ids"], labels=batch["labels"])
                loss = outputs.loss
                loss.backward()
                self.optimizer_step()
