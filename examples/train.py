"""An example training loop with the clipping bugs gradlint finds. Try: gradlint check examples/"""
import torch
import torch.nn as nn


class WordLM(nn.Module):
    def __init__(self, vocab=10000, dim=256):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, dim, num_layers=2, batch_first=True)
        self.out = nn.Linear(dim, vocab)

    def forward(self, idx):
        h, _ = self.rnn(self.emb(idx))
        return self.out(h)


def train(loader, epochs=10):
    model = WordLM()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    scaler = torch.cuda.amp.GradScaler()
    criterion = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for idx, target in loader:
            optimizer.zero_grad()
            with torch.autocast("cuda"):
                logits = model(idx)
                loss = criterion(logits.flatten(0, 1), target.flatten())
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.update()
