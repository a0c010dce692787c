"""Lowering an ONNX graph to the model IR: the main path from the main input to the main output,
with parametric layers carrying the exact statistics of their weights.

How it goes: multi-node patterns exporters emit for one operation (fusion.py) are fused into
units first, and nodes that add a residual and do more (onnxruntime's SkipLayerNormalization,
FusedConv with its Z input) are split into several; then the units that carry data from the main
input to the main output form a DAG, and it is read as a sequence: a fork whose branches meet again
in an `Add` with the fork's own value is a residual block (its body is the other branch), any other
fork-and-join (attention, gating, concatenation) is one `Opaque` node (data_path.py). Ops are read by domain and
type (ops.py); a layer whose exporter folded a BatchNorm into its weights (provenance.py) is
followed by that norm. Anything not understood is `Opaque` too: an unknown never becomes a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from gradlint.findings import GraphNode
from gradlint.model.ir import (
    INPUT_WHAT, Activation, InitSpec, Network, Node, Norm, Opaque, Param, Passthrough, Recurrent,
)
from gradlint.onnx.fusion import Patterns
from gradlint.onnx.graph import SHAPE_OPS, GraphIndex, attr
from gradlint.onnx.load import TensorStats, dequantized_stats
from gradlint.onnx.ops import (
    ACT_PARAM, ACTIVATIONS, LAYERS, MS, NORMS, PASSTHROUGH, QUANTIZED_LAYERS, RECURRENT, REFUSED, SKIP, SKIP_NORMS,
    STANDARD_DOMAINS, fused_activation, layer_op, quantized_relu, quick_gelu,
)
from gradlint.onnx.provenance import find_folding
from gradlint.onnx.data_path import DataPath
from gradlint.onnx.streams import Flow, data_flow, feeding_inputs, stream_input

# The op tables live in ops.py; these names stay importable from here.
WEIGHTED = frozenset(LAYERS)
# The largest weight whose values are compared with others' (a recurrence's copies per step).
_MAX_CONTENT = 1 << 22


def _as_read(identity: bool | None, ref) -> InitSpec | None:
    """A recurrence weight's init as its values tell: the identity (an IRNN), 'unknown' when they
    were not read (GL003 refused its external data: the default draw cannot be told from a
    chosen one), else None (read, and no init the rules take for chosen)."""
    if identity is None:
        return InitSpec("unknown", (), ref)
    return InitSpec("eye", (), ref) if identity else None


@dataclass
class Unit:
    """One step of the data path: a single node, or a fused group of nodes."""

    members: tuple[int, ...]
    head: int  # the node that names the unit
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    ir: tuple[Node, ...] | None = None  # set for fused groups and the parts of a split node
    # The residual add of a node that also does other work (SkipLayerNormalization, FusedConv
    # with its Z input): read like an Add joining two paths.
    join: bool = False


def module_path(node_name: str, weight_name: str | None = None) -> str:
    """The PyTorch module path an exporter encoded: from the weight's name (`body.0.weight`) or the
    node's scope (`/enc.0/body/body.0/Gemm` -> `enc.0.body.0`); else the node name itself."""
    if weight_name and not weight_name.startswith("onnx::"):
        for suffix in (".weight", ".weight_orig", ".weight_v", ".embedding"):
            if weight_name.endswith(suffix) and len(weight_name) > len(suffix):
                return weight_name[: -len(suffix)]
    if node_name.startswith("/") and node_name.count("/") >= 2:
        path: list[str] = []
        for seg in node_name.strip("/").split("/")[:-1]:
            atoms = [a for a in seg.split(".") if a]
            if not atoms:
                continue
            # torch names a scope by its qualified name from the last non-numeric atom on
            # ('body.0' inside 'enc.0.body'): the atoms it repeats are merged, not appended.
            k = max((j for j, a in enumerate(path) if not a.isdigit()), default=-1)
            tail = path[k + 1:]
            if k >= 0 and atoms[0] == path[k] and atoms[1:1 + len(tail)] == tail:
                path = path[:k] + atoms
            else:
                path = path + atoms
        if path:
            return ".".join(path)
    return node_name


def torch_fans(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """torch.nn.init._calculate_fan_in_and_fan_out for a weight of this shape."""
    if len(shape) < 2:
        return None
    rf = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    return int(shape[1]) * rf, int(shape[0]) * rf


def _transposed_ratio(node, shape: tuple[int, ...]) -> float | None:
    """Param.signal_ratio of a ConvTranspose whose weight (C_in, C_out/group, k...) has this
    shape: an output sums C_in/group * k / stride**d terms, torch's fan_in counts C_out/group * k."""
    strides = attr(node, "strides", None)
    group = attr(node, "group", 1)
    dims = len(shape) - 2
    if strides is None:
        strides = [1] * dims
    if not isinstance(group, int) or group < 1 or len(strides) != dims or shape[1] < 1:
        return None
    step = math.prod(int(s) for s in strides)
    if step < 1:
        return None
    return shape[0] / (group * shape[1] * step)


class Lowering(Patterns):
    def __init__(self, index: GraphIndex, stats: dict[str, TensorStats], display: str) -> None:
        self.g = index
        self.stats = stats
        self.display = display
        self.nodes = index.nodes
        self._params: dict[int, Param | None] = {}
        # Quantized weight tensor -> (scale, zero point, axis) of its dequantisation.
        self.dequant: dict[str, tuple[str, str, int]] = {}
        self.folding = find_folding(index)
        self.path: DataPath | None = None  # set by network(): what the coverage report reads
        self.beside: list[DataPath] = []  # the paths of inputs that feed it (network(): _beside)

    # -- weights -------------------------------------------------------------------------------

    def weight_source(self, name: str) -> tuple[str, tuple[int, ...]] | None:
        """(tensor name, effective shape) of a static weight operand, through Identity/Cast/Transpose."""
        perm_total: list[int] | None = None
        for _ in range(16):
            t = self.g.initializer(name)
            if t is not None:
                shape = tuple(int(d) for d in t.dims)
                if perm_total is not None and len(perm_total) == len(shape):
                    shape = tuple(shape[p] for p in perm_total)
                return name, shape
            found = self.g.producer(name)
            if found is None:
                return None
            g, i = found
            node = g.nodes[i]
            if g.ops[i] == "Constant":
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is None:
                    return None
                shape = tuple(int(d) for d in value.dims)
                if perm_total is not None and len(perm_total) == len(shape):
                    shape = tuple(shape[p] for p in perm_total)
                return name, shape
            if g.ops[i] in ("Identity", "Cast") and node.input:
                name = node.input[0]
            elif g.ops[i] == "DequantizeLinear" and len(node.input) >= 2 and g.initializer(node.input[0]) is not None:
                # QDQ format: the weight is stored quantized; its statistics are the dequantised ones.
                self.dequant.setdefault(node.input[0], (node.input[1], node.input[2] if len(node.input) > 2 else "",
                                                        int(attr(node, "axis", 1))))
                name = node.input[0]
            elif g.ops[i] == "Transpose" and node.input:
                perm = attr(node, "perm")
                if perm is None:
                    return None
                perm = [int(p) for p in perm]
                perm_total = perm if perm_total is None else [perm[p] for p in perm_total]
                name = node.input[0]
            else:
                return None
        return None

    def measured(self, tensor: str, scale: float = 1.0, origin: GraphNode | None = None) -> InitSpec:
        st = self._stats_for(tensor)
        if st is None or st.mean is None or st.variance is None:
            return InitSpec("unknown", (), origin)
        return InitSpec("measured", (("mean", st.mean * scale), ("variance", st.variance * scale * scale)), origin)

    def _stats_for(self, name: str) -> TensorStats | None:
        for _ in range(16):
            if name in self.stats:
                return self.stats[name]
            if name in self.dequant and self.g.initializer(name) is not None:
                scale, zero, axis = self.dequant[name]
                st = dequantized_stats(self.g.initializer(name), self.g.value(scale),  # type: ignore[arg-type]
                                       self.g.value(zero) if zero else None, axis, self.g.loaded)
                self.stats[name] = st  # type: ignore[assignment]
                return st
            found = self.g.producer(name)
            if found is None:
                return None
            g, i = found
            node = g.nodes[i]
            if g.ops[i] in ("Identity", "Cast", "Transpose") and node.input:
                name = node.input[0]
            else:
                return None
        return None

    def param(self, i: int) -> Param | None:
        """The Param of a weighted node (MatMul/Gemm/Conv/ConvTranspose/Gather on a table), or None."""
        if i in self._params:
            return self._params[i]
        self._params[i] = p = self._param(i)
        return p

    def _param(self, i: int) -> Param | None:
        node = self.nodes[i]
        op = layer_op(self.g.ops[i])
        # Gemm and onnxruntime's FusedGemm/FusedMatMul scale and transpose by attributes.
        scaled = op == "Gemm" or self.g.ops[i] == f"{MS}:FusedMatMul"
        ins = list(node.input)
        if self.g.ops[i] in QUANTIZED_LAYERS:
            # QLinearMatMul/QLinearConv/QGemm: (x, x scale, x zero, w, w scale, w zero, ...).
            if len(ins) < 6 or self.g.initializer(ins[3]) is None:
                return None
            self.dequant.setdefault(ins[3], (ins[4], ins[5], QUANTIZED_LAYERS[self.g.ops[i]]))
            ins = [ins[0], ins[3]]
        ref = self.g.ref(i)
        if op in ("MatMul", "Gemm") and len(ins) >= 2:
            right = self.weight_source(ins[1]) if self.g.is_static(ins[1]) else None
            left = self.weight_source(ins[0]) if self.g.is_static(ins[0]) else None
            if (right is None) == (left is None):
                return None
            scale = 1.0
            if scaled:
                scale = float(attr(node, "alpha", 1.0))
            if right is not None:
                tensor, shape = right
                if len(shape) < 2:
                    return None
                trans = scaled and int(attr(node, "transB", 0)) == 1
                fan_in, fan_out = (shape[-1], shape[-2]) if trans else (shape[-2], shape[-1])
            else:
                tensor, shape = left  # type: ignore[misc]
                if len(shape) < 2:
                    return None
                trans = scaled and int(attr(node, "transA", 0)) == 1
                fan_in, fan_out = (shape[-2], shape[-1]) if trans else (shape[-1], shape[-2])
            bias = ins[2] if op == "Gemm" and len(ins) > 2 and ins[2] else None
            beta = float(attr(node, "beta", 1.0)) if op == "Gemm" else 1.0
            path = self._layer_name(node, ins[1] if right is not None else ins[0], tensor)
            return Param(
                name=path, op="linear", fan_in=int(fan_in), fan_out=int(fan_out),
                init=self.measured(tensor, scale, ref), origin=ref, attr=path.rsplit(".", 1)[-1],
                bias_init=self.measured(bias, beta, ref) if bias else None,
            )
        if op in ("Conv", "ConvTranspose") and len(ins) >= 2 and self.g.is_static(ins[1]):
            src = self.weight_source(ins[1])
            if src is None:
                return None
            tensor, shape = src
            fans = torch_fans(shape)
            if fans is None:
                return None
            dims = len(shape) - 2
            kind = "conv" if op == "Conv" else "conv_transpose"
            bias = ins[2] if len(ins) > 2 and ins[2] else None
            path = self._layer_name(node, ins[1], tensor)
            return Param(
                name=path, op=f"{kind}{dims}d", fan_in=fans[0], fan_out=fans[1],
                init=self.measured(tensor, 1.0, ref), origin=ref, attr=path.rsplit(".", 1)[-1],
                bias_init=self.measured(bias, 1.0, ref) if bias else None,
                signal_ratio=_transposed_ratio(node, shape) if op == "ConvTranspose" else 1.0,
            )
        if op == "Gather" and len(ins) >= 2 and self.g.is_static(ins[0]) and not self.g.is_static(ins[1]):
            src = self.weight_source(ins[0])
            if src is None or len(src[1]) != 2:
                return None
            tensor, shape = src
            fans = torch_fans(shape)
            path = self._layer_name(node, ins[0], tensor)
            return Param(
                name=path, op="embedding", fan_in=fans[0], fan_out=fans[1],  # type: ignore[index]
                init=self.measured(tensor, 1.0, ref), origin=ref, attr=path.rsplit(".", 1)[-1],
            )
        return None

    def _layer_name(self, node, operand: str, tensor: str) -> str:
        # The module path dynamo recorded first (its weights may be anonymous `val_3` constants);
        # then the operand's own name: torch names deduplicated weights by an Identity whose
        # output keeps the second layer's parameter name.
        i = self.g.producers.get(node.output[0]) if node.output else None
        scope = self.g.scope(i) if i is not None else None
        if scope:
            return scope
        for name in (operand, tensor):
            path = module_path("", name)
            if path != name and path:
                return path
        return module_path(node.name) if node.name else f"{node.op_type}"  # unnamed: origin has the index

    def recurrent(self, i: int) -> Recurrent:
        node = self.nodes[i]
        cell = RECURRENT[self.g.ops[i]]
        acts = [a.decode() if isinstance(a, bytes) else str(a) for a in (attr(node, "activations") or [])]
        # The activation that shapes the recurrence: RNN's only one; LSTM's and GRU's candidate.
        pos = 0 if cell == "rnn" else 1
        nonlin = acts[pos].lower() if len(acts) > pos else "tanh"
        hidden = attr(node, "hidden_size")
        ins = list(node.input)
        ref = self.g.ref(i)
        # Only an identity recurrence (IRNN), or weights not read, are recorded: the architecture
        # rules read any other explicit weight_hh init as a deliberate choice, and measured
        # weights are not one.
        init = None
        if cell == "rnn" and len(ins) > 2 and ins[2]:
            init = _as_read(self._is_identity_stack(ins[2]), ref)
        return Recurrent(name=module_path(node.name), cell=cell, nonlinearity=nonlin,
                         hidden=int(hidden) if hidden is not None else None, num_layers=1, origin=ref,
                         weight_hh_init=init)

    def _is_identity_stack(self, name: str) -> bool | None:
        """Whether a recurrence weight (directions × hidden × hidden) is the identity in each
        direction; None when its values were not read (external data refused or over budget)."""
        t = self.g.initializer(name)
        if t is None or len(t.dims) != 3 or t.dims[1] != t.dims[2] or t.dims[1] > 4096:
            return False
        from gradlint.onnx.load import small_value

        value = small_value(t, self.g.loaded, limit=int(np.prod(t.dims)))
        if value is None:
            return None
        eye = np.eye(int(t.dims[1]), dtype=value.dtype)
        return all(np.array_equal(value[d], eye) for d in range(value.shape[0]))

    # -- units -----------------------------------------------------------------------------------

    def node_name(self, i: int) -> str:
        """The module path of node i: dynamo's recorded scope, else the TorchScript node name."""
        node = self.nodes[i]
        scope = self.g.scope(i)
        if scope:
            return scope
        if node.name.startswith("/"):
            return module_path(node.name)
        out = node.output[0] if node.output else ""
        # onnxruntime renames fused nodes but keeps torch's output names ('/layers.0/norm1/...').
        if out.startswith("/"):
            return module_path(out)
        return module_path(node.name) if node.name else self.g.ref(i).name

    def node_ir(self, i: int) -> list[Node]:
        """The IR of one node on the data path."""
        node = self.nodes[i]
        op = self.g.ops[i]
        ref = self.g.ref(i)
        name = self.node_name(i)
        if op in SKIP:
            return []
        if op in WEIGHTED:
            p = self.param(i)
            if p is not None:
                relu = [Activation(name=name, fn="relu", origin=ref)] if quantized_relu(self.g, i) else []
                return [p] + self.folded_norm(i, p) + self._fused_activation(i, name, ref) + relu
        if op in ACTIVATIONS:
            param = None
            if op in ACT_PARAM:
                key, default = ACT_PARAM[op]
                # attributes are float32: 0.2 arrives as 0.20000000298, print-worthy after rounding
                param = float(f"{float(attr(node, key, default)):.7g}")
            return [Activation(name=name, fn=ACTIVATIONS[op], param=param, origin=ref)]
        if op == f"{MS}:QuickGelu":
            fn = quick_gelu(node)
            if fn is None:
                return [Opaque(name=name, what="QuickGelu with an alpha that is neither SiLU's nor GELU's", origin=ref)]
            return [Activation(name=name, fn=fn, origin=ref)]
        if op in NORMS:
            out: list[Node] = [Norm(name=name, kind=NORMS[op], origin=ref)]
            if op == f"{MS}:GroupNorm" and int(attr(node, "activation", 0)) == 1:
                out.append(Activation(name=name, fn="silu", origin=ref))
            return out
        if op in RECURRENT:
            return [self.recurrent(i)]
        if op in REFUSED:
            return [Opaque(name=name, what=REFUSED[op], origin=ref)]
        if node.domain not in STANDARD_DOMAINS:
            if op in PASSTHROUGH:
                return [Passthrough(name=name, what=node.op_type, origin=ref)]
            return [Opaque(name=name, what=f"{_op_text(op)} (not modelled)", origin=ref)]
        if op == "Clip":
            fn = self._clip_activation(i)
            if fn:
                return [Activation(name=name, fn=fn, origin=ref)]
            return [Opaque(name=name, what="Clip with bounds that are not an activation's", origin=ref)]
        dyn = [x for x in node.input if x and not self.g.is_static(x)]
        if op in ("Add", "Sub") and len(dyn) == 1:
            return []  # a bias: no change of gradient scale
        if op in ("Mul", "Div") and len(dyn) == 1:
            other = next(x for x in node.input if x and x not in dyn)
            c = self.g.scalar(other)
            if c is not None and c == 1.0:
                return []
            return [Opaque(name=name, what=f"{op} by a constant", origin=ref)]
        if op == "Gather" and not self.g.is_static(node.input[0]):
            return [Passthrough(name=name, what=op, origin=ref)]
        if op == "QuantizeLinear" and quantized_relu(self.g, i):
            return [Passthrough(name=name, what=op, origin=ref), Activation(name=name, fn="relu", origin=ref)]
        if op in PASSTHROUGH and op != "Gather":
            return [Passthrough(name=name, what=op.lower() if op == "LogSoftmax" else op, origin=ref)]
        return [Opaque(name=name, what=f"ONNX {op}", origin=ref)]

    def _fused_activation(self, i: int, name: str, ref: GraphNode) -> list[Node]:
        """The activation onnxruntime fused into a FusedGemm/FusedConv (its `activation` attribute)."""
        if self.nodes[i].domain in STANDARD_DOMAINS:
            return []
        act = fused_activation(self.nodes[i])
        if act is None:
            return []
        if isinstance(act, str):
            return [Opaque(name=name, what=f"fused activation {act} (not modelled)", origin=ref)]
        return [Activation(name=name, fn=act[0], param=act[1], origin=ref)]

    def folded_norm(self, i: int, p: Param) -> list[Node]:
        """A Norm for a BatchNorm the exporter folded into layer i's weights (a norm in training)."""
        if i in self.folding.folded:
            return [Norm(name=self.folding.folded[i] or f"{p.name} (folded BatchNorm)", kind="batch",
                         origin=self.g.ref(i))]
        return []

    def _clip_activation(self, i: int) -> str | None:
        node = self.nodes[i]
        lo = hi = None
        if len(node.input) > 1 and node.input[1]:
            lo = self.g.scalar(node.input[1])
        if len(node.input) > 2 and node.input[2]:
            hi = self.g.scalar(node.input[2])
        if self.g.opset < 11:
            lo, hi = attr(node, "min"), attr(node, "max")
        if lo == 0.0 and hi == 6.0:
            return "relu6"
        if lo == 0.0 and (hi is None or math.isinf(hi)):
            return "relu"
        if lo == -1.0 and hi == 1.0:
            return "hardtanh"
        return None

    # -- fusion of multi-node patterns ------------------------------------------------------------

    def fuse(self) -> list[Unit]:
        taken: set[int] = set()
        fused: list[Unit] = []
        matchers: list[Callable[[int], tuple[list[int], str, str, Node] | None]] = [
            self._match_layernorm, self._match_rmsnorm, self._match_gelu_erf, self._match_gelu_tanh,
            self._match_softplus, self._match_gated,
        ]
        for i in range(len(self.nodes)):
            if i in taken:
                continue
            for match in matchers:
                found = match(i)
                if found is None:
                    continue
                members, x, out, ir = found
                if taken.intersection(members) or not self._closed(members, out):
                    continue
                taken.update(members)
                members = sorted(set(members))
                fused.append(Unit(tuple(members), head=members[-1], inputs=(x,), outputs=(out,), ir=(ir,)))
                break
        for i in range(len(self.nodes)):
            if i not in taken:
                parts = self._split(i)
                if parts:
                    taken.add(i)
                    fused.extend(parts)
        units = fused + [
            Unit((i,), i, self.g.node_inputs(i), tuple(o for o in self.nodes[i].output if o))
            for i in range(len(self.nodes)) if i not in taken
        ]
        # Stable: the parts of a split node keep their order.
        units.sort(key=lambda u: u.members[-1])
        return units

    def _split(self, i: int) -> list[Unit] | None:
        """A node that adds a residual and does more, as a sequence of units: onnxruntime's
        SkipLayerNormalization (add, then norm) and FusedConv with its Z input (conv, add,
        activation). The sum gets a name of its own when the graph does not write it."""
        node = self.nodes[i]
        op = self.g.ops[i]
        ins = list(node.input)
        ref = self.g.ref(i)
        name = self.node_name(i)
        if op in SKIP_NORMS and len(ins) >= 2 and ins[0] and ins[1]:
            if name == ref.name and module_path(ins[1]) != ins[1]:
                # Unscoped (the last norm writes the graph output): the block is the branch's parent.
                name = module_path(ins[1]).rsplit(".", 1)[0] + ".norm"
            total = node.output[3] if len(node.output) > 3 and node.output[3] else f"{ref.name}#sum"
            outs = tuple(o for o in node.output[:3] if o)
            return [Unit((i,), i, (ins[0], ins[1]), (total,), ir=(), join=True),
                    Unit((i,), i, (total,), outs, ir=(Norm(name=name, kind=SKIP_NORMS[op], origin=ref),))]
        if op == f"{MS}:FusedConv" and len(ins) > 3 and ins[3] and ins[0]:
            p = self.param(i)
            if p is None:
                return None
            conv, total = f"{ref.name}#conv", f"{ref.name}#sum"
            outs = tuple(o for o in node.output if o)
            return [Unit((i,), i, (ins[0],), (conv,), ir=tuple([p] + self.folded_norm(i, p))),
                    Unit((i,), i, (conv, ins[3]), (total,), ir=(), join=True),
                    Unit((i,), i, (total,), outs, ir=tuple(self._fused_activation(i, name, ref)))]
        return None

    # -- the data path --------------------------------------------------------------------------

    def network(self) -> Network:
        units = self.fuse()
        flow = data_flow(units, self.g.inputs, self._is_shape)
        # The residual stream's input (streams.py); else the input feeding the most layers
        out = next((o for o in self.g.outputs if o in flow.dynamic), None)
        stream = stream_input(flow, out, self._is_add) if out is not None else None
        main_in = stream or self._most_layers_input(units)
        params = tuple(p for p in (self.param(i) for i, k in enumerate(self.g.ops) if k in WEIGHTED) if p)
        recurrents = tuple(self.recurrent(i) for i, k in enumerate(self.g.ops) if k in RECURRENT)
        recurrents += tuple(self.unrolled_recurrences())
        nodes: tuple[Node, ...] = ()
        if main_in is not None:
            self.path = DataPath(self, units, main_in)
            main = self.path.lower()
            # Other inputs' layers only beside a stream: two towers joined at the output
            # (a Siamese pair, CLIP) have none, and each tower's findings would come twice.
            nodes = tuple((self._beside(units, flow, stream) if stream else []) + main)
        return Network(name=self.g.name or "graph", path=self.display, nodes=nodes, origin=None,
                       params=params, recurrents=recurrents, forward_known=main_in is not None)

    def _beside(self, units: list[Unit], flow: Flow, main_in: str) -> list[Node]:
        """The paths of the other inputs whose layers feed the main path (an encoder-decoder's
        encoder, which the decoder reads in its cross-attentions), followed by the main path's
        input mark (INPUT_WHAT): they come first, as the source reader reads `nn.Transformer`
        (encoder blocks, then decoder blocks), and no chain runs from one into the other."""
        main = self.path
        if main is None or not main.ok:
            return []
        on_main = [k for k in main.succ if k >= 0]
        out: list[Node] = []
        for name, values in feeding_inputs(flow, main_in, on_main, main.dynamic, self._has_layer).items():
            side = DataPath(self, units, name, exits=values, skip=frozenset(main.reached), into=main_in)
            if not side.ok:
                continue
            nodes = side.lower()
            # only a fan-out of the input into the main path (a decoder's memory read by each
            # block's key and value projections): nothing of its own to model
            if all(isinstance(n, (Opaque, Passthrough)) for n in nodes):
                continue
            self.beside.append(side)
            out.extend(([Passthrough(name=name, what=INPUT_WHAT)] if out else []) + nodes)
        return out + [Passthrough(name=main_in, what=INPUT_WHAT)] if out else []

    def unrolled_recurrences(self) -> list[Recurrent]:
        """nn.RNN as the dynamo exporter writes it: one MatMul per time step, all with the same
        hidden-to-hidden weight, each reading the previous step's activation. A weight shared by
        layers is a recurrence when some step's activation is fed (through adds) by a product
        with that weight and feeds the next one."""
        users: dict[str, list[int]] = {}
        for i, key in enumerate(self.g.ops):
            if layer_op(key) in ("MatMul", "Gemm"):
                tensor = self._square_weight(i)
                if tensor is not None:
                    users.setdefault(tensor, []).append(i)
        groups = [(tensor, steps) for tensor, steps in users.items() if len(steps) >= 2]
        # For some sizes the dynamo exporter writes a copy of W_hh per time step, each its own
        # tensor (hidden 48 and 64 did, 16 and 32 did not): steps read through an activation are
        # grouped by the weight's value too (only then: cloned blocks share values on purpose,
        # and the recurrence test below tells them apart anyway)
        by_value: dict[tuple, list[tuple[str, int]]] = {}
        for tensor, steps in users.items():
            if len(steps) == 1 and self._activation_behind(steps[0]) is not None:
                key = self._content_key(tensor)
                if key is not None:
                    by_value.setdefault(key, []).append((tensor, steps[0]))
        groups += [(copies[0][0], [i for _t, i in copies]) for copies in by_value.values() if len(copies) >= 2]
        found: list[Recurrent] = []
        for tensor, steps in groups:
            fn = None
            for j in steps:
                act = self._activation_behind(j)
                terms = self._terms_into(act) if act is not None else []
                # h_t = act(W_hh h_{t-1} + W_ih x_t): the product with the shared weight and an input
                # term. Without the input term it is a deep stack of (cloned) layers, not a recurrence.
                if set(terms) & set(steps) and len(terms) >= 2:
                    fn = ACTIVATIONS[self.g.ops[act]]
                    break
            if fn is None:
                continue
            first = steps[0]
            p = self.param(first)
            init = None
            src = self.weight_source(tensor)
            if src is not None:
                init = _as_read(self._is_identity_matrix(src[0]), self.g.ref(first))
            found.append(Recurrent(name=self.g.scope(first) or (p.name if p else self.g.ref(first).name), cell="rnn",
                                   nonlinearity=fn, hidden=p.fan_in if p else None, origin=self.g.ref(first),
                                   weight_hh_init=init))
        return found

    def _content_key(self, name: str) -> tuple | None:
        """(shape, digest of the values) of a static weight, to tell copies of one tensor; None
        when its values are not at hand (external data not read, over MAX_CONTENT elements)."""
        import hashlib

        from gradlint.onnx.load import small_value

        src = self.weight_source(name)
        t = self.g.initializer(src[0]) if src is not None else None
        if t is None or int(np.prod(t.dims)) > _MAX_CONTENT:
            return None
        if t.raw_data:
            data = t.raw_data
        else:
            value = small_value(t, self.g.loaded, limit=_MAX_CONTENT)
            if value is None:
                return None
            data = value.tobytes()
        return src[1], t.data_type, hashlib.sha256(data).hexdigest()

    def _square_weight(self, i: int) -> str | None:
        """The operand name of a MatMul/Gemm's static square weight. The name, not the tensor
        behind it: torch deduplicates equal weights of distinct layers (cloned blocks) into one
        tensor read through Identity nodes named after each layer's own parameter."""
        node = self.nodes[i]
        for x in node.input[:2]:
            if x and self.g.is_static(x):
                src = self.weight_source(x)
                if src is not None and len(src[1]) == 2 and src[1][0] == src[1][1]:
                    return x
                return None
        return None

    def _activation_behind(self, j: int) -> int | None:
        """The activation node that computes the dynamic operand of layer j, through reshapes."""
        for x in self.nodes[j].input[:2]:
            if x and not self.g.is_static(x):
                found = self.g.through(x)
                if found is not None and found[0] is self.g and self.g.ops[found[1]] in ACTIVATIONS:
                    return found[1]
                return None
        return None

    def _terms_into(self, act: int) -> list[int]:
        """The nodes whose outputs are summed into act's input (through at most four Adds)."""
        out: list[int] = []
        frontier = [x for x in self.nodes[act].input[:1] if x]
        for _ in range(4):
            nxt: list[str] = []
            for name in frontier:
                k = self.g.producers.get(name)
                if k is None:
                    continue
                if self.g.ops[k] == "Add":
                    nxt.extend(x for x in self.nodes[k].input if x and not self.g.is_static(x))
                else:
                    out.append(k)
            frontier = nxt
        return out

    def _is_identity_matrix(self, tensor: str) -> bool | None:
        """Whether a square weight is the identity; None when its values were not read."""
        t = self.g.initializer(tensor)
        if t is None or len(t.dims) != 2 or t.dims[0] != t.dims[1] or t.dims[0] > 4096:
            return False
        from gradlint.onnx.load import small_value

        value = small_value(t, self.g.loaded, limit=int(np.prod(t.dims)))
        if value is None:
            return None
        # A transposed identity is the identity: no need to know which way the exporter stored it.
        return bool(np.array_equal(value, np.eye(int(t.dims[0]), dtype=value.dtype)))

    def _is_shape(self, u: Unit) -> bool:
        return self.g.ops[u.head] in SHAPE_OPS and len(u.members) == 1

    def _is_add(self, u: Unit) -> bool:
        return u.join or (u.ir is None and self.g.ops[u.head] == "Add")

    def _has_layer(self, u: Unit) -> bool:
        if u.ir is not None:
            return any(isinstance(n, Param) for n in u.ir)
        return self.g.ops[u.head] in WEIGHTED and self.param(u.head) is not None

    def _reach(self, units: list[Unit], start: str, skip: frozenset[int] = frozenset()) -> tuple[set[str], list[int]]:
        dynamic = {start}
        reached: list[int] = []
        for k, u in enumerate(units):
            if self._is_shape(u) or k in skip:
                continue
            if any(x in dynamic for x in u.inputs):
                dynamic.update(u.outputs)
                reached.append(k)
        return dynamic, reached

    def _most_layers_input(self, units: list[Unit]) -> str | None:
        """The graph input that feeds the most weighted layers (the data, not a mask or a length):
        the main input when no residual stream can be told apart (a decoder's memory reaches more
        layers than its target, whose stream is the one that matters: streams.py)."""
        best, best_score = None, -1
        for name in self.g.inputs:
            _, reached = self._reach(units, name)
            score = sum(1 for k in reached for m in units[k].members if layer_op(self.g.ops[m]))
            if score > best_score:
                best, best_score = name, score
        return best


def _op_text(op: str) -> str:
    domain, _, name = op.rpartition(":")
    return f"{domain} op {name}" if domain else f"ONNX {op}"


def lower_graph(index: GraphIndex, stats: dict[str, TensorStats], display: str) -> Network:
    return Lowering(index, stats, display).network()


__all__ = ["lower_graph", "module_path", "torch_fans", "Lowering"]
