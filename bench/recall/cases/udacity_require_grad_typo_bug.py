"""Recall case udacity_require_grad_typo (bug): Udacity's transfer-learning solution froze VGG16 with param.require_grad (typo)."""
# https://github.com/udacity/deep-learning-v2-pytorch/issues/12 -- `require_grad` is a new plain attribute, so the "frozen" feature layers kept training.
import torch
import torch.nn as nn
from torchvision import models

vgg16 = models.vgg16(pretrained=True)

# Freeze training for all "features" layers
for param in vgg16.features.parameters():
    param.require_grad = False

n_inputs = vgg16.classifier[6].in_features
vgg16.classifier[6] = nn.Linear(n_inputs, 5)

criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(vgg16.parameters(), lr=0.001)


def train(loader, n_epochs):
    for epoch in range(n_epochs):
        for data, target in loader:
            optimizer.zero_grad()
            loss = criterion(vgg16(data), target)
            loss.backward()
            optimizer.step()
