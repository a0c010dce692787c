"""Recall case snntorch_sigmoid_surrogate_exp (bug): snntorch's Sigmoid surrogate backward wrote the sigmoid derivative with raw exp()."""
# https://github.com/jeshraghian/snntorch/pull/433 -- Sigmoid.backward computed slope*exp(-slope*u)/(exp(-slope*u)+1)**2; exp overflows to inf once -slope*u > ~88 (u < -3.5 at slope 25), giving inf/inf = NaN gradients (issue #427); fixed with torch.sigmoid.
import torch
import torch.nn as nn


class Sigmoid(torch.autograd.Function):
    """
    Surrogate gradient of the Heaviside step function.

    **Forward pass:** Heaviside step function shifted.

    **Backward pass:** Gradient of sigmoid function.
    """

    @staticmethod
    def forward(ctx, input_, slope):
        ctx.save_for_backward(input_)
        ctx.slope = slope
        out = (input_ > 0).float()
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (input_,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad = (
            grad_input
            * ctx.slope
            * torch.exp(-ctx.slope * input_)
            / ((torch.exp(-ctx.slope * input_) + 1) ** 2)
        )
        return grad, None


def sigmoid(slope=25):
    """Sigmoid surrogate gradient enclosed with a parameterized slope."""
    slope = slope

    def inner(x):
        return Sigmoid.apply(x, slope)

    return inner


class Leaky(nn.Module):
    """First-order leaky integrate-and-fire neuron (trimmed from snntorch.Leaky)."""

    def __init__(self, beta, threshold=1.0, spike_grad=None):
        super().__init__()
        self.beta = beta
        self.threshold = threshold
        self.spike_grad = sigmoid() if spike_grad is None else spike_grad

    def fire(self, mem):
        mem_shift = mem - self.threshold
        spk = self.spike_grad(mem_shift)
        return spk

    def mem_reset(self, mem):
        mem_shift = mem - self.threshold
        reset = self.spike_grad(mem_shift).clone().detach()
        return reset

    def forward(self, input_, mem):
        reset = self.mem_reset(mem)
        mem = self.beta * mem + input_ - reset * self.threshold
        spk = self.fire(mem)
        return spk, mem


class Net(nn.Module):
    def __init__(self, num_inputs=784, num_hidden=1000, num_outputs=10, beta=0.95):
        super().__init__()
        spike_grad = sigmoid(slope=25)
        self.fc1 = nn.Linear(num_inputs, num_hidden)
        self.lif1 = Leaky(beta=beta, spike_grad=spike_grad)
        self.fc2 = nn.Linear(num_hidden, num_outputs)
        self.lif2 = Leaky(beta=beta, spike_grad=spike_grad)

    def forward(self, x, num_steps=25):
        mem1 = torch.zeros(x.size(0), self.fc1.out_features, device=x.device)
        mem2 = torch.zeros(x.size(0), self.fc2.out_features, device=x.device)
        spk2_rec = []
        mem2_rec = []
        for step in range(num_steps):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


def train(net, train_loader, num_epochs=1, num_steps=25):
    loss = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))
    for epoch in range(num_epochs):
        for data, targets in train_loader:
            net.train()
            spk_rec, mem_rec = net(data.view(data.size(0), -1), num_steps)
            loss_val = torch.zeros((1), dtype=torch.float)
            for step in range(num_steps):
                loss_val += loss(mem_rec[step], targets)
            optimizer.zero_grad()
            loss_val.backward()
            optimizer.step()
