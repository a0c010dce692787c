"""Recall case caustics_nfw_where (bug): caustics' NFW lens chose between two unsafe branches with torch.where."""
# https://github.com/Ciela-Institute/caustics/pull/83 -- torch.where does not stop NaNs from the unselected branch (sqrt of a negative, 0/0) in the backward pass.
import torch
import torch.nn as nn


class NFW(nn.Module):
    def __init__(self):
        super().__init__()
        self.log_mass = nn.Parameter(torch.tensor(13.0))
        self.c = nn.Parameter(torch.tensor(5.0))

    @staticmethod
    def _f(x):
        return torch.where(
            x > 1,
            1 - 2 / (x ** 2 - 1).sqrt() * ((x - 1) / (x + 1)).sqrt().arctan(),
            torch.where(
                x < 1,
                1 - 2 / (1 - x ** 2).sqrt() * ((1 - x) / (1 + x)).sqrt().arctanh(),
                torch.zeros_like(x),
            ),
        )

    def convergence(self, r):
        r_s = 10 ** self.log_mass / self.c
        x = r / r_s
        return self._f(x) / (x ** 2 - 1)


def fit(lens, r, kappa_obs, steps=100):
    optimizer = torch.optim.Adam(lens.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = ((lens.convergence(r) - kappa_obs) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
