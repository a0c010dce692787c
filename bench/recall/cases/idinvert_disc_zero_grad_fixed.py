"""Recall case idinvert_disc_zero_grad (fixed): optimizer_D.zero_grad() before the discriminator backward."""
# https://github.com/Hsintien-Ng/idinvert_pytorch-reproduced/issues/1 -- optimizer_D.zero_grad() was missing, so D's gradients accumulated across iterations.
import torch
import torch.nn.functional as F


def training_loop(E, G, D, data_loader, num_iters, lr=1e-4):
    optimizer_E = torch.optim.Adam(E.parameters(), lr=lr)
    optimizer_D = torch.optim.Adam(D.parameters(), lr=lr)
    for it, x_real in zip(range(num_iters), data_loader):
        # discriminator step
        optimizer_D.zero_grad()
        x_rec = G(E(x_real)).detach()
        loss_D = F.softplus(D(x_rec)).mean() + F.softplus(-D(x_real)).mean()
        loss_D.backward()
        optimizer_D.step()

        # encoder step
        optimizer_E.zero_grad()
        x_rec = G(E(x_real))
        loss_E = F.mse_loss(x_rec, x_real) + 0.1 * F.softplus(-D(x_rec)).mean()
        loss_E.backward()
        optimizer_E.step()
