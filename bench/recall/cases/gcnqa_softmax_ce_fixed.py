"""Recall case gcnqa_softmax_ce (fixed): the model returns raw scores to CrossEntropyLoss."""
# https://github.com/bowang-lab/Transformer-GCN-QA/pull/32 -- the output layer applied softmax and CrossEntropyLoss applied it again, weakening the gradient.
import torch
import torch.nn as nn


class TransformerGCNQA(nn.Module):
    def __init__(self, n_rgcn_layers=3, rgcn_size=512, n_rels=3):
        super().__init__()
        self.rgcn = nn.ModuleList([nn.Linear(rgcn_size, rgcn_size) for _ in range(n_rgcn_layers)])
        self.fc_logits = nn.Linear(2 * rgcn_size, 1)

    def forward(self, query, candidate_indices, encoded_mentions):
        x = encoded_mentions
        for layer in self.rgcn:
            x = torch.tanh(layer(x)) + x
        x = torch.cat([x, query.expand_as(x)], dim=-1)
        logits = self.fc_logits(x).squeeze(-1)
        logits = torch.stack([logits[idx].max() for idx in candidate_indices])
        return logits


def train(model, dataloader, epochs, lr=1e-4):
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for query, candidate_indices, mentions, target in dataloader:
            optimizer.zero_grad()
            pred = model(query, candidate_indices, mentions)
            loss = criterion(pred.unsqueeze(0), target)
            loss.backward()
            optimizer.step()
