"""Where an ONNX node came from, as the exporter recorded it: the module path and source line torch's
dynamo exporter stores in each node's metadata, and whether a BatchNorm was folded into a layer's
weights (which the inference exporters do, so a normalised CNN looks like a plain conv chain).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

import onnx

from gradlint.onnx.ops import layer_op, op_key

SCOPES = "pkg.torch.onnx.name_scopes"
STACK = "pkg.torch.onnx.stack_trace"
HIERARCHY = "pkg.torch.onnx.class_hierarchy"
NAMESPACE = "namespace"
RULE = "pkg.onnxscript.rewriter.rule_name"

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
# Frames inside torch itself (the module machinery, F.linear): the model's line is the innermost
# frame outside it.
_TORCH_FRAME = re.compile(r"[\\/](site|dist)-packages[\\/]torch[\\/]|^<")
_BATCHNORM = re.compile(r"batchnorm|batch_norm", re.IGNORECASE)


def metadata(node: onnx.NodeProto) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props}


def node_scope(node: onnx.NodeProto) -> str | None:
    """The module path of the module that produced the node: the last module of dynamo's
    name_scopes (`['', 'body', 'body.0', 'linear']` -> `body.0`; the last entry names the op)."""
    scopes = _scopes(node)
    if scopes is None or len(scopes) < 2:
        return None
    return scopes[-2]


def _scopes(node: onnx.NodeProto) -> list[str] | None:
    for p in node.metadata_props:
        if p.key == SCOPES:
            if len(p.value) > 20000:
                return None
            try:
                value = ast.literal_eval(p.value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return list(value)
            return None
    return None


def node_source(node: onnx.NodeProto) -> str | None:
    """`path.py:LINE` of the innermost frame of the node's recorded stack trace outside torch."""
    for p in node.metadata_props:
        if p.key == STACK:
            found = None
            for m in _FRAME.finditer(p.value[:200000]):
                if not _TORCH_FRAME.search(m.group(1)):
                    found = f"{m.group(1)}:{m.group(2)}"
            return found
    return None


def aten_op(node: onnx.NodeProto) -> str | None:
    """The torch op the dynamo exporter decomposed into this node (`aten.log_sigmoid`), from the
    last entry of its namespace metadata; None without one."""
    namespace = metadata(node).get(NAMESPACE)
    if not namespace:
        return None
    last = namespace.rsplit("/", 1)[-1]
    op = last.rsplit(": ", 1)[-1].strip()
    if not op.startswith("aten."):
        return None
    return op[:-len(".default")] if op.endswith(".default") else op


def has_torch_metadata(graph: onnx.GraphProto) -> bool:
    """True when the dynamo exporter annotated the graph's nodes (then absence of a note means
    the note does not apply)."""
    return any(p.key.startswith("pkg.torch.onnx.") for n in graph.node for p in n.metadata_props)


def folded_norm_scope(node: onnx.NodeProto) -> str | None:
    """The module path of a BatchNorm the dynamo exporter folded into this node, '' when folded
    but unnamed, None when its metadata records no folding."""
    meta = metadata(node)
    # The namespace reads ": Model/1: torch.nn.modules.batchnorm.BatchNorm2d/_native_batch...":
    # each part is `scope: class`; only the classes are read (a scope may be named anything).
    parts = [part.partition(": ") for part in meta.get(NAMESPACE, "").split("/")]
    named = [scope for scope, _, cls in parts if _BATCHNORM.search(cls)]
    if not named and not _BATCHNORM.search(meta.get(RULE, "")):
        return None
    scopes = _scopes(node) or []
    if named and named[0]:
        return named[0]
    return scopes[-2] if len(scopes) >= 2 else ""


@dataclass
class Folding:
    """Per layer node index: folded holds the BatchNorm's module path ('' when unnamed) for layers
    whose weights carry a folded norm; unknown holds convs for which the graph cannot tell."""

    folded: dict[int, str] = field(default_factory=dict)
    unknown: set[int] = field(default_factory=set)


# TorchScript's inference export names a conv weight it computed (BatchNorm folded in) after the
# op it feeds; the weights it kept are named by their parameter path (`features.0.weight`).
_TS_FOLDED = re.compile(r"^onnx::(Conv|ConvTranspose)_\d+$")
_PARAM_NAME = re.compile(r"\.(weight|weight_orig|weight_v)$")


def find_folding(index) -> Folding:
    """Which convs (and dynamo's Gemms) of the graph carry a folded BatchNorm.

    Read, in order of trust: dynamo's node metadata (when the graph has any, a layer without the
    note has none); TorchScript's weight names; otherwise a conv's folding cannot be told.
    """
    result = Folding()
    dynamo = has_torch_metadata(index.graph)
    for i, node in enumerate(index.nodes):
        op = layer_op(op_key(node))
        if op not in ("Conv", "ConvTranspose", "Gemm") or len(node.input) < 2:
            continue
        if dynamo:
            scope = folded_norm_scope(node)
            if scope is not None:
                result.folded[i] = scope
            continue
        if op == "Gemm":
            continue  # neither exporter folds a norm into a Gemm without saying so
        weight = _weight_name(index, node.input[1])
        if _TS_FOLDED.match(weight):
            result.folded[i] = ""
        elif not _PARAM_NAME.search(weight):
            result.unknown.add(i)
    return result


def _weight_name(index, name: str) -> str:
    """The initializer a weight operand reads, through Identity (torch's deduplication)."""
    for _ in range(8):
        if name in index.initializers:
            return name
        j = index.producers.get(name)
        if j is None or op_key(index.nodes[j]) != "Identity" or not index.nodes[j].input:
            return name
        # The Identity's output keeps the parameter name of the layer that shares the tensor.
        if _PARAM_NAME.search(name):
            return name
        name = index.nodes[j].input[0]
    return name


__all__ = ["Folding", "find_folding", "node_scope", "node_source", "has_torch_metadata", "folded_norm_scope",
           "metadata"]
