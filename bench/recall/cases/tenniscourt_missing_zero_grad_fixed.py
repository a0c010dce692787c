"""Recall case tenniscourt_missing_zero_grad (fixed): optimizer.zero_grad() after every step."""
# https://github.com/yastrebksv/TennisCourtDetector/issues/7 -- train() called loss.backward() and optimizer.step() but never optimizer.zero_grad(), so every step applied the running sum of all earlier gradients.
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class BallTrackerNet(nn.Module):
    def __init__(self, out_channels=15):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.dec = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(32, 16, 3, padding=1), nn.BatchNorm2d(16),
                                 nn.ReLU(), nn.Conv2d(16, out_channels, 3, padding=1))

    def forward(self, x):
        return self.dec(self.enc(x))


def train(model, train_loader, optimizer, criterion, device, epoch, max_iters=1000):
    model.train()
    losses = []
    max_iters = min(max_iters, len(train_loader))

    for iter_id, batch in enumerate(train_loader):
        out = model(batch[0].float().to(device))
        gt_hm_hp = batch[1].float().to(device)
        loss = criterion(F.sigmoid(out), gt_hm_hp)

        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        print('train, epoch = {}, iter_id = {}/{}, loss = {}'.format(epoch, iter_id, max_iters, loss.item()))
        losses.append(loss.item())
        if iter_id > max_iters:
            break

    return np.mean(losses)


def main(train_loader, num_epochs=500, lr=1e-5, steps_per_epoch=1000):
    model = BallTrackerNet(out_channels=15)
    device = 'cpu'
    criterion = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr, betas=(0.9, 0.999), weight_decay=0)
    for epoch in range(num_epochs):
        train_loss = train(model, train_loader, optimizer, criterion, device, epoch, steps_per_epoch)
