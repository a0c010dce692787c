"""Where two branches of forward's signal meet in a product: softmax attention and gating, as IR nodes.

The forward interpreter (source/forward.py) follows each tensor as the tuple of IR nodes applied to
an input since that input; when two tensors of one input are combined, the nodes they share are
the common prefix and the rest are the branches. A sum is a residual (forward._add); the products
are here:

- a matrix product of two branches (`q @ k.transpose(-2, -1)`, `attn @ v`, `torch.matmul`,
  `einsum`), `F.scaled_dot_product_attention(q, k, v)` and `nn.MultiheadAttention`: an `Attention`
  node whose projections are the layers of the branches;
- an elementwise product or quotient (`x * sigmoid(g(x))`, squeeze-and-excitation, GLU/SwiGLU,
  `x / f(x)`): a `Residual` whose join is 'mul'.

Neither gets a gain: both end a chain and leave the scale after them unknown (see
gradlint.model.propagation), because their backward factor depends on the data (softmax weights,
gate values). What they give is structure: the layers inside the branches are still analysed as
chains of their own, the transformer-block rules see attention, and `gradlint model` shows them as
understood instead of opaque.
"""

from __future__ import annotations

from typing import Sequence

from gradlint.model.ir import Attention, Param, Residual, walk


def common_prefix(a: tuple, b: tuple) -> tuple:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


def _projections(tails: Sequence[tuple]) -> tuple[Param, ...]:
    """The parametric layers of the branches, in order, each once; those of an attention node
    already in a branch (`softmax(q k^T) @ v`: q and k) come with it."""
    out: list[Param] = []
    for tail in tails:
        for n in walk(tuple(tail)):
            found = n.projections if isinstance(n, Attention) else (n,) if isinstance(n, Param) else ()
            out.extend(p for p in found if p not in out)
    return tuple(out)


def attention(operands: Sequence[tuple[object, tuple]], what: str, name: str = "", origin=None) -> tuple[object, tuple]:
    """(root, nodes) after attention over `operands`, each (root, nodes) of one tensor. The first
    operand's input is the one followed: what the operands of that input share stays before the
    node; operands of other inputs (cross-attention's keys and values) add their layers as
    projections."""
    root, first = operands[0]
    prefix = first
    for r, nodes in operands[1:]:
        if r == root:
            prefix = common_prefix(prefix, nodes)
    tails = [nodes[len(prefix):] if r == root else nodes for r, nodes in operands]
    return root, prefix + (Attention(name, what, _projections(tails), origin),)


def product(a: tuple, b: tuple) -> tuple:
    """The nodes of a * b (or a / b), a and b node tuples from one input: the shared prefix, then a
    'mul' residual. When one side is the shared input itself (`x * gate(x)`), it is the skip;
    otherwise (`w1(x) * silu(w2(x))`) both are branches and the input is not among the factors."""
    prefix = common_prefix(a, b)
    ra, rb = a[len(prefix):], b[len(prefix):]
    body, other = (rb, ra) if len(rb) >= len(ra) else (ra, rb)
    node = Residual(body=tuple(body), join="mul", skip_scale=0.0 if other else None,
                    branches=(tuple(other),) if other else ())
    return prefix + (node,)
