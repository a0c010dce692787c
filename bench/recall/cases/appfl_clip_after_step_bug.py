"""Recall case appfl_clip_after_step (bug): APPFL's client optimizer clipped gradients after optimizer.step()."""
# https://github.com/APPFL/APPFL/issues/197 -- clip_grad_norm_ ran after optimizer.step(), so the update used unclipped gradients.
import torch
import torch.nn as nn


class ClientOptim:
    def __init__(self, model, dataloader, loss_fn, num_local_epochs, clip_value, clip_norm, lr):
        self.model = model
        self.dataloader = dataloader
        self.loss_fn = loss_fn
        self.num_local_epochs = num_local_epochs
        self.clip_value = clip_value
        self.clip_norm = clip_norm
        self.lr = lr

    def update(self):
        optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr)
        for _ in range(self.num_local_epochs):
            for data, target in self.dataloader:
                optimizer.zero_grad()
                output = self.model(data)
                loss = self.loss_fn(output, target)
                loss.backward()
                optimizer.step()
                if self.clip_value is not False:
                    torch.nn.utils.clip_grad_norm_(
                        self.model.parameters(), self.clip_value, norm_type=self.clip_norm
                    )
        return self.model.state_dict()


def make_client(dataloader):
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    return ClientOptim(model, dataloader, nn.CrossEntropyLoss(), 1, 1.0, 2, 0.01)
