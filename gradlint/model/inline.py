"""Blocks of other project files spliced into a network: each `Extern` placeholder replaced by the IR
of the class it names, its layers renamed under the placeholder's module path.

The per-file lowering cannot see other files, so it leaves an `Extern` (the class as written, the
call's arguments, the parent's later initialisations); whoever holds the project index (the
architecture rules, GL201's block count, `gradlint model`) passes a `find` that turns the name
into the other file's networks, a `find` for names of that file, and a way to re-run the class
with a call's arguments. Precision first: a placeholder is inlined only when the other file's IR
holds for the arguments this call passes: the stored IR when each is the block's own default (or
goes to a parameter without one, which the IR holds only by its name), else the class re-run in
its file with these values (substitute, then decide: its conditions and loops see them, an
unknown stays unknown); its forward was followed; and the paths and nesting stay bounded.
Otherwise it stays opaque, which ends chains.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional

from gradlint.model.ir import (
    MAX_UNFOLDED, Attention, ClassArg, Extern, InitSpec, Network, Node, Param, Recurrent, Residual, SeqArg, SymArg,
    TransformerBlock,
)

# Nested blocks of other files followed, at most (a block holding a block of a third file...).
MAX_NESTING = 8
# Paths of one network with its blocks inlined, at most (as the lowering's MAX_PATHS).
MAX_PATHS = 8

# find(class as written) -> [(network, find for names of the network's own file[, lower])]:
# lower(args), when given, re-runs the class with a call's arguments (ir.Extern.args) and gives
# its IR for them, or None. network None: a function of that file building the block, whose IR
# exists only for a call's arguments (lower is then the only way in).
Finder = Callable[[str], "list[tuple]"]


def finder(scope: Any) -> Optional[Finder]:
    """How a placeholder of `scope`'s file finds the class it names: through the project index
    (a `facts.project.Scope`: the file's own imports name it), None without one."""
    if scope is None:
        return None

    def find(text: str) -> list:
        out = []
        for q in scope.resolve(text):
            if scope.index.is_function(q):
                # a function of that file: no IR of its own (a `def make(): return nn.Sequential(
                # ...)` network holds its parameters by name), only that of what it returns for a
                # call's arguments (the function run in its file with them): always re-run
                out.append((None, finder(scope.at(q)),
                            lambda args, q=q: scope.index.lower(q, _qualified(args, scope), function=True)))
                continue
            for n in scope.index.networks(q):
                out.append((n, finder(scope.at(q)), lambda args, q=q: scope.index.lower(q, _qualified(args, scope))))
        return out

    return find


def _qualified(args: Any, scope: Any) -> Any:
    """A call's arguments (ir.Extern.args) as the other file can read them: a class of a project
    file passed as a value (ClassArg 'extern', written as this file names it) by its qualified
    name; not known (()) when this file's name for it does not resolve to exactly one class."""
    if args is None:
        return None
    return tuple((key, _qualified_value(value[0], scope) if value else ()) for key, value in args)


def _qualified_value(value: Any, scope: Any) -> tuple:
    if isinstance(value, tuple):  # the arguments a class another file gives is called with
        return (_qualified(value, scope),)
    if isinstance(value, SeqArg):
        items = tuple(_qualified_value(a, scope) for a in value.items)
        return (replace(value, items=tuple(a[0] for a in items)),) if all(items) else ()
    if not isinstance(value, ClassArg):
        return (value,)
    args = tuple(_qualified_value(a, scope) for a in value.args)
    kwargs = tuple((k, _qualified_value(a, scope)) for k, a in value.kwargs)
    if not all(args) or not all(a for _k, a in kwargs):
        return ()
    cls = value.cls
    if value.kind == "extern":
        found = scope.resolve(cls)
        if len(found) != 1:
            return ()
        cls = found[0]
    return (replace(value, cls=cls, args=tuple(a[0] for a in args), kwargs=tuple((k, a[0]) for k, a in kwargs)),)




def inline(network: Network, find: Optional[Finder]) -> Network:
    """`network` with every placeholder that can be resolved replaced by the block's layers; the
    same object when there is nothing to do.

    A block whose forward has several paths (conditions on the input it could not decide) makes
    the parent's paths several too: one per choice of path for each block class, every instance
    of a class taking the same one (as the lowering decides an `if` once per class and run: the
    instances inlined here are all built with the same defaults). Past MAX_PATHS paths in all,
    such blocks stay opaque."""
    if find is None or not _has_extern(network):
        return network
    paths = _all_paths(network, find, multi=True)
    if paths is None:
        paths = _all_paths(network, find, multi=False) or [network.nodes, *network.variants]
    params: list[Param] = list(network.params)
    seen = {p.name for p in params}
    for path in paths:  # the inlined layers join the parent's inventory (GL105)
        for node in _walk(path):
            if isinstance(node, Param) and node.name not in seen:
                seen.add(node.name)
                params.append(node)
    return replace(network, nodes=paths[0], variants=tuple(paths[1:]), params=tuple(params))


def _all_paths(network: Network, find: Finder, multi: bool) -> list[tuple] | None:
    """Every distinct path of the network with its blocks inlined; None past MAX_PATHS."""
    out: list[tuple] = []
    for path in network.paths:
        plans: list[dict] = [{}]
        while plans:
            plan = plans.pop()
            order: list = []
            try:
                nodes = _nodes(path, find, 0, _Choices(plan, order, multi))
            except _TooLarge:
                return None  # the blocks stay opaque
            if nodes not in out:
                out.append(nodes)
            if len(out) > MAX_PATHS:
                return None
            for i, (key, count) in enumerate(order):
                for alt in range(1, count):
                    plans.append({**plan, **{k: 0 for k, _ in order[:i]}, key: alt})
            if len(plans) > MAX_PATHS:
                return None
    return out


class _TooLarge(Exception):
    """A path grew past MAX_UNFOLDED nodes with its blocks inlined (a block used in many places
    of a graph that shares them)."""


class _Choices:
    """Which path each block class takes in one run: `plan` (decided), `order` (met first in this
    run, taking path 0, with their number of paths). multi False: such blocks stay opaque."""

    def __init__(self, plan: dict, order: list, multi: bool) -> None:
        self.plan, self.order, self.multi = plan, order, multi
        self.spent = 0  # nodes made in this run: past MAX_UNFOLDED, _TooLarge

    def path(self, block: Network, args: Any = None) -> tuple | None:
        paths = block.paths
        if len(paths) == 1:
            return paths[0]
        if not self.multi:
            return None
        key = (block.path, block.name, args)
        if key not in self.plan:
            self.plan[key] = 0
            self.order.append((key, len(paths)))
        return paths[self.plan[key]]


def restated_class(network: Network, scope: Any) -> str | None:
    """The qualified name of the project class whose own network `network` only restates: a
    network that is one placeholder of a class of another project file (a script's
    `GPT(GPTConfig())`), built with arguments that give the very IR the class has in its own file
    (its defaults), with no initialisation of this file reaching it. That file's networks hold the
    same layers, and the same rules read them there. None otherwise (another depth or width, a
    later `apply(init)`, a class of an installed library, which no run reports)."""
    if scope is None or network.variants or len(network.nodes) != 1:
        return None
    ext = network.nodes[0]
    if not isinstance(ext, Extern) or ext.inits or ext.args is None:
        return None
    found = [(q, n) for q in scope.resolve(ext.cls) for n in scope.index.networks(q)]
    if len(found) != 1:
        return None
    qualified, block = found[0]
    mod = scope.index.module(qualified.rpartition(".")[0])
    if mod is None or mod.library or not block.forward_known:
        return None
    if _same_arguments(ext, block):
        return qualified
    again = scope.index.lower(qualified, _qualified(ext.args, scope))
    return qualified if again is not None and again.forward_known and again.paths == block.paths else None


def _has_extern(network: Network) -> bool:
    return any(isinstance(n, Extern) for path in network.paths for n in _walk(path))


def _walk(nodes: tuple):
    for node in nodes:
        yield node
        if isinstance(node, Residual):
            yield from _walk(node.body)
            for branch in node.branches:
                yield from _walk(branch)


def _nodes(nodes: tuple, find: Finder, depth: int, choices: _Choices) -> tuple:
    out: list = []
    choices.spent += len(nodes)
    if choices.spent > MAX_UNFOLDED:
        raise _TooLarge()
    for node in nodes:
        if isinstance(node, Extern):
            out.extend(_resolve(node, find, depth, choices))
        elif isinstance(node, Residual):
            out.append(replace(node, body=_nodes(node.body, find, depth, choices),
                               branches=tuple(_nodes(b, find, depth, choices) for b in node.branches)))
        else:
            out.append(node)
    return tuple(out)


def _resolve(ext: Extern, find: Finder, depth: int, choices: _Choices) -> tuple:
    if depth >= MAX_NESTING or find is None:
        return (ext,)
    found = find(ext.cls)
    if len(found) != 1:  # not a project class, or a name that stands for several
        return (ext,)
    block, inner_find, *lower = found[0]
    key = None
    if block is None or not _same_arguments(ext, block):
        # Substitute, then decide: the other file's class re-run with this call's arguments
        # (its conditions and loops decided with them, an argument not known left unknown).
        block = lower[0](ext.args) if lower and lower[0] is not None and ext.args is not None else None
        if block is None:
            return (ext,)
        key = ext.args
    if not block.forward_known:
        # why the re-run could not model it, when it says (a choice it cannot decide, a forward
        # it cannot follow), instead of the per-file lowering's "not seen"
        return (replace(ext, what=f"{ext.cls}: {block.note}") if block.note else ext,)
    chosen = choices.path(block, key)
    if chosen is None:
        return (ext,)
    # (a followed forward with no node, torchvision's Permute or a reshape: the input passes as
    # it came, as the same class of this file is modelled, and the chain goes on through it)
    body = _nodes(chosen, inner_find, depth + 1, choices)
    return tuple(_renamed(n, ext) for n in body)


def _same_arguments(ext: Extern, block: Network) -> bool:
    """Whether the block's IR holds for this call: every argument given is either the constant
    default the IR was built with, or a value known only by its text (or not at all) that goes to
    a parameter without a default (which the IR holds only by its name, so it stands for any
    value). A known value for such a parameter is not the IR's: the block is re-run with it."""
    if ext.args is None or block.signature is None:
        return False
    positional = [s for s in block.signature if not s[1]]
    by_name = {s[0]: s for s in block.signature}
    seen: set[str] = set()
    for key, value in ext.args:
        if isinstance(key, int):
            if key >= len(positional):
                return False
            param = positional[key]
        elif key in by_name:
            param = by_name[key]
        else:
            return False
        name, _, how, default = param
        if name in seen:
            return False
        seen.add(name)
        if how == "symbol":
            if value and not isinstance(value[0], SymArg):
                # A value the call knows (`Block(512)`, `Block(dim, use_norm=True)`): the stored
                # IR holds the parameter by its name only, so a width an absolute init depends
                # on (`normal_(std=0.02)` at fan-in 512) or a condition on it would be lost.
                return False
            continue
        if how != "default" or not value or not _equal(value[0], default):
            return False
    return True


def _equal(a: Any, b: Any) -> bool:
    # A class of another file is named as each file writes it: two equal texts of two files may
    # be two classes, so such a value is never taken for the default (the block is re-run).
    return type(a) is type(b) and a == b and "extern" not in _kinds(a)


def _kinds(value: Any) -> set:
    if isinstance(value, SeqArg):
        return set().union(*(_kinds(v) for v in value.items))
    if isinstance(value, ClassArg):
        out = {value.kind}
        for v in (*value.args, *(a for _k, a in value.kwargs)):
            out |= _kinds(v)
        return out
    return set()


def _renamed(node: Node, ext: Extern) -> Node:
    """A node of the block under the placeholder's module path, placed at the placeholder's call
    (the user's line in this file), with the parent's later initialisations applied."""
    prefix = ext.name + "." if ext.name else ""
    if isinstance(node, Residual):
        return replace(node, name=prefix + node.name if node.name else ext.name, origin=ext.origin,
                       body=tuple(_renamed(n, ext) for n in node.body),
                       branches=tuple(tuple(_renamed(n, ext) for n in b) for b in node.branches))
    if isinstance(node, Param):
        return replace(node, name=prefix + node.name if node.name else ext.name, origin=ext.origin,
                       init=_final(ext, node.op, "weight") or _placed(node.init, ext),
                       bias_init=_final(ext, node.op, "bias") or _placed(node.bias_init, ext))
    if isinstance(node, Recurrent):
        return replace(node, name=prefix + node.name if node.name else ext.name, origin=ext.origin,
                       weight_hh_init=_placed(node.weight_hh_init, ext))
    if isinstance(node, Attention):
        return replace(node, name=prefix + node.name if node.name else ext.name, origin=ext.origin,
                       projections=tuple(_renamed(p, ext) for p in node.projections))
    if isinstance(node, TransformerBlock) or hasattr(node, "name"):
        return replace(node, name=prefix + node.name if node.name else ext.name, origin=ext.origin)
    return node


def _placed(init: InitSpec | None, ext: Extern) -> InitSpec | None:
    """The block's own initialisation of a layer, placed at the placeholder's call: its call stands
    in the other file, and a finding is reported in this one (a line of that file named here
    would point at the wrong code)."""
    if init is None or init.origin is None:
        return init
    return replace(init, origin=ext.origin)


def _final(ext: Extern, op: str, tensor: str) -> InitSpec | None:
    """The last of the parent's initialisations that reaches a layer of kind `op` of the block."""
    best = None
    for ops, name, spec in ext.inits:
        if (name == tensor or name == "*") and (not ops or op in ops):
            best = spec
    return best
