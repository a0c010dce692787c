"""Recall case rtvc_embed_norm_eps (bug): SpeakerEncoder L2-normalised a ReLU'd embedding by its norm with no epsilon."""
# https://github.com/CorentinJ/Real-Time-Voice-Cloning/pull/678 -- embeds_raw = relu(linear(h)) can be all zeros, and embeds_raw / torch.norm(embeds_raw) then gives NaN embeddings and gradients; the fix adds 1e-5 to the norm (the GE2E loss is simplified here).
import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import clip_grad_norm_


class SpeakerEncoder(nn.Module):
    def __init__(self, mel_n_channels=40, model_hidden_size=64, model_embedding_size=32, model_num_layers=3):
        super().__init__()
        self.lstm = nn.LSTM(input_size=mel_n_channels, hidden_size=model_hidden_size,
                            num_layers=model_num_layers, batch_first=True)
        self.linear = nn.Linear(in_features=model_hidden_size, out_features=model_embedding_size)
        self.relu = torch.nn.ReLU()
        self.similarity_weight = nn.Parameter(torch.tensor([10.]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.]))
        self.loss_fn = nn.CrossEntropyLoss()

    def do_gradient_ops(self):
        self.similarity_weight.grad *= 0.01
        self.similarity_bias.grad *= 0.01
        clip_grad_norm_(self.parameters(), 3, norm_type=2)

    def forward(self, utterances, hidden_init=None):
        out, (hidden, cell) = self.lstm(utterances, hidden_init)
        # We take only the hidden state of the last layer
        embeds_raw = self.relu(self.linear(hidden[-1]))
        # L2-normalize it
        embeds = embeds_raw / torch.norm(embeds_raw, dim=1, keepdim=True)
        return embeds

    def loss(self, embeds):
        speakers_per_batch, utterances_per_speaker = embeds.shape[:2]
        centroids = torch.mean(embeds, dim=1)
        sim_matrix = torch.einsum("sud,kd->suk", embeds, centroids)
        sim_matrix = sim_matrix * self.similarity_weight + self.similarity_bias
        sim_matrix = sim_matrix.reshape((speakers_per_batch * utterances_per_speaker, speakers_per_batch))
        ground_truth = np.repeat(np.arange(speakers_per_batch), utterances_per_speaker)
        target = torch.from_numpy(ground_truth).long()
        return self.loss_fn(sim_matrix, target)


def train(model, loader, learning_rate_init=1e-4):
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate_init)
    for step, (inputs, speakers_per_batch, utterances_per_speaker) in enumerate(loader):
        embeds = model(inputs)
        embeds = embeds.view((speakers_per_batch, utterances_per_speaker, -1))
        loss = model.loss(embeds)
        model.zero_grad()
        loss.backward()
        model.do_gradient_ops()
        optimizer.step()
