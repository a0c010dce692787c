"""Where two branches of forward's signal meet: sums, concatenations and products, as IR nodes.

The forward interpreter (source/forward.py) follows each tensor as the tuple of IR nodes applied to
an input since that input; when two tensors of one input are combined, the nodes they share are
the common prefix and the rest are the branches. The interpreter reads which tensors meet; what
their meeting becomes is here:

- a sum (`x + f(x)`, `out += branch(x)`): a `Residual` whose body is the branch that holds layers
  and whose skip is the input itself, scaled or not (`_add`); a sum of branches that all hold
  layers keeps each as a branch;
- a concatenation of branches (`torch.cat([x, f(x)])`, DenseNet, a U-Net's skips) is built by
  the interpreter as a `Residual` whose join is 'cat'; the outputs of one chain at several
  depths (a jumping-knowledge network) are nested ones (`_nested_outputs`);
- a module called with an earlier value of its input's path beside it (`self.output(f(h), h)`):
  where that value re-enters, and the seeds of the module's own forward (`_earlier_inputs`);
- a matrix product of two branches (`q @ k.transpose(-2, -1)`, `attn @ v`, `torch.matmul`,
  `einsum`), `F.scaled_dot_product_attention(q, k, v)` and `nn.MultiheadAttention`: an `Attention`
  node whose projections are the layers of the branches; of the features with another input no
  layer touched (`adj @ h`), a scale the data decides (`_propagated`);
- an elementwise product or quotient (`x * sigmoid(g(x))`, squeeze-and-excitation, GLU/SwiGLU,
  `x / f(x)`): a `Residual` whose join is 'mul'.

The products get no gain: they end a chain and leave the scale after them unknown (see
gradlint.model.propagation), because their backward factor depends on the data (softmax weights,
gate values). What they give is structure: the layers inside the branches are still analysed as
chains of their own, the transformer-block rules see attention, and `gradlint model` shows them as
understood instead of opaque.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from gradlint.model.ir import Activation, Attention, Node, Param, Passthrough, Residual, walk
from gradlint.source.engine.values import PathVal


def common_prefix(a: tuple, b: tuple) -> tuple:
    n = 0
    for x, y in zip(a, b):
        # (mostly the same node objects: a dataclass's == compares field by field, and a forward
        # of many joins asked it of each shared node at each join)
        if x is not y and x != y:
            break
        n += 1
    return a[:n]


def _add(a: PathVal, b: PathVal) -> PathVal:
    """a + b of one input: the nodes both share are the input of a sum, and what each adds after
    them is a part of it. A part of passthroughs only (the input itself, scaled, pooled, dropped
    out) is the skip: x + f(x), a `Residual` whose body is the other part. When both parts hold
    layers (a projection shortcut, MobileOne's `scale(x) + conv(x) + bn(x)`, a parallel
    attention + MLP block), neither is dropped: the longer is the body and the other a branch,
    and `skip_scale` 0.0 says the input itself is not summed. A sum of branches added to again
    (`x + f(x) + g(x)`, `out += branch(x)` in a loop) gets one more branch."""
    if a.root != b.root:
        return a
    if a.nodes == b.nodes:
        return a
    prefix = common_prefix(a.nodes, b.nodes)
    ra, rb = a.nodes[len(prefix):], b.nodes[len(prefix):]
    for sum_, part in ((ra, rb), (rb, ra)):
        if len(sum_) == 1 and _is_sum(sum_[0]) and part:
            node = sum_[0]
            if _skip_part(part):
                if node.skip_scale != 0.0:
                    return PathVal(a.root, prefix + (Residual(body=(node,), skip_scale=_skip_scale(part)),))  # x + (x + f(x))
                # a sum of branches, then the input itself: the skip joins it
                return PathVal(a.root, prefix + (dataclasses.replace(node, skip_scale=_skip_scale(part)),))
            return PathVal(a.root, prefix + (dataclasses.replace(node, branches=node.branches + (tuple(part),)),))
    body, skip = (rb, ra) if len(rb) >= len(ra) else (ra, rb)
    if _skip_part(skip):
        return PathVal(a.root, prefix + (Residual(body=tuple(body), skip_scale=_skip_scale(skip)),))
    return PathVal(a.root, prefix + (Residual(body=tuple(body), skip_scale=0.0, branches=(tuple(skip),)),))


def _is_sum(node: Node) -> bool:
    return isinstance(node, Residual) and node.join == "add" and not node.name


def _skip_part(nodes: tuple) -> bool:
    """The input itself, through nodes that hold no layer (dropout, pooling, reshapes, a scale)."""
    return all(isinstance(n, Passthrough) or isinstance(n, Activation) and n.fn == "identity" for n in nodes)


def _skip_scale(skip: tuple) -> float | None:
    """The product of the literal factors of a scaled skip (DeepNorm's x * alpha); NaN when one of
    them is not a literal (alpha from config); None when nothing scales it."""
    if not skip or not all(isinstance(n, Passthrough) and n.what.startswith("scale:") for n in skip):
        return None
    scale = 1.0
    for n in skip:
        factor = n.what.split(":", 1)[1]
        scale = scale * float(factor) if factor != "?" else float("nan")
    return scale


def _nested_outputs(bodies: list, skip: bool) -> tuple | None:
    """The parts of a concatenation that are the outputs of one chain at several depths (a
    jumping-knowledge network's `torch.cat(xs)` of every layer's output, DenseNet-like stacks):
    each deeper part continues the one before, so `cat(h1, h2, h3)` with `h2 = f2(h1)` and
    `h3 = f3(h2)` is h1 joined with f2 applied to h1, then h2 joined with f3 applied to it: nested
    concatenations whose skips keep every layer one join away from the output (as the U-Net's
    pairwise ones are), not parallel copies of the chain (the longest of which would read as
    one deep chain). None when the parts are not such prefixes of one another."""
    ordered = sorted(bodies, key=len)
    if len(ordered) < 2 or any(len(a) >= len(b) or tuple(b[:len(a)]) != tuple(a) for a, b in zip(ordered, ordered[1:])):
        return None
    deltas = [tuple(ordered[0])] + [tuple(b[len(a):]) for a, b in zip(ordered, ordered[1:])]
    inner: tuple = ()
    for delta in reversed(deltas[1:]):
        inner = (Residual(body=delta + inner, join="cat"),)  # the part so far joined with the deeper ones
    if skip:
        return (Residual(body=deltas[0] + inner, join="cat"),)
    return deltas[0] + inner


def _earlier_inputs(given: list, base: PathVal) -> tuple[int, tuple] | None:
    """A module called with its first tensor and an earlier value of the same path
    (`self.output(mlp(norm(h)), h)`; `blk(x, size)` with `size` read from `x.shape` is no tensor):
    where the earliest such value is on the path, and the seeds of Lowerer.joined_outputs (the
    first argument's nodes since that value, each earlier value's since it). None when there is
    none, or when the call's arguments do not say which parameter each is (the first tensor not
    the first positional argument, a starred argument). The same value passed twice joins
    nothing: only a strict earlier value re-enters."""
    if not given or given[0][1] is not base or given[0][0].keyword is not None:
        return None
    earlier: list = []
    position = 0
    for a, v in given[1:]:
        if a.star:
            return None
        if a.keyword is None:
            position += 1
        n = len(v.nodes) if isinstance(v, PathVal) else -1
        if isinstance(v, PathVal) and v.root == base.root and n < len(base.nodes) and base.nodes[:n] == v.nodes:
            earlier.append((position if a.keyword is None else a.keyword.value, n))
    if not earlier:
        return None
    start = min(n for _k, n in earlier)
    return start, ((0, base.nodes[start:]),) + tuple((k, base.nodes[start:n]) for k, n in earlier)


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


def _propagated(a: PathVal, b: PathVal) -> PathVal | None:
    """`adj @ h` (a graph convolution's propagation): a product of the features with another input
    of forward that no layer touched (an adjacency, a mask) is a linear map of the features whose
    scale depends on the data (a normalised adjacency keeps it, a sum over neighbours multiplies
    it by the degree): the chain ends there (`scale:?`), and the layers before and after it stay
    layers of the network. None for anything else (q @ k^T of one input: attention)."""
    if a.root == b.root or bool(a.nodes) == bool(b.nodes):
        return None
    features = a if a.nodes else b
    return PathVal(features.root, features.nodes + (Passthrough("", "scale:?"),))
