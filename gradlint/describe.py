"""`gradlint model`: what the front-ends understood of each network, as plain data (and as text).

Reads the model IR (gradlint.model.ir.Network) of every nn.Module class of the given .py files and
of every .onnx graph: its nodes in forward order, each opaque node with its reason, the other
forward paths when conditions could not be decided, and each chain the propagation model analyses
with its predicted gain. No rule runs here: this is what the architecture rules read, shown so
that a user can see why a model was or was not flagged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from gradlint.config import Config, config_warnings
from gradlint.findings import GraphNode, SourceSpan
from gradlint.model.blocks import block_count
from gradlint.model.ir import (
    Activation, Attention, Network, Node, Norm, Opaque, Param, Passthrough, Recurrent, Residual, TransformerBlock,
)
from gradlint.model.propagation import ALPHA_DROPOUT, analyse

NOTHING_FOUND = "no Python, notebook or ONNX files found under the given paths"
# The note of a module class no model was kept of (models.extract drops one whose __init__ or
# forward ran out of budget or hit Python's recursion limit)
NOT_MODELLED = "not modelled: its __init__ or forward ran past the interpretation budget or Python's recursion limit"
KINDS = ("param", "activation", "norm", "residual", "recurrent", "transformer", "attention", "passthrough", "opaque")


@dataclass
class Described:
    models: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line each, naming the file
    warnings: list[str] = field(default_factory=list)  # files skipped, nothing found: as `check` says
    files: int = 0  # the files read
    # folders below a walked one that hold their own configuration (split_projects): described
    # with their own settings by gradlint.projects.describe, as `check` checks them
    projects: list[str] = field(default_factory=list)
    # anything found under the paths: a file, a path missing or refused (gradlint.projects.describe
    # warns with NOTHING_FOUND when no run found anything)
    found: bool = False


def describe_paths(paths: Iterable[str | Path], config: Config, *, split_projects: bool = False) -> Described:
    """Every network of the files under `paths` (discovered as `check` does: with split_projects,
    the folders holding their own configuration are not walked but listed in .projects). The
    paths of each project root are read with that project's modules (by_project_root)."""
    from gradlint.source.index import by_project_root

    groups = by_project_root([Path(p) for p in paths], Path(config.root))
    out = Described(warnings=list(config_warnings(config)))
    for root, given in groups:
        got = _describe_project(given, root, config, split_projects)
        out.projects += [p for p in got.projects if p not in out.projects]
        seen = {m.get("filename") for m in out.models}
        out.models += [m for m in got.models if m.get("filename") not in seen]
        out.errors += [e for e in got.errors if e not in out.errors]
        out.warnings += [w for w in got.warnings if w not in out.warnings]
        out.files += got.files
        out.found = out.found or got.found
    return out


def _describe_project(given: list[Path], root: Path, config: Config, split_projects: bool) -> Described:
    """describe_paths of the paths of one project root."""
    from gradlint.api import _extract, add_to_index, name_modules, project_index
    from gradlint.discover import discover
    from gradlint.model.inline import finder, inline

    found = discover(given, config, split_projects=split_projects)
    out = Described(projects=[str(p) for p in found.projects])
    # Blocks of other project files are shown inlined, as the architecture rules see them.
    index, root = project_index([p for p, _ in found.files] or [Path(config.root)], config, use_cache=False,
                                root=root)
    name_modules(index, root, [p for p, _ in found.files if p.suffix == ".py"])
    out.warnings.extend(found.warnings)
    for missing in found.missing:
        out.errors.append(f"{missing}: no such file or directory")
    for display, reason, error in found.refused:
        # a FIFO, a device or a link loop named on the command line is an error, as in `check`
        if error:
            out.errors.append(f"{display}: {reason}")
        else:
            out.warnings.append(f"{display}: skipped: {reason}")
    out.found = bool(found.files or found.missing or found.refused)
    for path, display in found.files:
        try:
            facts = _extract(path, display)
        except Exception as exc:  # noqa: BLE001 - one file's failure never hides the others
            out.errors.append(f"{display}: internal error: {type(exc).__name__}: {exc}")
            continue
        if facts.skipped:
            out.warnings.append(f"{display}: skipped: {facts.skipped}")
            continue
        out.files += 1
        for err in facts.input_errors:
            out.errors.append(f"{display}:{err.span.line}:{err.span.column}: {err.message}")
        coverage = _onnx_coverage(path) if facts.kind == "onnx" and not facts.input_errors else None
        add_to_index(index, root, path, facts)
        find = finder(index.scope(facts))
        modelled = {network.name for network in facts.networks}
        for summary in facts.classes:
            if summary.is_module and summary.name not in modelled:
                # (models.extract keeps no network of a class whose __init__ or forward ran out
                # of budget: it was missing from the list, and a file of one such class said
                # "no nn.Module class found")
                out.models.append(_unmodelled(summary.name, display))
        for network in facts.networks:
            model = describe_network(inline(network, find), display)
            if coverage is not None:
                model["coverage"] = coverage
            if facts.cells is not None and model["location"] and "line" in model["location"]:
                # a notebook: the line of the virtual file is a cell and a line in it
                where = facts.cells.locate(model["location"]["line"])
                if where is not None:
                    model["location"] = dict(model["location"], cell=where[0], line=where[1])
            out.models.append(model)
    return out


def _onnx_coverage(path: Path) -> list[dict] | None:
    """How much of each graph of an ONNX file the lowering understood (gradlint.onnx.coverage)."""
    from gradlint.onnx.coverage import onnx_coverage
    from gradlint.onnx.load import ModelError

    try:
        return [g.to_dict() for g in onnx_coverage(path)]
    except ModelError:
        return None


def describe_network(network: Network, filename: str | None = None) -> dict:
    """One network as plain data (what `--format json` prints)."""
    try:
        analysis = analyse(network)
        chains = [_chain(c) for c in analysis.chains]
    except (ValueError, ArithmeticError, KeyError):
        chains = []
    return {
        "name": network.name,
        "filename": filename or network.path,
        "location": _location(network.origin),
        "forward_known": network.forward_known,
        "note": network.note,
        "nodes": [_node(n, network.nodes, i) for i, n in enumerate(network.nodes)],
        "other_paths": [[_node(n, p, i) for i, n in enumerate(p)] for p in network.variants],
        "opaque": sum(1 for p in network.paths for n in _walk(p) if isinstance(n, Opaque)),
        "transformer_blocks": block_count(network.paths) if network.forward_known else 0,
        "layers": [_node(p, (), 0) for p in network.params] if not network.forward_known else [],
        "chains": chains,
    }


def _unmodelled(name: str, filename: str) -> dict:
    """A module class of which no model was kept: as describe_network's dict, with no nodes."""
    return {"name": name, "filename": filename, "location": None, "forward_known": False,
            "note": NOT_MODELLED,
            "nodes": [], "other_paths": [], "opaque": 0, "transformer_blocks": 0, "layers": [], "chains": []}


def _walk(nodes):
    for n in nodes:
        yield n
        if isinstance(n, Residual):
            yield from _walk(n.body)
            for b in n.branches:
                yield from _walk(b)


def _location(origin: Any) -> dict | None:
    if isinstance(origin, SourceSpan):
        return {"line": origin.line, "column": origin.column}
    if isinstance(origin, GraphNode):
        return {"node": origin.name, "op_type": origin.op_type}
    return None


def _number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else str(v)
    return v


def _init(spec) -> dict | None:
    if spec is None:
        return None
    return {"scheme": spec.scheme, **{k: _number(v) for k, v in spec.params}}


def _following_activations(seq: tuple, i: int) -> list[str]:
    """The activations a layer's output goes through before the next layer (passthroughs skipped)."""
    out: list[str] = []
    for n in seq[i + 1:]:
        if isinstance(n, Passthrough):
            continue
        if not isinstance(n, Activation):
            break
        if n.fn != "identity":
            out.append(n.fn)
    return out


def _node(n: Node, seq: tuple, i: int) -> dict:
    base: dict = {"name": getattr(n, "name", ""), "location": _location(getattr(n, "origin", None))}
    if isinstance(n, Param):
        return {"kind": "param", **base, "op": n.op, "fan_in": n.fan_in, "fan_out": n.fan_out, "init": _init(n.init),
                "bias_init": _init(n.bias_init), "activation": _following_activations(seq, i),
                "signal_ratio": n.signal_ratio}
    if isinstance(n, Activation):
        return {"kind": "activation", **base, "fn": n.fn, "param": n.param}
    if isinstance(n, Norm):
        return {"kind": "norm", **base, "norm": n.kind}
    if isinstance(n, Residual):
        return {"kind": "residual", **base, "join": n.join, "skip_scale": _number(n.skip_scale),
                "branch_scale": _number(n.branch_scale),
                "children": [_node(c, n.body, j) for j, c in enumerate(n.body)],
                "branches": [[_node(c, b, j) for j, c in enumerate(b)] for b in n.branches]}
    if isinstance(n, Recurrent):
        return {"kind": "recurrent", **base, "cell": n.cell, "nonlinearity": n.nonlinearity, "hidden": n.hidden,
                "num_layers": n.num_layers, "weight_hh_init": _init(n.weight_hh_init)}
    if isinstance(n, TransformerBlock):
        return {"kind": "transformer", **base, "block": n.kind, "norm_first": n.norm_first}
    if isinstance(n, Attention):
        return {"kind": "attention", **base, "what": n.what,
                "projections": [_node(p, (), 0) for p in n.projections]}
    if isinstance(n, Passthrough):
        drop = {"dropout": n.dropout, "p": n.p} if n.dropout else {}
        return {"kind": "passthrough", **base, "what": n.what, **drop}
    assert isinstance(n, Opaque)
    reason = n.what or "not understood"
    return {"kind": "opaque", **base, "reason": f"{reason} ({n.detail})" if n.detail else reason}


def _chain(chain) -> dict:
    return {"layers": list(chain.modules), "depth": chain.depth, "gain": _number(chain.gain), "bound": chain.bound,
            "per_layer": _number(chain.per_layer), "chi": _number(chain.chi),
            "activations": sorted({a.fn for s in chain.steps for a in s.activations if a.fn != "identity"}),
            "location": _location(chain.first.origin)}


# ---- text for people ----------------------------------------------------------------------

_NUMBERS = re.compile(r"\d+")

def render_text(models: list[dict]) -> str:
    lines: list[str] = []
    for m in models:
        loc = m["location"]
        where = f":{loc['line']}:{loc['column']}" if loc and "line" in loc else ""
        if loc and "cell" in loc:
            where = f":cell {loc['cell']}{where}"
        paths = 1 + len(m["other_paths"])
        if m["forward_known"]:
            status = "forward followed" + (f", {paths} paths" if paths > 1 else "")
            status += f", {m['opaque']} opaque node{'s' if m['opaque'] != 1 else ''}"
        elif m["note"] == NOT_MODELLED:
            status = NOT_MODELLED
        else:
            status = f"forward not followed: {m['note'] or 'unknown reason'}"
        lines.append(f"{m['filename']}{where}: {m['name']} ({status})")
        if not m["forward_known"]:
            for layer in m["layers"]:
                lines.append("  " + _node_line(layer))
        for i, path in enumerate([m["nodes"]] + m["other_paths"]):
            if paths > 1:
                lines.append(f"  path {i + 1}:")
            _nodes_text(path, "    " if paths > 1 else "  ", lines)
        if m["transformer_blocks"]:
            lines.append(f"  transformer blocks: {m['transformer_blocks']}")
        for g in m.get("coverage") or ():
            opaque = ", ".join(f"{reason} ({n})" for reason, n in g["opaque"])
            folded = f", {g['folded_norms']} folded norm{'s' if g['folded_norms'] != 1 else ''}" if g["folded_norms"] else ""
            lines.append(f"  coverage of {g['graph']}: {g['understood']} of {g['on_path']} nodes on the data path "
                         f"understood ({g['nodes']} in all{folded})" + (f"; opaque: {opaque}" if opaque else ""))
        for c in m["chains"]:
            acts = "+".join(c["activations"]) or "no activation"
            lines.append(f"  chain {c['layers'][0]} .. {c['layers'][-1]}: {c['depth']} layers ({acts}), "
                         f"predicted gradient gain {'at most ' if c.get('bound') else ''}{_fmt(c['gain'])} "
                         f"({_fmt(c['per_layer'])} per layer"
                         + (f", χ ≈ {_fmt(c['chi'])}" if c.get("chi") is not None else "") + ")")
        if m["forward_known"] and not m["chains"]:
            lines.append("  no chain of 2 or more layers to analyse")
        lines.append("")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.2g}" if isinstance(v, (int, float)) else str(v)


def _nodes_text(nodes: list[dict], indent: str, lines: list[str]) -> None:
    keys = [_shape(n) for n in nodes]
    i = 0
    while i < len(nodes):
        period, times = _repeat_at(keys[i:])
        if times > 1:
            # 40 identical blocks are one block and a count for a reader; JSON keeps every node.
            names = [n["name"] for n in nodes[i:i + period * times] if n["name"]]
            span = f" ({names[0]} .. {names[-1]})" if names else ""
            lines.append(f"{indent}{times} × the {period} node{'s' if period != 1 else ''} below{span}")
            for n in nodes[i:i + period]:
                _node_text(n, indent + "  ", lines)
            i += period * times
            continue
        _node_text(nodes[i], indent, lines)
        i += 1


def _node_text(n: dict, indent: str, lines: list[str]) -> None:
    lines.append(indent + _node_line(n))
    if n["kind"] == "residual":
        _nodes_text(n["children"], indent + "  | ", lines)
        for b in n["branches"]:
            lines.append(indent + "  + branch")
            _nodes_text(b, indent + "  | ", lines)


# Folded in the text only from this many repeats: two or three of a kind read fine as they are.
_MIN_REPEATS = 4
_MAX_PERIOD = 8


def _repeat_at(keys: list) -> tuple[int, int]:
    """(period, times) of the longest run of one group of nodes repeated from the first on, by
    their `_shape`s (the same but for the numbers in their names: layers.0, layers.1...); times 1
    when nothing repeats at least _MIN_REPEATS times."""
    best = (1, 1)
    for period in range(1, min(_MAX_PERIOD, len(keys) // _MIN_REPEATS) + 1):
        times = 1
        while keys[times * period:(times + 1) * period] == keys[:period]:
            times += 1
        if times >= _MIN_REPEATS and period * times > best[0] * best[1]:
            best = (period, times)
    return best


def _shape(node: Any) -> Any:
    """A node with the numbers of its names blanked and its place dropped, for comparing repeats."""
    if isinstance(node, dict):
        return tuple(sorted((k, _NUMBERS.sub("#", v) if k == "name" and isinstance(v, str) else _shape(v))
                            for k, v in node.items() if k != "location"))
    if isinstance(node, list):
        return tuple(_shape(v) for v in node)
    return node


_EMBEDDINGS = frozenset({"embedding", "embedding_bag", "embeddingbag"})


def _node_line(n: dict) -> str:
    kind, name = n["kind"], n["name"] or "-"
    if kind == "param":
        init = n["init"] or {}
        # (numbers to 4 significant digits, as a person reads them; json keeps them whole)
        args = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in init.items() if k != "scheme")
        act = f", then {'+'.join(n['activation'])}" if n.get("activation") else ""
        # a transposed convolution: what one output sums, beside the fan_in its init is drawn with
        ratio = n.get("signal_ratio", 1.0)
        sums = "" if ratio == 1.0 else (" (an output sums ? terms)" if ratio is None or not isinstance(n["fan_in"], int)
                                        else f" (an output sums {n['fan_in'] * ratio:g} terms)")
        # an embedding's table is (num_embeddings, dim): torch's fans of it read dim -> tokens
        shape = f"table {n['fan_out']} x {n['fan_in']}" if str(n["op"]).lower() in _EMBEDDINGS else \
            f"{n['fan_in']} -> {n['fan_out']}"
        return (f"{kind:<12}{name:<28}{n['op']} {shape}{sums}, "
                f"init {init.get('scheme', '?')}{f'({args})' if args else ''}{act}")
    if kind == "activation":
        return f"{kind:<12}{name:<28}{n['fn']}" + (f"({n['param']:g})" if isinstance(n["param"], (int, float)) else "")
    if kind == "norm":
        return f"{kind:<12}{name:<28}{n['norm']}"
    if kind == "residual":
        extra = "" if n["skip_scale"] is None else f", skip x{n['skip_scale']}"
        join = {"add": "x + f(x)", "mul": "product of branches (gate)"}.get(n["join"], "concatenation")
        if n["join"] == "add" and n["skip_scale"] == 0.0:
            join, extra = "sum of branches (the input itself not among them)", ""
        return f"{kind:<12}{name:<28}{join}{extra if n['join'] == 'add' else ''}"
    if kind == "recurrent":
        return f"{kind:<12}{name:<28}{n['cell']} ({n['nonlinearity']}, hidden {n['hidden']}, {n['num_layers']} layers)"
    if kind == "attention":
        proj = ", ".join(p["name"] or "-" for p in n["projections"])
        return f"{kind:<12}{name:<28}{n['what']}, no gain (data-dependent)" + (f"; projections {proj}" if proj else "")
    if kind == "transformer":
        return f"{kind:<12}{name:<28}{n['block']} (norm_first={n['norm_first']})"
    if kind == "passthrough":
        if n.get("dropout"):
            # train mode: the second moment of the signal and of the gradient scale by this
            p = n["p"]
            how = "p not known: ends a chain" if p is None else (
                f"p={p:g}, train mode: gradient² × {1 / (1 + p * ALPHA_DROPOUT ** 2):.3g}" if n["dropout"] == "alpha"
                else f"p={p:g}, train mode: signal² and gradient² × {1 / (1 - p):.3g}" if p < 1 else f"p={p:g}")
            return f"{kind:<12}{name:<28}{n['what']} ({how})"
        return f"{kind:<12}{name:<28}{n['what']}"
    return f"{kind:<12}{name:<28}reason: {n['reason']}"
