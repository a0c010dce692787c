"""Where an ONNX graph's data path begins: the graph input whose residual stream reaches the main
output, and the other inputs whose own layers feed that stream.

A decoder reads two inputs: the target, which runs through every block's residual adds, and the
encoder's memory, which every block's cross-attention reads. Counted by the layers each reaches,
the memory wins (it reaches the key and value projections the target never does), and a path
from it is one fan-out into twelve cross-attentions, not a stack of blocks. The stream is found
from the output instead: walking back, a residual add `x + f(x)` is left by its skip operand `x`,
the one that also feeds the other operand, until a graph input is reached. An encoder-decoder's
encoder is then beside that stream: its output reaches the stream only through the decoder's
cross-attentions, and the inputs whose layers do so are lowered too, before the stream (in the
order the source reader reads `nn.Transformer`: encoder, then decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from gradlint.onnx.lower import Unit

@dataclass
class Flow:
    """The units that carry data from any graph input, with their producers and dynamic inputs."""

    units: Sequence["Unit"]
    inputs: Sequence[str]
    producer: dict[str, int]  # value -> the unit writing it
    dynamic: set[str]  # values depending on some graph input (shapes are metadata, not data)
    readers: dict[str, int]  # value -> how many units read it as data

    def data_inputs(self, k: int) -> list[str]:
        return list(dict.fromkeys(x for x in self.units[k].inputs if x in self.dynamic))


def data_flow(units: Sequence["Unit"], inputs: Sequence[str], is_shape: Callable[["Unit"], bool]) -> Flow:
    dynamic = set(inputs)
    producer: dict[str, int] = {}
    readers: dict[str, int] = {}
    for k, u in enumerate(units):
        if is_shape(u):
            continue
        read = [x for x in dict.fromkeys(u.inputs) if x in dynamic]
        if read:
            for x in read:
                readers[x] = readers.get(x, 0) + 1
            for o in u.outputs:
                dynamic.add(o)
                producer[o] = k
    return Flow(units, inputs, producer, dynamic, readers)


def stream_input(flow: Flow, output: str, is_add: Callable[["Unit"], bool]) -> str | None:
    """The graph input at the start of the stream that ends in `output`: followed back through
    units with one data input, and through an add `x + f(x)` to x (_skip); None when a unit joins
    several data inputs some other way (concatenation, gating, `emb(ids) + pos_emb(pos)`)."""
    added: dict[str, list[list[str]]] = {}  # value -> the data operands of each add it is one of
    for k, u in enumerate(flow.units):
        if is_add(u):
            ins = flow.data_inputs(k)
            for x in ins:
                added.setdefault(x, []).append(ins)
    v = output
    for _ in range(len(flow.units) + 1):
        k = flow.producer.get(v)
        if k is None:
            return v if v in flow.inputs else None
        ins = flow.data_inputs(k)
        if len(ins) == 1:
            v = ins[0]
        elif len(ins) == 2 and is_add(flow.units[k]):
            skip = _skip(flow, *ins, added)
            if skip is None:
                return None
            v = skip
        else:
            return None
    return None


def _skip(flow: Flow, a: str, b: str, added: dict[str, list[list[str]]]) -> str | None:
    """The value x of an add `x + f(x)` of a and b: each operand is followed back through units
    with one data input that only it reads (DeepNorm's `x * alpha`, a dropout, f's layers) to
    where it forks or joins; x is the fork that both reach, or the one the other one reads on
    its way (f joins x with other values: attention). A value that is the skip of several adds
    (each adds it to something computed from it) is no value of a stream, each of which is
    skipped over once, but a broadcast: in `sigmoid(W h + e)` with a conditioning vector e added
    in each layer, every layer reads e on its way through the earlier ones, and taking e for the
    skip would lead the stream to the conditioning input. (A value that is also added to a
    broadcast, `h + b(h + e)`, is still the skip of one add only.)"""
    ra, rb = _fork(flow, a), _fork(flow, b)
    if ra == rb:
        return ra
    a_read, b_read = _reads(flow, b, ra), _reads(flow, a, rb)
    if a_read == b_read:
        return None
    x = ra if a_read else rb
    return None if _skipped_more_than_once(flow, x, added) else x


def _skipped_more_than_once(flow: Flow, x: str, added: dict[str, list[list[str]]]) -> bool:
    n = 0
    for ins in added.get(x, []):
        if len(ins) == 2 and any(y != x and _reads(flow, y, x) for y in ins):
            n += 1
            if n > 1:
                return True
    return False


def _fork(flow: Flow, v: str) -> str:
    while flow.readers.get(v, 0) <= 1:
        k = flow.producer.get(v)
        if k is None:
            break
        ins = flow.data_inputs(k)
        if len(ins) != 1:
            break
        v = ins[0]
    return v


def _reads(flow: Flow, y: str, x: str) -> bool:
    """Whether x is read on the way to y (x is a strict ancestor of y)."""
    start = flow.producer.get(y)
    if start is None:
        return False
    # Units are in topological order: none before x's producer can read x.
    floor = flow.producer.get(x, -1)
    seen = {start}
    stack = [start]
    while stack:
        k = stack.pop()
        for v in flow.data_inputs(k):
            if v == x:
                return True
            p = flow.producer.get(v)
            if p is not None and p > floor and p not in seen:
                seen.add(p)
                stack.append(p)
    return False


def feeding_inputs(flow: Flow, main_in: str, main_units: Sequence[int], main_dynamic: set[str],
                   has_layer: Callable[["Unit"], bool]) -> dict[str, list[str]]:
    """The other graph inputs whose data reaches the units of the main path through a layer of its
    own (an encoder's memory, a conditioning MLP), each with the values the main path reads from
    it, in the order of the graph's inputs. A mask or a raw second input read as it is, with no
    layer between, is no stream of its own and is left out."""
    bit = {name: 1 << n for n, name in enumerate(flow.inputs)}
    reach: dict[str, int] = dict(bit)  # value -> the inputs it depends on
    layered: dict[str, int] = {}  # value -> the inputs it depends on through some layer
    for k, u in enumerate(flow.units):
        if not any(o in flow.producer and flow.producer[o] == k for o in u.outputs):
            continue
        r = w = 0
        for x in u.inputs:
            r |= reach.get(x, 0)
            w |= layered.get(x, 0)
        if has_layer(u):
            w |= r
        for o in u.outputs:
            reach[o] = r
            if w:
                layered[o] = w
    read: dict[str, list[str]] = {}
    main_bit = bit.get(main_in, 0)
    for k in main_units:
        for x in flow.units[k].inputs:
            w = layered.get(x, 0) & ~main_bit
            if x in main_dynamic or not w:
                continue
            for name in flow.inputs:
                if w & bit[name] and x not in read.setdefault(name, []):
                    read[name].append(x)
    return {name: read[name] for name in flow.inputs if name in read}
