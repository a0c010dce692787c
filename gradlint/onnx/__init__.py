"""The ONNX front-end: safe loading, the GraphIndex, lowering to the model IR, graph hazards and
exact weight statistics, all turned into one file's FileFacts."""

from __future__ import annotations

import os
from pathlib import Path

from gradlint.facts.graph import GraphFacts, WeightStats
from gradlint.findings import GraphNode, InputError


def extract_onnx(path: Path, display: str, data: bytes | None = None):
    """FileFacts of one `.onnx` (or ONNX text `.onnx.txt`) file, or of its bytes when the caller
    read them already. Bad input becomes InputErrors ('unreadable_model', 'unsafe_external_data')."""
    from gradlint.facts.files import FileFacts
    from gradlint.onnx.graph import GraphIndex, default_opset
    from gradlint.onnx.hazards import find_hazards
    from gradlint.onnx.load import ModelError, check_structure, decode, external_locations, sort_nodes, vet_external
    from gradlint.onnx.lower import lower_graph
    from gradlint.onnx.provenance import find_folding

    errors: list[InputError] = []
    depends: tuple[str, ...] = ()
    try:
        model = decode(path, data)
        # Every file the model names, vetted or refused: the cache entry depends on all of them.
        depends = external_locations(model)
        loaded = vet_external(model, os.path.dirname(os.path.abspath(path)))
        errors.extend(InputError("unsafe_external_data", msg) for msg in loaded.refused)
        sort_nodes(model.graph)
        check_structure(model)
        index = GraphIndex(model.graph, opset=default_opset(model), loaded=loaded)
        weights, stats = _weight_stats(index, loaded)
        network = lower_graph(index, stats, display)
        hazards = tuple(find_hazards(index))
    except ModelError as exc:
        errors.append(InputError(exc.kind, exc.message))
        return FileFacts(path=display, kind="onnx", input_errors=tuple(_dedupe(errors)), depends=depends)
    maybe_folded = frozenset(index.ref(i).name for i in find_folding(index).unknown)
    graph = GraphFacts(opset=index.opset, hazards=hazards, weights=tuple(weights), weights_read=not loaded.refused,
                       maybe_folded=maybe_folded)
    return FileFacts(path=display, kind="onnx", networks=(network,), graph=graph,
                     input_errors=tuple(_dedupe(errors)), depends=depends, partial=_unread(loaded))


def _unread(loaded) -> str | None:
    """Why some weights were not read, when the model's external data is past the bytes read for
    one model (load.MAX_EXTERNAL_BYTES)."""
    from gradlint.onnx.load import MAX_EXTERNAL_BYTES, tensors_named

    if not loaded.unread:
        return None
    one = len(loaded.unread) == 1
    return (f"the external data of {tensors_named(loaded.unread)} was not read: past the "
            f"{_size(MAX_EXTERNAL_BYTES)} read for one model, so {'its' if one else 'their'} weight statistics "
            "are unknown")


def _size(n: int) -> str:
    return f"{n >> 30} GiB" if n >= 1 << 30 and not n % (1 << 30) else f"{n} bytes"


def _dedupe(errors: list[InputError]) -> list[InputError]:
    return list(dict.fromkeys(errors))


def _weight_stats(index, loaded):
    """Statistics of every float tensor, one tensor in memory at a time, tagged with its role."""
    from gradlint.onnx.load import tensor_stats
    from gradlint.onnx.lower import WEIGHTED, Lowering, module_path
    from gradlint.onnx.ops import layer_op

    low = Lowering(index, {}, "")
    # tensor name -> (role, layer, node, order) for the weight operand of each weighted node
    roles: dict[str, tuple[str, str, GraphNode, int]] = {}
    for i, node in enumerate(index.nodes):
        if index.ops[i] not in WEIGHTED:
            continue
        p = low.param(i)
        if p is None:
            continue
        operand = _weight_operand(low, i)
        if operand is not None and operand not in roles:
            roles[operand] = (p.op, p.name, index.ref(i), i)
        if layer_op(index.ops[i]) in ("Gemm", "Conv", "ConvTranspose") and len(node.input) > 2 and node.input[2]:
            bias = low.weight_source(node.input[2])
            if bias is not None and bias[0] not in roles:
                roles[bias[0]] = ("bias", p.name, index.ref(i), i)
    out = []
    stats = {}
    regions: dict = {}  # (tensor_stats' memo: each external-data region read once)
    for g in index.walk():
        tensors = [(t.name, t, None) for t in g.graph.initializer]
        for i, node in enumerate(g.nodes):
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value" and node.output:
                        tensors.append((node.output[0], a.t, g.ref(i)))
        for name, tensor, const_ref in tensors:
            st = tensor_stats(tensor, loaded, name=name, memo=regions)
            if st is None:
                continue
            if g is index:
                stats[name] = st
            role, layer, ref, order = roles.get(name, ("other", "", None, -1)) if g is index else ("other", "", None, -1)
            if ref is None:
                ref = const_ref or _first_consumer(g, name)
                order = ref.index if ref is not None else -1
            out.append(WeightStats(name=name, shape=st.shape, dtype=st.dtype, count=st.count, nan=st.nan,
                                   posinf=st.posinf, neginf=st.neginf, mean=st.mean, std=st.std, role=role,
                                   layer=layer or module_path("", name), node=ref, order=order,
                                   consumers=_consumer_ops(g, name)))
    return out, stats


_RELAY = frozenset({"Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Expand", "Slice", "Transpose"})


def _consumer_ops(g, name: str, depth: int = 0) -> tuple[str, ...]:
    ops: list[str] = []
    for i in g.consumers.get(name, ()):
        node = g.nodes[i]
        if node.op_type in _RELAY and depth < 4 and node.output:
            ops.extend(_consumer_ops(g, node.output[0], depth + 1) or (node.op_type,))
        else:
            ops.append(node.op_type)
    return tuple(dict.fromkeys(ops))


def _weight_operand(low, i: int) -> str | None:
    from gradlint.onnx.ops import QUANTIZED_LAYERS

    node = low.nodes[i]
    if low.g.ops[i] in QUANTIZED_LAYERS:
        return None  # an integer weight: no float statistics for GL5xx
    cands = [node.input[0]] if low.g.ops[i] == "Gather" else list(node.input[:2])
    for x in cands:
        if x and low.g.is_static(x):
            src = low.weight_source(x)
            if src is not None:
                return src[0]
    return None


def _first_consumer(g, name: str) -> GraphNode | None:
    cons = g.consumers.get(name)
    return g.ref(cons[0]) if cons else None


__all__ = ["extract_onnx", "GraphFacts", "WeightStats"]
