"""Recall case predrnn_decouple_loss_tensor (fixed): torch.stack keeps the decoupling terms in the graph."""
# https://github.com/thuml/predrnn-pytorch/issues/11 -- torch.tensor(decouple_loss) copied the values out of the graph, so the decoupling term trained nothing.
import torch
import torch.nn as nn
import torch.nn.functional as F


class RNN(nn.Module):
    def __init__(self, num_hidden, decouple_beta=0.1):
        super().__init__()
        self.cell = nn.LSTMCell(num_hidden, num_hidden)
        self.adapter = nn.Linear(num_hidden, num_hidden, bias=False)
        self.conv_last = nn.Linear(num_hidden, num_hidden, bias=False)
        self.MSE_criterion = nn.MSELoss()
        self.decouple_beta = decouple_beta

    def forward(self, frames):
        h = c = torch.zeros_like(frames[:, 0])
        next_frames, decouple_loss = [], []
        for t in range(frames.shape[1] - 1):
            h_new, c_new = self.cell(frames[:, t], (h, c))
            delta_c = F.normalize(self.adapter(c_new - c), dim=-1)
            delta_m = F.normalize(self.adapter(h_new - h), dim=-1)
            h, c = h_new, c_new
            next_frames.append(self.conv_last(h))
            decouple_loss.append(torch.mean(torch.abs(torch.cosine_similarity(delta_c, delta_m, dim=-1))))
        decouple_loss = torch.mean(torch.stack(decouple_loss, dim=0))
        next_frames = torch.stack(next_frames, dim=1)
        loss = self.MSE_criterion(next_frames, frames[:, 1:]) + self.decouple_beta * decouple_loss
        return next_frames, loss


class Model:
    """core/models/model_factory.py: wraps the network and its optimizer."""

    def __init__(self, num_hidden):
        self.network = RNN(num_hidden)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=1e-3)

    def train(self, frames):
        self.optimizer.zero_grad()
        next_frames, loss = self.network(frames)
        loss.backward()
        self.optimizer.step()
        return loss.detach().cpu().numpy()
