"""Blocks of other project files spliced into a network: each `Extern` placeholder replaced by the IR
of the class it names, its layers renamed under the placeholder's module path.

The per-file lowering cannot see other files, so it leaves an `Extern` (the class as written, the
call's constant arguments, the parent's later initialisations); whoever holds the project index
(the architecture rules, `gradlint model`) passes a `find` that turns the name into the other
file's networks and a `find` for names of that file. Precision first: a placeholder is inlined
only when the other file's IR was built with exactly the arguments this call passes (the block's
constant defaults), its forward was followed on one path, and the nesting stays bounded; otherwise
it stays opaque, which ends chains.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional

from gradlint.model.ir import (
    Attention, Extern, InitSpec, Network, Node, Param, Recurrent, Residual, TransformerBlock,
)

# Nested blocks of other files followed, at most (a block holding a block of a third file...).
MAX_NESTING = 8

# find(class as written) -> [(network, find for names of the network's own file)]
Finder = Callable[[str], "list[tuple[Network, Finder]]"]


def finder(scope: Any) -> Optional[Finder]:
    """How a placeholder of `scope`'s file finds the class it names: through the project index
    (a `facts.project.Scope`: the file's own imports name it), None without one."""
    if scope is None:
        return None

    def find(text: str) -> list:
        return [(n, finder(scope.at(q))) for q in scope.resolve(text) for n in scope.index.networks(q)]

    return find


def inline(network: Network, find: Optional[Finder]) -> Network:
    """`network` with every placeholder that can be resolved replaced by the block's layers; the
    same object when there is nothing to do."""
    if find is None or not _has_extern(network):
        return network
    params: list[Param] = list(network.params)
    seen = {p.name for p in params}

    def collect(nodes: tuple) -> None:  # the inlined layers join the parent's inventory (GL105)
        for node in _walk(nodes):
            if isinstance(node, Param) and node.name not in seen:
                seen.add(node.name)
                params.append(node)

    nodes = _nodes(network.nodes, find, 0)
    variants = tuple(_nodes(v, find, 0) for v in network.variants)
    for path in (nodes, *variants):
        collect(path)
    return replace(network, nodes=nodes, variants=variants, params=tuple(params))


def _has_extern(network: Network) -> bool:
    return any(isinstance(n, Extern) for path in network.paths for n in _walk(path))


def _walk(nodes: tuple):
    for node in nodes:
        yield node
        if isinstance(node, Residual):
            yield from _walk(node.body)
            for branch in node.branches:
                yield from _walk(branch)


def _nodes(nodes: tuple, find: Finder, depth: int) -> tuple:
    out: list = []
    for node in nodes:
        if isinstance(node, Extern):
            out.extend(_resolve(node, find, depth))
        elif isinstance(node, Residual):
            out.append(replace(node, body=_nodes(node.body, find, depth),
                               branches=tuple(_nodes(b, find, depth) for b in node.branches)))
        else:
            out.append(node)
    return tuple(out)


def _resolve(ext: Extern, find: Finder, depth: int) -> tuple:
    if depth >= MAX_NESTING:
        return (ext,)
    found = find(ext.cls)
    if len(found) != 1:  # not a project class, or a name that stands for several
        return (ext,)
    block, inner_find = found[0]
    if not block.forward_known or block.variants or not block.nodes or not _same_arguments(ext, block):
        return (ext,)
    body = _nodes(block.nodes, inner_find, depth + 1)
    return tuple(_renamed(n, ext) for n in body)


def _same_arguments(ext: Extern, block: Network) -> bool:
    """Whether the call passes exactly what the block's IR was built with: its defaults."""
    if ext.args is None or block.signature is None:
        return False
    positional = [s for s in block.signature if not s[1]]
    by_name = {s[0]: s for s in block.signature}
    given: dict[str, Any] = {}
    for key, value in ext.args:
        if isinstance(key, int):
            if key >= len(positional):
                return False
            name = positional[key][0]
        else:
            name = key
            if name not in by_name:
                return False
        if name in given:
            return False
        given[name] = value
    for name, _, default in block.signature:
        if default is None:
            return False  # a parameter without a constant default: the IR holds only its name
        if name in given and not _equal(given[name], default[0]):
            return False
    return True


def _equal(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _renamed(node: Node, ext: Extern) -> Node:
    """A node of the block under the placeholder's module path, placed at the placeholder's call
    (the user's line in this file), with the parent's later initialisations applied."""
    prefix = ext.name + "." if ext.name else ""
    if isinstance(node, Residual):
        return replace(node, name=prefix + node.name if node.name else ext.name, origin=ext.origin,
                       body=tuple(_renamed(n, ext) for n in node.body),
                       branches=tuple(tuple(_renamed(n, ext) for n in b) for b in node.branches))
    if isinstance(node, Param):
        return replace(node, name=prefix + node.name, origin=ext.origin,
                       init=_final(ext, node.op, "weight") or node.init,
                       bias_init=_final(ext, node.op, "bias") or node.bias_init)
    if isinstance(node, Attention):
        return replace(node, name=prefix + node.name, origin=ext.origin,
                       projections=tuple(_renamed(p, ext) for p in node.projections))
    if isinstance(node, (Recurrent, TransformerBlock)) or hasattr(node, "name"):
        return replace(node, name=prefix + node.name if node.name else ext.name, origin=ext.origin)
    return node


def _final(ext: Extern, op: str, tensor: str) -> InitSpec | None:
    """The last of the parent's initialisations that reaches a layer of kind `op` of the block."""
    best = None
    for ops, name, spec in ext.inits:
        if (name == tensor or name == "*") and (not ops or op in ops):
            best = spec
    return best
