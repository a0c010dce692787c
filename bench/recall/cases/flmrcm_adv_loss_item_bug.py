"""Recall case flmrcm_adv_loss_item (bug): FL-MRCM turned the adversarial loss into a float before adding it to the loss."""
# https://github.com/guopengf/FL-MRCM/issues/10 -- loss_adv_g was detached and re-assigned to a Python float, so the adversarial term never reached backprop.
import torch
import torch.nn as nn


class LocalUpdate:
    def __init__(self, args, dataloader):
        self.args = args
        self.ldr_train = dataloader
        self.criterion = nn.L1Loss()
        self.criterion_adv = nn.BCEWithLogitsLoss()

    def train(self, net, net_d):
        optimizer = torch.optim.Adam(net.parameters(), lr=self.args.lr)
        batch_loss_adv = []
        for iter in range(self.args.local_ep):
            for input, target in self.ldr_train:
                net.zero_grad()
                output = net(input)
                loss_recon = self.criterion(output, target)
                d_out = net_d(output)
                loss_adv_g = self.criterion_adv(d_out, torch.ones_like(d_out))
                loss_adv_g = loss_adv_g.detach().item()
                loss = loss_recon + self.args.lambda_adv * loss_adv_g
                loss.backward()
                optimizer.step()
                batch_loss_adv.append(loss_adv_g)
        return net.state_dict(), sum(batch_loss_adv) / len(batch_loss_adv)
