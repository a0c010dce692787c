"""Recall case byol_zero_grad_before_step (fixed): step() first, then zero_grad()."""
# https://github.com/lucidrains/byol-pytorch/issues/93 -- optimizer.zero_grad() sat between accelerator.backward() and optimizer.step(), so every step applied zero gradients.
import torch
from torch.nn import Module
from accelerate import Accelerator


class BYOLTrainer(Module):
    def __init__(self, byol, dataloader, learning_rate, num_train_steps):
        super().__init__()
        self.accelerator = Accelerator()
        self.optimizer = torch.optim.Adam(byol.parameters(), lr=learning_rate)
        self.byol, self.optimizer, self.dataloader = self.accelerator.prepare(
            byol, self.optimizer, dataloader
        )
        self.num_train_steps = num_train_steps

    def forward(self):
        data_it = iter(self.dataloader)
        for _ in range(self.num_train_steps):
            images = next(data_it)
            with self.accelerator.autocast():
                loss = self.byol(images)
                self.accelerator.backward(loss)

            self.optimizer.step()
            self.optimizer.zero_grad()

            self.accelerator.wait_for_everyone()
            self.byol.update_moving_average()
