"""GL107 relu-recurrence: a vanilla RNN with a ReLU recurrence and no identity initialisation."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, Rule, RuleContext
from gradlint.rules.architecture.common import location, networks

RELU_RNN = """\
import torch.nn as nn

class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(128, 256, nonlinearity="relu", batch_first=True)
        self.out = nn.Linear(256, 10)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.out(h)
"""


class ReluRecurrence(Rule):
    """
    ## What it does
    Reports `nn.RNN`/`nn.RNNCell` with `nonlinearity='relu'` (and ONNX `RNN` nodes with `Relu`)
    whose hidden-to-hidden weights keep their default initialisation.

    ## Why is this bad?
    The same weight matrix multiplies the hidden state at every time step and ReLU does not bound
    it: when its spectral radius exceeds 1 activations and gradients grow exponentially with the
    sequence length, and below 1 they vanish. The identity initialisation of IRNN (Le et al.
    2015) starts exactly at radius 1.

    ## Example
    ```python
    self.rnn = nn.RNN(128, 256, nonlinearity="relu")
    ```

    ## Use instead
    ```python
    self.rnn = nn.RNN(128, 256, nonlinearity="relu")
    nn.init.eye_(self.rnn.weight_hh_l0)
    ```
    or use `nn.LSTM`/`nn.GRU`, and clip gradients in the training loop.

    ## References
    - Le, Jaitly & Hinton, *A Simple Way to Initialize Recurrent Networks of Rectified Linear Units* (2015).
    - Pascanu, Mikolov & Bengio, *On the difficulty of training recurrent neural networks* (2013).
    """

    code = "GL107"
    probe_measure = "not_measurable"
    name = "relu-recurrence"
    severity = Severity.WARNING
    summary = "ReLU recurrence without identity initialisation"
    inputs = frozenset({"python", "onnx"})
    invalid = [Example(RELU_RNN), Example(RELU_RNN.replace('nn.RNN(128, 256, nonlinearity="relu", batch_first=True)',
                                                           "nn.RNNCell(128, 256, nonlinearity='relu')"))]
    valid = [
        Example(RELU_RNN.replace("        self.out = nn.Linear(256, 10)",
                                 "        self.out = nn.Linear(256, 10)\n        nn.init.eye_(self.rnn.weight_hh_l0)"),
                note="IRNN"),
        Example(RELU_RNN.replace('nonlinearity="relu", ', ""), note="tanh recurrence"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        seen: set = set()
        for network in networks(ctx):
            for rec in network.recurrents:
                if rec.cell not in ("rnn", "rnn_cell") or rec.nonlinearity != "relu":
                    continue
                if rec.weight_hh_init is not None:
                    # Any explicit init of weight_hh (identity, orthogonal, or one we cannot read)
                    # means someone thought about it: only the default draw is reported.
                    continue
                if rec.origin in seen:
                    continue
                seen.add(rec.origin)
                span, node = location(rec.origin)
                yield ctx.finding(
                    f"{rec.name or 'RNN'} uses a ReLU recurrence with default-initialised weight_hh: the hidden "
                    f"state and its gradient grow or shrink exponentially with sequence length",
                    span, node=node, data={"network": network.name, "module": rec.name},
                )
