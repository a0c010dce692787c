"""Recall case har_softmax_ce (bug): the activity-recognition CNN ended in F.softmax and was trained with nn.CrossEntropyLoss."""
# https://github.com/jindongwang/Deep-learning-activity-recognition/issues/10 -- Network.forward returned softmax probabilities that CrossEntropyLoss softmaxed again, squashing the loss and its gradients; the fix returns the raw fc3 logits.
import torch
import torch.nn as nn
import torch.nn.functional as F


class Network(nn.Module):
    def __init__(self):
        super(Network, self).__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels=9, out_channels=32, kernel_size=(1, 9)),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=(1, 2), stride=2)
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(in_channels=32, out_channels=64, kernel_size=(1, 9)),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=(1, 2), stride=2)
        )
        self.fc1 = nn.Sequential(nn.Linear(in_features=64 * 26, out_features=1000), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(in_features=1000, out_features=500), nn.ReLU())
        self.fc3 = nn.Sequential(nn.Linear(in_features=500, out_features=6))

    def forward(self, x):
        out = self.conv1(x)
        out = self.conv2(out)
        out = out.reshape(-1, 64 * 26)
        out = self.fc1(out)
        out = self.fc2(out)
        out = self.fc3(out)
        out = F.softmax(out, dim=1)
        return out


def train(model, optimizer, train_loader, n_epoch=80):
    criterion = nn.CrossEntropyLoss()
    for e in range(n_epoch):
        model.train()
        correct, total_loss = 0, 0
        for index, (sample, target) in enumerate(train_loader):
            sample, target = sample.float(), target.long()
            sample = sample.view(-1, 9, 1, 128)
            output = model(sample)
            loss = criterion(output, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            _, predicted = torch.max(output.data, 1)
            correct += (predicted == target).sum()


def main(train_loader):
    torch.manual_seed(10)
    model = Network()
    optimizer = torch.optim.SGD(params=model.parameters(), lr=0.01, momentum=0.9)
    train(model, optimizer, train_loader)
