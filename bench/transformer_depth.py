"""Measure how gradients spread over the layers of Post-LN transformers: encoder-decoder against one stack.

    /work/venv/bin/python bench/transformer_depth.py [--seeds 3] [--d-model 512] [--quick]

What GL106 counts is a depth, and what that depth stands for is the imbalance Xiong et al. (2020)
show at initialisation in a Post-LN stack: the parameters near the output get much larger
gradients than those near the input. This script measures that imbalance, in torch on the CPU,
for the models gradlint reads: nn.Transformer of several encoder+decoder depths, encoder-only
stacks (nn.TransformerEncoder) and decoder-only ones (nn.TransformerDecoder over a fixed memory,
and encoder layers under a causal mask, GPT-style).

Set-up: d_model 512, nhead 8, dim_feedforward 2048 (torch's defaults), dropout 0 (the statistics
of the initialisation, not of a dropout draw), train mode (no fast path), batch 8, source and
target of 24 tokens, inputs x ~ N(0, 1). Loss: a fixed random readout to 1000 classes
(nn.Linear, default init) and cross-entropy against random labels, on the last stack's output.
Every model at its default initialisation: nn.Transformer re-draws its matrices with
xavier_uniform_ (Transformer._reset_parameters) and ends each stack in a LayerNorm; a bare
nn.TransformerEncoder keeps the layers' own init (Linear: kaiming_uniform_(a=sqrt(5))) and has
no final norm. Both confounders are measured apart: "+xavier" re-draws a stack as nn.Transformer
does, "+norm" gives it the final LayerNorm.

Per layer l (in the order the forward runs them: encoder layers, then decoder layers):
  W(l): ||dL/dW|| of the feed-forward output matrix (linear2.weight), Xiong et al.'s measure;
  X(l): ||dL/dx_l||, the gradient at the layer's input stream (for a decoder layer, the target
        stream; the encoder's gradient also arrives through every cross-attention).
Printed, geometric means over the seeds: W first/last and X first/last over the whole model, and
within each stack (enc = encoder layer 0 / encoder's last layer, dec = decoder layer 0 / last).
`--sweep` changes the encoder's and the decoder's depths one at a time; `--profile` prints each
layer's W over the last one's.

Measured on a CPU with torch 2.13 (d_model 512; 3 seeds, the sweep 2), W first/last:

    nn.Transformer 6+6     whole 0.89   encoder 0.91   decoder 0.40
    nn.Transformer 12+12   whole 0.88   encoder 0.89   decoder 0.091
    nn.Transformer 3+9     whole 1.17   encoder 1.05   decoder 0.46
    nn.Transformer 9+3     whole 0.80   encoder 0.92   decoder 0.71
    encoder 6 / 12 / 24 (module defaults, no final norm)        1.19 / 1.28 / 1.17
    encoder 6 / 12 (+xavier +norm, as nn.Transformer's)         1.16 / 0.93
    decoder 6 / 12 over a fixed memory; 12 +xavier +norm        1.02 / 0.76; 0.81
    causal encoder 12 (a decoder-only LM)                       0.97
    sweep, decoder of 6 after an encoder of 1 / 3 / 6 / 12:     decoder 0.96 / 0.64 / 0.40 / 0.34
    sweep, encoder of 6 before a decoder of 1 / 3 / 6 / 9 / 12: decoder 1 / 0.72 / 0.40 / 0.21 / 0.14
                                                                encoder 0.88 / 0.91 / 0.91 / 0.86 / 0.91

Read: no single Post-LN stack shows the imbalance at initialisation (to 24 layers; nor with
||dL/dW|| of all the layer's parameters, 0.64-0.82 at 12 layers, nor with dropout or inputs scaled
by sqrt(d_model)). An encoder-decoder's decoder does, and it grows with the encoder's depth as well
as its own: the encoder's depth adds to the decoder's. The encoder's own ratio does not depend on
the decoder's depth, and the whole-model ratio stays near 0.9: the first layers are not starved.
The same holds with the layers' own initialisation and no final norms (encoder and decoder modules
built apart: the decoder's ratio 0.92 / 0.46 / 0.33 after an encoder of 1 / 6 / 12).
"""

from __future__ import annotations

import argparse
import math
import warnings

import torch
from torch import nn

VOCAB = 1000
BATCH = 8
LEN = 24


def _xavier(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    return module


class Model(nn.Module):
    """One of the measured shapes: `kind` is 'encdec', 'enc', 'dec' (a decoder stack over a fixed
    memory) or 'causal' (encoder layers under a causal mask)."""

    def __init__(self, kind: str, n_enc: int, n_dec: int, d: int, xavier: bool, final_norm: bool):
        super().__init__()
        self.kind = kind
        heads = 8
        ff = 4 * d
        if kind == "encdec":
            self.net = nn.Transformer(d, heads, n_enc, n_dec, ff, dropout=0.0)  # its own init and norms
            self.enc_layers = list(self.net.encoder.layers)
            self.dec_layers = list(self.net.decoder.layers)
        elif kind in ("enc", "causal"):
            layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0)
            self.net = nn.TransformerEncoder(layer, n_enc, norm=nn.LayerNorm(d) if final_norm else None,
                                             enable_nested_tensor=False)
            self.enc_layers, self.dec_layers = list(self.net.layers), []
        else:
            layer = nn.TransformerDecoderLayer(d, heads, ff, dropout=0.0)
            self.net = nn.TransformerDecoder(layer, n_dec, norm=nn.LayerNorm(d) if final_norm else None)
            self.enc_layers, self.dec_layers = [], list(self.net.layers)
        if xavier and kind != "encdec":
            _xavier(self.net)
        self.head = nn.Linear(d, VOCAB)

    def forward(self, src, tgt, memory):
        if self.kind == "encdec":
            out = self.net(src, tgt)
        elif self.kind == "enc":
            out = self.net(src)
        elif self.kind == "causal":
            out = self.net(src, mask=nn.Transformer.generate_square_subsequent_mask(src.size(0)), is_causal=True)
        else:
            out = self.net(tgt, memory)
        return self.head(out)


def measure(kind: str, n_enc: int, n_dec: int, d: int, seed: int, xavier=False, final_norm=False):
    torch.manual_seed(seed)
    model = Model(kind, n_enc, n_dec, d, xavier, final_norm).train()
    layers = model.enc_layers + model.dec_layers
    inputs: dict[int, torch.Tensor] = {}

    def keep(i):
        def hook(_mod, args, kwargs):
            x = args[0] if args else kwargs.get("src", kwargs.get("tgt"))
            x.retain_grad()
            inputs[i] = x
        return hook

    handles = [m.register_forward_pre_hook(keep(i), with_kwargs=True) for i, m in enumerate(layers)]
    src = torch.randn(LEN, BATCH, d, requires_grad=True)
    tgt = torch.randn(LEN, BATCH, d, requires_grad=True)
    memory = torch.randn(LEN, BATCH, d)
    labels = torch.randint(0, VOCAB, (LEN * BATCH,))
    logits = model(src, tgt, memory)
    nn.functional.cross_entropy(logits.reshape(-1, VOCAB), labels).backward()
    for h in handles:
        h.remove()
    w = [m.linear2.weight.grad.norm().item() for m in layers]
    x = [inputs[i].grad.norm().item() for i in range(len(layers))]
    return w, x, len(model.enc_layers)


def _ratios(w, x, n_enc):
    r = {"W": w[0] / w[-1], "X": x[0] / x[-1]}
    if n_enc and len(w) > n_enc:
        r["W enc"], r["W dec"] = w[0] / w[n_enc - 1], w[n_enc] / w[-1]
        r["X enc"], r["X dec"] = x[0] / x[n_enc - 1], x[n_enc] / x[-1]
    return r


def run(label, kind, n_enc, n_dec, d, seeds, profile=False, **kw):
    logs: dict[str, float] = {}
    for s in range(seeds):
        w, x, ne = measure(kind, n_enc, n_dec, d, s, **kw)
        for k, v in _ratios(w, x, ne).items():
            logs[k] = logs.get(k, 0.0) + math.log(v) / seeds
    cells = "  ".join(f"{k} {math.exp(v):.3g}" for k, v in logs.items())
    print(f"{label:<38} {cells}", flush=True)
    if profile:
        w, _x, ne = measure(kind, n_enc, n_dec, d, 0, **kw)
        print("    W(l)/W(last), seed 0: " + " ".join(("| " if i == ne and ne < len(w) else "") + f"{v / w[-1]:.2f}"
                                                  for i, v in enumerate(w)), flush=True)


CASES = [
    # label, kind, encoder layers, decoder layers, options
    ("nn.Transformer 6+6", "encdec", 6, 6, {}),
    ("nn.Transformer 12+12", "encdec", 12, 12, {}),
    ("nn.Transformer 3+9", "encdec", 3, 9, {}),
    ("nn.Transformer 9+3", "encdec", 9, 3, {}),
    ("nn.Transformer 12+1", "encdec", 12, 1, {}),
    ("encoder 6", "enc", 6, 0, {}),
    ("encoder 12", "enc", 12, 0, {}),
    ("encoder 24", "enc", 24, 0, {}),
    ("encoder 12 +xavier +norm", "enc", 12, 0, {"xavier": True, "final_norm": True}),
    ("encoder 6 +xavier +norm", "enc", 6, 0, {"xavier": True, "final_norm": True}),
    ("decoder 6 (fixed memory)", "dec", 0, 6, {}),
    ("decoder 12 (fixed memory)", "dec", 0, 12, {}),
    ("decoder 12 +xavier +norm", "dec", 0, 12, {"xavier": True, "final_norm": True}),
    ("causal encoder 12 (decoder-only LM)", "causal", 12, 0, {}),
]

# --sweep: the decoder's depth against the encoder's, one changed at a time
SWEEP = [(f"nn.Transformer {e}+{d}", "encdec", e, d, {}) for e, d in
         ((6, 1), (6, 3), (6, 9), (6, 12), (1, 6), (3, 6), (12, 6), (1, 12))]


def main() -> None:
    warnings.filterwarnings("ignore", message="enable_nested_tensor")
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--profile", action="store_true", help="also print each layer's W over the last layer's")
    ap.add_argument("--sweep", action="store_true", help="encoder and decoder depths changed one at a time")
    ap.add_argument("--quick", action="store_true", help="d_model 128, 2 seeds")
    a = ap.parse_args()
    d, seeds = (128, 2) if a.quick else (a.d_model, a.seeds)
    print(f"d_model {d}, {seeds} seeds; W = ||dL/d linear2.weight||, X = ||dL/d layer input||; ratios first/last")
    for label, kind, ne, nd, kw in SWEEP if a.sweep else CASES:
        run(label, kind, ne, nd, d, seeds, profile=a.profile, **kw)


if __name__ == "__main__":
    main()
