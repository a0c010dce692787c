"""Recall case gnn_siamese_softmax_ce (fixed): the model returns raw similarity scores."""
# https://github.com/mlelarge/graph_neural_net/pull/37 -- "there was a softmax before a crossentropyloss"; the PR removed the softmax.
import torch
import torch.nn as nn


class NodeEmbedder(nn.Module):
    def __init__(self, in_features, hidden):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    def forward(self, x):
        return self.layers(x)


class Siamese_Model(nn.Module):
    def __init__(self, in_features, hidden):
        super().__init__()
        self.node_embedder = NodeEmbedder(in_features, hidden)

    def forward(self, g1, g2):
        emb1, emb2 = self.node_embedder(g1), self.node_embedder(g2)
        raw_scores = torch.matmul(emb1, torch.transpose(emb2, 1, 2))
        return raw_scores


def train_epoch(model, train_loader, optimizer):
    criterion = nn.CrossEntropyLoss()
    for g1, g2, target in train_loader:
        scores = model(g1, g2)
        n = scores.shape[-1]
        loss = criterion(scores.view(-1, n), target.view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
