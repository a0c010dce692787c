"""Recall case fastmoe_balance_loss_tensor (bug): the Megatron balance loss was built with torch.tensor(loss_list)."""
# https://github.com/laekov/fastmoe/issues/49 -- torch.tensor() copied the per-layer gate losses out of the graph, so the balance term added to the LM loss never trained the gates (fixed by torch.cat in PR #50).
import torch
import torch.nn as nn
import torch.nn.functional as F


class GShardGate(nn.Module):
    def __init__(self, d_model, num_expert, top_k=2):
        super().__init__()
        self.gate = nn.Linear(d_model, num_expert)
        self.num_expert = num_expert
        self.top_k = top_k
        self.loss = None

    def set_loss(self, loss):
        self.loss = loss

    def get_loss(self, clear=True):
        loss = self.loss
        if clear:
            self.loss = None
        return loss

    def forward(self, inp):
        gate_score = self.gate(inp)
        gate_top_k_val, gate_top_k_idx = torch.topk(gate_score, k=self.top_k, dim=-1)
        top1_idx = gate_top_k_idx[:, 0]
        c_e = torch.scatter_add(torch.zeros(self.num_expert), 0, top1_idx,
                                torch.ones_like(top1_idx, dtype=torch.float)) / inp.shape[0]
        m_e = torch.mean(F.softmax(gate_score, dim=1), dim=0)
        self.set_loss(torch.mean(c_e * m_e) * (self.num_expert ** 2))
        return gate_top_k_idx, F.softmax(gate_top_k_val, dim=-1)


class FMoETransformerMLP(nn.Module):
    def __init__(self, num_expert, d_model, d_hidden, top_k=2):
        super().__init__()
        self.gate = GShardGate(d_model, num_expert, top_k)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(d_model, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_model))
            for _ in range(num_expert))

    def forward(self, inp):
        idx, score = self.gate(inp)
        all_out = torch.stack([e(inp) for e in self.experts], dim=1)
        picked = torch.gather(all_out, 1, idx.unsqueeze(-1).expand(-1, -1, inp.size(-1)))
        return (picked * score.unsqueeze(-1)).sum(dim=1)


class Layer(nn.Module):
    def __init__(self, d_model, num_expert):
        super().__init__()
        self.ln = nn.LayerNorm(d_model)
        self.mlp = FMoETransformerMLP(num_expert, d_model, 4 * d_model)

    def forward(self, x):
        return x + self.mlp(self.ln(x))


class MoELM(nn.Module):
    def __init__(self, vocab=100, d_model=32, num_expert=4, num_layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList(Layer(d_model, num_expert) for _ in range(num_layers))
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def forward_step_with_balance_loss(tokens, labels, model, balance_loss_weight=1.0):
    loss = F.cross_entropy(model(tokens), labels)
    loss_list = [l.mlp.gate.get_loss(clear=False) for l in model.layers]
    bal_loss = torch.tensor(loss_list).mean() * balance_loss_weight
    loss += bal_loss
    return loss


def train(model, batches, lr=1e-3):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for tokens, labels in batches:
        loss = forward_step_with_balance_loss(tokens, labels, model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
