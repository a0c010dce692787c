"""GraphIndex: the lookup tables of one ONNX graph (producers, consumers, initializers,
constants, opset), built once per model and shared by the lowering and the hazard patterns.
Subgraphs of If/Loop/Scan get their own index whose lookups fall back to the enclosing graph.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper

from gradlint.findings import GraphNode
from gradlint.onnx.load import LoadedModel, small_value
from gradlint.onnx.ops import op_key
from gradlint.onnx.provenance import node_scope, node_source

# Ops that move or relabel values without changing them: patterns look through them.
TRANSPARENT = frozenset({
    "Identity", "Cast", "CastLike", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Flatten",
    "Expand", "Dropout",
})
# Outputs are metadata of their input, not data derived from it.
SHAPE_OPS = frozenset({"Shape", "Size"})


class GraphIndex:
    """Lookups of one graph. `prefix` names a subgraph ("Loop_3/body") in node references."""

    def __init__(self, graph: onnx.GraphProto, *, opset: int, loaded: LoadedModel | None,
                 parent: "GraphIndex | None" = None, prefix: str = "") -> None:
        self.graph = graph
        self.opset = opset
        self.loaded = loaded
        self.parent = parent
        self.prefix = prefix
        self.name = graph.name
        self.nodes: list[onnx.NodeProto] = list(graph.node)
        # Domain-qualified op of each node (`Relu`, `com.microsoft:FusedGemm`): patterns match these,
        # never op_type alone.
        self.ops: list[str] = [op_key(n) for n in self.nodes]
        self.producers: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        self.initializers: dict[str, TensorProto] = {t.name: t for t in graph.initializer}
        self.inputs: list[str] = [i.name for i in graph.input if i.name not in self.initializers]
        self._declared_inputs = frozenset(i.name for i in graph.input)
        self.outputs: list[str] = [o.name for o in graph.output]
        self.subgraphs: list[tuple[int, str, GraphIndex]] = []
        # Names a subgraph reads from enclosing scopes, per node: implicit inputs of If/Loop/Scan.
        self.captures: dict[int, tuple[str, ...]] = {}
        self._values: dict[str, np.ndarray | None] = {}
        for i, node in enumerate(self.nodes):
            for out in node.output:
                if out:
                    self.producers[out] = i
            for inp in node.input:
                if inp:
                    self.consumers.setdefault(inp, []).append(i)
        for i, node in enumerate(self.nodes):
            caps: list[str] = []
            for attr in node.attribute:
                graphs = [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)
                for g in graphs:
                    sub = GraphIndex(g, opset=opset, loaded=loaded, parent=self,
                                     prefix=f"{self.ref(i).name}/{attr.name}/")
                    self.subgraphs.append((i, attr.name, sub))
                    caps.extend(sub.free_names())
            if caps:
                self.captures[i] = tuple(dict.fromkeys(caps))
                for name in self.captures[i]:
                    if i not in self.consumers.setdefault(name, []):
                        self.consumers[name].append(i)
        self._static: set[str] | None = None

    @property
    def static(self) -> set[str]:
        # Lazy: a subgraph's answer needs its parent's, which needs the subgraphs built first.
        if self._static is None:
            self._static = self._static_values()
        return self._static

    # -- references --------------------------------------------------------------------------

    def ref(self, i: int) -> GraphNode:
        node = self.nodes[i]
        name = node.name or f"{node.op_type}_{i}"
        scope = node_scope(node)
        if scope and not name.startswith("/"):
            # A dynamo node ('node_MatMul_1') named like TorchScript's: '/body.0/node_MatMul_1', so
            # the finding shows the module and the probe's join reads it the same way.
            name = f"/{scope}/{name}"
        return GraphNode(self.prefix + name, node.op_type, i, source=node_source(node) or "")

    def scope(self, i: int) -> str | None:
        """The module path the exporter recorded for node i (dynamo metadata), else None."""
        return node_scope(self.nodes[i])

    def node_inputs(self, i: int) -> tuple[str, ...]:
        """Inputs of node i, implicit subgraph captures included."""
        return tuple(x for x in self.nodes[i].input if x) + self.captures.get(i, ())

    def free_names(self) -> list[str]:
        """Names used here (or in nested subgraphs) but defined in an enclosing graph."""
        defined = set(self.producers) | set(self.initializers) | self._declared_inputs
        free: list[str] = []
        for i, node in enumerate(self.nodes):
            for name in node.input:
                if name and name not in defined:
                    free.append(name)
        for _, _, sub in self.subgraphs:
            free.extend(n for n in sub.free_names() if n not in defined)
        return free

    def walk(self) -> Iterator["GraphIndex"]:
        """This graph and every subgraph, depth first."""
        yield self
        for _, _, sub in self.subgraphs:
            yield from sub.walk()

    # -- values ------------------------------------------------------------------------------

    def producer(self, name: str) -> tuple["GraphIndex", int] | None:
        """(graph, node index) of the node that computes name, looking in enclosing graphs."""
        if name in self.producers:
            return self, self.producers[name]
        if name in self.initializers or name in self._declared_inputs:
            return None
        return self.parent.producer(name) if self.parent else None

    def initializer(self, name: str) -> TensorProto | None:
        if name in self.initializers:
            return self.initializers[name]
        if name in self.producers:
            return None
        return self.parent.initializer(name) if self.parent else None

    def is_static(self, name: str) -> bool:
        """True when the value depends on no graph input (weights, constants, shapes)."""
        if name in self.static:
            return True
        if name in self.producers or name in self.inputs:
            return False
        if self.parent is not None:
            return self.parent.is_static(name)
        return name in self.initializers

    def value(self, name: str) -> np.ndarray | None:
        """The value of a small constant (an initializer or a Constant node), else None."""
        if name in self._values:
            return self._values[name]
        self._values[name] = None  # breaks cycles in malformed graphs
        result: np.ndarray | None = None
        if name in self.initializers:
            result = small_value(self.initializers[name], self.loaded)
        elif name in self.producers:
            node = self.nodes[self.producers[name]]
            if self.ops[self.producers[name]] == "Constant":
                result = self._constant_value(node)
            elif self.ops[self.producers[name]] in ("Identity", "Cast") and node.input:
                result = self.value(node.input[0])
                if result is not None and node.op_type == "Cast":
                    to = _attr(node, "to")
                    try:
                        result = result.astype(helper.tensor_dtype_to_np_dtype(int(to))) if to is not None else result
                    except (KeyError, TypeError, ValueError):
                        result = None
        elif self.parent is not None and name not in self.inputs:
            result = self.parent.value(name)
        self._values[name] = result
        return result

    def scalar(self, name: str) -> float | None:
        """A constant with exactly one element, as a float."""
        v = self.value(name)
        if v is None or v.size != 1:
            return None
        try:
            return float(v.reshape(-1)[0])
        except (TypeError, ValueError):
            return None

    def _constant_value(self, node: onnx.NodeProto) -> np.ndarray | None:
        for attr in node.attribute:
            if attr.name == "value":
                return small_value(attr.t, self.loaded)
            if attr.name == "value_float":
                return np.array(attr.f, dtype=np.float32)
            if attr.name == "value_floats":
                return np.array(list(attr.floats), dtype=np.float32)
            if attr.name == "value_int":
                return np.array(attr.i, dtype=np.int64)
            if attr.name == "value_ints":
                return np.array(list(attr.ints), dtype=np.int64)
        return None

    def through(self, name: str) -> tuple["GraphIndex", int] | None:
        """The producer of name, looking through ops that only move or relabel values."""
        seen = 0
        found = self.producer(name)
        while found is not None and seen < 64:
            g, i = found
            node = g.nodes[i]
            if g.ops[i] not in TRANSPARENT or not node.input:
                return found
            found = g.producer(node.input[0])
            seen += 1
        return found

    def _static_values(self) -> set[str]:
        static = set(self.initializers)
        inputs = set(self.inputs)
        for i, node in enumerate(self.nodes):
            if self.ops[i] in SHAPE_OPS:
                static.update(o for o in node.output if o)
                continue
            ins = self.node_inputs(i)
            if all(x in static or (x not in inputs and x not in self.producers and self._outer_static(x))
                   for x in ins):
                # Random generators have no inputs but their output is not a constant.
                if not node.op_type.startswith("Random"):
                    static.update(o for o in node.output if o)
        return static

    def _outer_static(self, name: str) -> bool:
        if self.parent is None:
            return name in self.initializers
        return self.parent.is_static(name)


def attr(node: onnx.NodeProto, name: str, default=None):
    return _attr(node, name, default)


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def default_opset(model: onnx.ModelProto) -> int:
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    return 0
