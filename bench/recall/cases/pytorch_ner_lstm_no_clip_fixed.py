"""Recall case pytorch_ner_lstm_no_clip (fixed): clip_grad_norm_ between backward() and step()."""
# https://github.com/dayyass/pytorch-ner/pull/39 -- the LSTM train loop stepped on unclipped gradients; the PR adds clip_grad_norm_.
import torch
import torch.nn as nn


class BiLSTM(nn.Module):
    def __init__(self, num_embeddings, embedding_dim, hidden_size, num_layers, n_classes):
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)
        self.rnn = nn.LSTM(embedding_dim, hidden_size, num_layers, batch_first=True, bidirectional=True)
        self.linear_head = nn.Linear(2 * hidden_size, n_classes)

    def forward(self, x, lengths):
        out, _ = self.rnn(self.embedding(x))
        return self.linear_head(out)


def train_epoch(model, dataloader, criterion, optimizer, device, clip_grad_norm=0.1):
    model.train()
    for tokens, labels, lengths in dataloader:
        tokens, labels = tokens.to(device), labels.to(device)
        outputs = model(tokens, lengths)
        loss = criterion(outputs.transpose(-1, -2), labels)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()


def main(dataloader, device):
    model = BiLSTM(10000, 128, 256, 2, 9).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(10):
        train_epoch(model, dataloader, nn.CrossEntropyLoss(), optimizer, device)
