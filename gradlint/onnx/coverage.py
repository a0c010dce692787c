"""How much of an ONNX graph gradlint understood: per graph, the nodes on the data path, how many
were read as layers, activations, norms, residuals or passthroughs, and the most frequent reasons
for the rest. Plain data for `gradlint model` to print; nothing here prints."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from gradlint.model.ir import Opaque

TOP = 5


@dataclass(frozen=True)
class GraphCoverage:
    """One graph of a model.

    graph: the graph's name ('main_graph'; a subgraph as 'Loop_3/body/').
    nodes: every node of the graph (subgraphs have their own entry).
    on_path: nodes on the data path from the main input to the main output; the others compute
        weights, shapes or side outputs and need no modelling.
    understood: nodes of the data path the lowering read (layer, activation, norm, residual add,
        passthrough).
    opaque: (reason, nodes) for the rest, the most frequent first, at most five.
    folded_norms: layers read as carrying a BatchNorm folded in at export.
    maybe_folded: convs whose folding the graph cannot tell (their chain findings are info).
    """

    graph: str
    nodes: int
    on_path: int
    understood: int
    opaque: tuple[tuple[str, int], ...] = ()
    folded_norms: int = 0
    maybe_folded: int = 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["opaque"] = [list(r) for r in self.opaque]
        return data


def onnx_coverage(path: str | os.PathLike) -> list[GraphCoverage]:
    """The coverage of every graph of an `.onnx` (or ONNX text `.onnx.txt`) file, the main graph
    first. Raises gradlint.onnx.load.ModelError (with .kind and .message) for a file that cannot
    be checked."""
    from gradlint.onnx.graph import GraphIndex, default_opset
    from gradlint.onnx.load import check_structure, decode, sort_nodes, vet_external
    from gradlint.onnx.lower import Lowering

    path = Path(path)
    model = decode(path)
    loaded = vet_external(model, os.path.dirname(os.path.abspath(path)))
    sort_nodes(model.graph)
    check_structure(model)
    index = GraphIndex(model.graph, opset=default_opset(model), loaded=loaded)
    low = Lowering(index, {}, str(path))
    low.network()
    out = [_main(low)]
    for g in list(index.walk())[1:]:
        out.append(GraphCoverage(graph=g.prefix or g.name, nodes=len(g.nodes), on_path=len(g.nodes), understood=0,
                                 opaque=(("If/Loop/Scan bodies are not lowered (their hazards are checked)",
                                          len(g.nodes)),) if g.nodes else ()))
    return out


def _main(low) -> GraphCoverage:
    index = low.g
    reasons: dict[int, str | None] = {}  # node -> None when understood, else why not
    # the main path and the paths of the inputs that feed it (an encoder read by a decoder)
    for path in [*low.beside, *([low.path] if low.path is not None else [])]:
        for k in path.succ:
            if k < 0:
                continue
            why = _unit_reason(path, k)
            for m in path.units[k].members:
                # A node split into several units (SkipLayerNormalization) is understood when all are.
                if reasons.get(m) is None:
                    reasons[m] = why if m not in reasons or why is not None else reasons[m]
    counts = Counter(r for r in reasons.values() if r is not None)
    folding = low.folding
    return GraphCoverage(
        graph=index.name or "main", nodes=len(index.nodes), on_path=len(reasons),
        understood=sum(1 for r in reasons.values() if r is None),
        opaque=tuple(counts.most_common(TOP)), folded_norms=len(folding.folded), maybe_folded=len(folding.unknown),
    )


def _unit_reason(path, k: int) -> str | None:
    if k in path.hidden:
        return path.hidden[k]
    if k in path.seen:
        opaque = [n for n in path.seen[k] if isinstance(n, Opaque)]
        return _reason(opaque[0].what) if opaque else None
    if k in path.joins:
        return None
    return "after a join the lowering could not read"


def _reason(what: str) -> str:
    # 'Mul joining 3 branches' and 'Mul joining 4 branches' are one reason.
    return re.sub(r"\b\d+\b", "N", what)


__all__ = ["GraphCoverage", "onnx_coverage"]
