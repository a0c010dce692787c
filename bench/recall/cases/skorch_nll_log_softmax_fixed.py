"""Recall case skorch_nll_log_softmax (fixed): an eps is added to the probabilities before the log."""
# https://github.com/skorch-dev/skorch/pull/491 -- get_loss fed torch.log(y_pred) of softmax probabilities to NLLLoss; saturated probabilities of exactly 0 gave -inf and NaN losses (issue #481), fixed by adding eps before the log.
import torch
import torch.nn as nn
import torch.nn.functional as F


class NeuralNet:
    def __init__(self, module, criterion, optimizer=torch.optim.SGD, lr=0.01, max_epochs=10, batch_size=128):
        self.module = module
        self.criterion = criterion
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size

    def initialize(self):
        self.module_ = self.module()
        self.criterion_ = self.criterion()
        self.optimizer_ = self.optimizer(self.module_.parameters(), lr=self.lr)
        return self

    def infer(self, x):
        return self.module_(x)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.criterion_(y_pred, y_true)

    def train_step(self, Xi, yi):
        self.module_.train()
        self.optimizer_.zero_grad()
        y_pred = self.infer(Xi)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        loss.backward()
        self.optimizer_.step()
        return loss

    def fit(self, X, y):
        self.initialize()
        for epoch in range(self.max_epochs):
            for i in range(0, len(X), self.batch_size):
                self.train_step(X[i:i + self.batch_size], y[i:i + self.batch_size])
        return self


class NeuralNetClassifier(NeuralNet):
    def __init__(self, module, *args, criterion=torch.nn.NLLLoss, **kwargs):
        super().__init__(module, *args, criterion=criterion, **kwargs)

    def get_loss(self, y_pred, y_true, *args, **kwargs):
        if isinstance(self.criterion_, torch.nn.NLLLoss):
            eps = torch.finfo(y_pred.dtype).eps
            y_pred = torch.log(y_pred + eps)
        return super().get_loss(y_pred, y_true, *args, **kwargs)


class ClassifierModule(nn.Module):
    def __init__(self, input_dim=784, hidden_dim=98, output_dim=10, dropout=0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(input_dim, hidden_dim)
        self.output = nn.Linear(hidden_dim, output_dim)

    def forward(self, X, **kwargs):
        X = F.relu(self.hidden(X))
        X = self.dropout(X)
        X = F.softmax(self.output(X), dim=-1)
        return X


def fit_mnist(X_train, y_train):
    net = NeuralNetClassifier(ClassifierModule, max_epochs=20, lr=0.1, optimizer=torch.optim.Adam)
    return net.fit(X_train, y_train)
