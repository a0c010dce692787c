"""Recall case daisyrec_sigmoid_bcelogits (bug): daisyRec applied sigmoid to predictions fed to BCEWithLogitsLoss."""
# https://github.com/yudi-mars/daisyRec/pull/15 -- sigmoid was applied twice (once by hand, once inside BCEWithLogitsLoss), so the loss did not converge.
import torch
import torch.nn as nn


class FM(nn.Module):
    def __init__(self, user_num, item_num, factors):
        super().__init__()
        self.embed_user = nn.Embedding(user_num, factors)
        self.embed_item = nn.Embedding(item_num, factors)
        self.u_bias = nn.Embedding(user_num, 1)
        self.i_bias = nn.Embedding(item_num, 1)
        self.criterion = nn.BCEWithLogitsLoss()

    def forward(self, user, item):
        pred = (self.embed_user(user) * self.embed_item(item)).sum(dim=-1)
        pred = pred + self.u_bias(user).view(-1) + self.i_bias(item).view(-1)
        return pred

    def calc_loss(self, batch):
        user, item, label = batch
        pred = torch.sigmoid(self.forward(user, item))
        return self.criterion(pred, label.float())


def fit(model, train_loader, epochs, lr=1e-3):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in train_loader:
            optimizer.zero_grad()
            loss = model.calc_loss(batch)
            loss.backward()
            optimizer.step()
