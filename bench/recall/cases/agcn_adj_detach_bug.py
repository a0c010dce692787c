"""Recall case agcn_adj_detach (bug): A-GCN detached the learned adjacency inside forward()."""
# https://github.com/queenie88/A-GCN/issues/4 -- gen_adj_new(adj).detach() cut the path to the non-local block, so W_phi/W_theta never trained.
import torch
import torch.nn as nn


def gen_adj_new(A):
    D = torch.pow(A.sum(1).float(), -0.5)
    D = torch.diag(D)
    return torch.matmul(torch.matmul(A, D).t(), D)


class NONLocalBlock1D(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.inter_channels = max(in_channels // 2, 1)
        self.theta = nn.Conv1d(in_channels, self.inter_channels, kernel_size=1)
        self.phi = nn.Conv1d(in_channels, self.inter_channels, kernel_size=1)

    def forward(self, x):
        theta_x = self.theta(x).squeeze(2)
        phi_x = self.phi(x).squeeze(2).transpose(0, 1)
        f = torch.matmul(theta_x, phi_x)
        return f / f.size(-1)


class GCNResnet(nn.Module):
    def __init__(self, features, num_classes, in_channel=300):
        super().__init__()
        self.features = features
        self.num_classes = num_classes
        self.non_local_C1 = NONLocalBlock1D(in_channel)
        self.gc1 = nn.Linear(in_channel, 1024)
        self.gc2 = nn.Linear(1024, 2048)
        self.activate = nn.LeakyReLU(0.2)

    def forward(self, feature, inp):
        feature = self.features(feature).flatten(1)
        inp = inp[0]
        adj = self.non_local_C1(inp.unsqueeze(2))
        adj = adj + torch.eye(self.num_classes)
        adj = gen_adj_new(adj).detach()
        x = self.activate(torch.matmul(adj, self.gc1(inp)))
        x = torch.matmul(adj, self.gc2(x))
        return torch.matmul(feature, x.transpose(0, 1))

    def get_config_optim(self, lr, lrp):
        return [
            {'params': self.features.parameters(), 'lr': lr * lrp},
            {'params': self.non_local_C1.parameters(), 'lr': lr},
            {'params': self.gc1.parameters(), 'lr': lr},
            {'params': self.gc2.parameters(), 'lr': lr},
        ]
