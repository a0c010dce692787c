"""The ONNX front-end's facts: graph hazards and weight statistics, what the ONNX rules read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradlint.findings import GraphNode, SourceSpan


@dataclass(frozen=True)
class WeightStats:
    """Statistics of one float tensor of the model (initializer or Constant), for the weight rules.

    role: the op of the layer whose weight it is ('linear', 'conv2d', 'embedding'...), or
    'other' (biases, norm scales, tables no layer consumes as its weight).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    count: int
    nan: int
    posinf: int
    neginf: int
    mean: float | None
    std: float | None
    role: str
    layer: str  # the layer's module path when role is a layer's
    node: GraphNode | None
    order: int  # position of the consuming node, for "neighbours"
    # Op types that read the tensor (through Identity/Cast/reshapes): tells a -inf attention
    # mask (read by Add/Where) from a broken weight.
    consumers: tuple[str, ...] = ()

    @property
    def nonfinite(self) -> int:
        return self.nan + self.posinf + self.neginf


@dataclass(frozen=True)
class GraphFacts:
    """What the ONNX rules read: graph hazards (gradlint.onnx.hazards) and weight statistics."""

    opset: int
    hazards: tuple = ()
    weights: tuple[WeightStats, ...] = ()
    # False when external data was refused (unsafe_external_data): weight statistics are then missing.
    weights_read: bool = True
    # Names of layer nodes (GraphNode.name) into which a BatchNorm may have been folded at export:
    # the graph cannot tell (no exporter metadata, anonymous weights). A chain through them may be
    # normalised in training.
    maybe_folded: frozenset[str] = frozenset()



@dataclass(frozen=True)
class GraphHazard:
    """One numerically unsafe pattern of an ONNX graph (gradlint.onnx.hazards), named by its kind."""

    kind: str
    node: GraphNode
    # what the pattern is made of: the node's name, op type and index, and per kind its parts
    # (producer, operand, divisor, lower/upper bounds, branch)
    data: dict[str, Any] = field(default_factory=dict)
    span: SourceSpan | None = None
