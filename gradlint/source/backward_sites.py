"""Where a hand-written backward that ignores its gradient becomes a site (the `Backwards` mixin of
the numerics extractor), and what is exempt from it: a backward that returns only None (also a
list built of None) and the backward of a Function whose forward returns only a placeholder, an
extra graph edge whose gradient carries nothing by design (torchrec's async collectives,
fairscale's pipe). The reading of backwards themselves is gradlint.source.backwards."""

from __future__ import annotations

import re

import libcst as cst

from gradlint.facts.numerics import Site
from gradlint.source.backwards import (_LIKE, _SAME_VALUE, _SHAPE_ATTRS, _SHAPE_METHODS, _ctx, _inputs, _inputs_all,
                                       _no_gradient, _none_only, _reaches)
from gradlint.source.engine.walk import walk

_PLACEHOLDER_WORD = re.compile(r"(^|_)(dummy|phony|placeholder)(_|$)", re.IGNORECASE)


def placeholder_output(forward: cst.FunctionDef | None, ctx_less: bool = False, qualify=None) -> bool:
    """Whether a Function's forward returns only a placeholder: a tensor whose value depends on
    none of its inputs (_reaches: `torch.tensor(1.0)`, `x.new_empty(0)`, a phony made for
    `tensor.device`), an extra edge that keeps the Function in the graph so that its backward
    runs. The gradient that edge brings carries nothing by design; the backward takes the real
    one from elsewhere (`ctx.grad_from_pipeline`, a portal's `use_grad()`, the buffer of an
    async collective). Or, the names as a second signal, one the forward returns without
    computing it: a parameter, or an attribute it does not assign, named dummy, phony or
    placeholder (a collective's `return myreq.dummy_tensor`, whose gradient the paired Wait
    Function sends through the request). When in doubt, no. `ctx_less`: the forward takes no
    ctx (a `setup_context` fills it); `qualify`: a callee's qualified names through the file's
    imports."""
    if forward is None:
        return False
    nodes = list(walk(forward.body, stop=(cst.Lambda, cst.FunctionDef)))
    values = [n.value for n in nodes if type(n) in (cst.Return, cst.Yield)]
    if not values or any(v is None for v in values):
        return False
    if all(_named_placeholder(v, forward, nodes) for v in values):
        return True
    inputs = _inputs(forward) if not ctx_less else _inputs_all(forward)
    if type(forward.params.star_arg) is cst.Param and forward.params.star_arg.name.value not in inputs:
        inputs.append(forward.params.star_arg.name.value)
    inputs += [p.name.value for p in forward.params.kwonly_params]
    if type(forward.params.star_kwarg) is cst.Param:
        inputs.append(forward.params.star_kwarg.name.value)
    if not inputs:
        return False
    ctx = None if ctx_less else _ctx(forward)
    return not any(_reaches(forward, x, ctx, qualify) for x in inputs)


def _named_placeholder(value: cst.BaseExpression, forward: cst.FunctionDef, nodes: list[cst.CSTNode]) -> bool:
    """`phony`, `myreq.dummy_tensor`, `placeholder.detach()`: named a placeholder, and a parameter
    of the forward or an attribute it does not assign."""
    while type(value) is cst.Call and type(value.func) is cst.Attribute and value.func.attr.value in _SAME_VALUE:
        value = value.func.value
    if type(value) is cst.Name:
        last = value.value
        if value.value not in _inputs_all(forward) + _inputs(forward):
            return False
    elif type(value) is cst.Attribute:
        last = value.attr.value
        text = cst.Module([]).code_for_node(value)
        for n in nodes:
            targets = [t.target for t in n.targets] if type(n) is cst.Assign else \
                [n.target] if type(n) in (cst.AugAssign, cst.AnnAssign) else []
            if any(cst.Module([]).code_for_node(t) == text for t in targets):
                return False  # computed here
    else:
        return False
    return bool(_PLACEHOLDER_WORD.search(last))


def _none_lists(fn: cst.FunctionDef) -> frozenset[str]:
    """The names a backward binds only to lists of None and grows only with None
    (`grad_input = [None] * 5; grad_input.extend(None for _ in ctx.saved_tensors)`): every
    occurrence of the name is such a binding, such a growth, or a return of it (bare, or as
    `tuple(...)`/`list(...)`); any other use (`grad_input[0] = g`, a call it is passed to) may
    put a gradient in."""
    nodes = list(walk(fn.body, stop=()))
    seen: dict[str, int] = {}
    for n in nodes:
        if type(n) is cst.Name:
            seen[n.value] = seen.get(n.value, 0) + 1
    accounted: dict[str, int] = {}
    bound: set[str] = set()
    spoilt: set[str] = set()

    def count(name: cst.BaseExpression) -> None:
        if type(name) is cst.Name:
            accounted[name.value] = accounted.get(name.value, 0) + 1

    for n in nodes:
        kind = type(n)
        if kind in (cst.Assign, cst.AnnAssign, cst.AugAssign):
            targets = [t.target for t in n.targets] if kind is cst.Assign else [n.target]
            for t in targets:
                if type(t) is not cst.Name:
                    continue
                if n.value is not None and _none_only(n.value) and \
                        (kind is not cst.AugAssign or type(n.operator) is cst.AddAssign):
                    bound.add(t.value)
                    count(t)
                else:
                    spoilt.add(t.value)
        elif kind is cst.Call and type(n.func) is cst.Attribute and type(n.func.value) is cst.Name \
                and n.func.attr.value in ("append", "extend", "insert") and n.args:
            if _none_only(n.args[-1].value):
                count(n.func.value)
        elif kind is cst.Return and n.value is not None:
            value = n.value
            if type(value) is cst.Call and type(value.func) is cst.Name and value.func.value in ("tuple", "list") \
                    and len(value.args) == 1:
                value = value.args[0].value
            count(value)
    return frozenset(name for name in bound - spoilt if accounted.get(name) == seen.get(name))


class Backwards:
    """The Extractor's reading of autograd backwards (a mixin: its `add` and `span`)."""

    def check_backward(self, cls: cst.ClassDef, fn: cst.FunctionDef, forward: cst.FunctionDef | None = None,
                       ctx_less: bool = False) -> None:
        """A backward that never reads the values of its gradient arguments: not at all, or
        only for their shape (`torch.ones_like(grad_output)`, `grad_output.shape`). Not one that
        returns only None or zeros (also a list built of None: _none_lists), nor the backward of
        a forward that returns only a placeholder (placeholder_output): that gradient carries
        nothing to read."""
        grads = _inputs(fn)
        if not grads:
            return
        nodes = list(walk(fn.body, stop=()))  # (a lambda of the backward that reads the gradient reads it)
        none_lists = _none_lists(fn)
        if not any(type(n) is cst.Return and n.value is not None and not _no_gradient(n.value, self.q, none_lists)
                   for n in nodes):
            return
        shaped: dict[int, str] = {}  # the gradient read only for its shape (by id) -> the use, as written
        for node in nodes:
            if type(node) is cst.Call or type(node) is cst.Attribute:
                read = self._shape_only(node, grads)
                if read is not None:
                    shaped[id(read)] = self.code(node)
        if any(type(n) is cst.Name and n.value in grads and id(n) not in shaped for n in nodes):
            return  # a gradient read for its value
        if placeholder_output(forward, ctx_less, self.q):
            return
        data = (("arguments", tuple(grads)),) + ((("shape", tuple(dict.fromkeys(shaped.values()))),) if shaped else ())
        self.add(Site("backward_ignores_grad", "ignores-grad", self.span(fn.name),
                      detail=f"{cls.name.value}.backward", data=data))

    def _shape_only(self, node: cst.Call | cst.Attribute, grads: list[str]) -> cst.Name | None:
        """The gradient argument (its Name) that `node` reads only for its shape, dtype or device
        (`torch.ones_like(g)`, `g.shape`, `g.size()`, `g.new_zeros(n)`, `len(g)`); None else."""
        if type(node) is cst.Attribute:
            value = node.value
            return value if node.attr.value in _SHAPE_ATTRS and type(value) is cst.Name and value.value in grads else None
        func, args = node.func, node.args
        if type(func) is cst.Attribute and func.attr.value in _SHAPE_METHODS and type(func.value) is cst.Name \
                and func.value.value in grads:
            return func.value
        if not args or args[0].keyword is not None or args[0].star or type(args[0].value) is not cst.Name \
                or args[0].value.value not in grads:
            return None
        if type(func) is cst.Name and func.value == "len" or not self.q(func).isdisjoint(_LIKE):
            return args[0].value
        return None
