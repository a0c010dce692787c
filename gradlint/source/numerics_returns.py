"""The losses functions and methods return, judged where their callers backpropagate them.

A mixin of the numerics Extractor: a term cut in what a top-level function, a method of a
top-level class or a forward returns (`return frames, mse + beta * kld.detach()`, `return
{"loss": rec + kld.detach(), ...}`) trains nothing where a caller calls backward on that part;
the caller in this file is read here, one in another file through NumericsFacts
(backpropagated_outputs, facts.numerics.backpropagated_elsewhere).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import libcst as cst

from gradlint.facts.numerics import Site
from gradlint.source.engine.tensors import UNKNOWN, V

if TYPE_CHECKING:
    from gradlint.source.numerics_walk import FunctionWalk

# What a returned loss is written with (a name, or a loss function or criterion in it).
_RETURNED_LOSS = re.compile(r"loss|cost|objective|penalty|criterion|crit\b|mse|l1|bce|cross_entropy|nll|kl_div|huber",
                            re.I)

# What a function named for its cut is called (`stop_gradient(x)`, `sg(x)`, `detach_all(h)`): cut on purpose.
_CUTTING_WORDS = frozenset("stop sg detach detached nograd const constant freeze frozen".split())


class ReturnedLosses:
    """What the Extractor keeps of returns (`returns_of`, `backpropagated`, `local_classes`) and
    the sites it makes of them (its `add`, `code`)."""

    def _returned_cuts(self, cls: str, walk: FunctionWalk) -> None:
        """Terms a forward cuts in a loss it returns (`return frames, mse + beta *
        torch.mean(torch.tensor(terms))`): a site at each cut that every return agrees on, per
        element of the returned tuple, which holds where a caller in the project backpropagates
        that element of the class's output (facts.numerics.backpropagated_elsewhere)."""
        nodes = walk.return_nodes
        per_element: dict[int, list] = {}
        for node in nodes:
            if node.value is None:
                return
            if type(node.value) is cst.Tuple:
                for i, e in enumerate(node.value.elements):
                    per_element.setdefault(i, []).append((e.value, walk.memo.get(id(e.value))))
            else:
                per_element.setdefault(-1, []).append((node.value, walk.memo.get(id(node.value))))
        for element, got in per_element.items():
            values = [v for _n, v in got]
            if len(values) != len(nodes) or any(v is None or v.nograd or not v.cut_terms for v in values):
                continue
            terms = set.intersection(*(set(v.cut_terms) for v in values))
            text = self.code(got[0][0])[:60]
            if not _RETURNED_LOSS.search(text):
                # a loss by its name or a loss in it: `h + (round(h) - h).detach()` is a
                # straight-through output, not a loss
                continue
            for where, how in sorted(terms, key=lambda e: (e[0].line, e[0].column)):
                self.add(Site("loss_term_cut", how, where.span, detail=text, function=f"{cls}.forward",
                              data=(("returned_by", cls), ("element", element))))

    def returned_value(self, name: str, parts: list | dict | None, whole: V) -> None:
        """A `return` of the top-level function `name` (or method, `C.m`, of a top-level class; walked
        as its unit): the value, and its parts when it is a tuple display (a list) or a dict
        display of string keys (a dict). The unit's last walk is the one kept."""
        self.returns_of.setdefault(name, []).append((parts, whole))

    def method_cut(self, name: str, element: int) -> V | None:
        """What a call of the method `name` (`C.m` of a top-level class of this file, walked
        already) gives for `element` of its return (-1: the whole value) when every return cuts it
        from the parameters it was computed from (inversecooking's `sample()` returning
        `torch.stack(logits, 1).data`): a value with no gradient, so that what the caller computes
        from it (the loss its forward returns) is cut as if the caller had written the cut. None
        when a return keeps it, when the method is not walked yet, or when its name or its class's
        says it stops the gradient on purpose (`get_target`, `TeacherNet.embed`)."""
        from gradlint.source.numerics_sites import _stop_gradient, _stop_network

        returns = self.returns_of.get(name)
        cls, _, meth = name.partition(".")
        if not returns or not meth or _stop_gradient(meth) or _stop_network(cls):
            return None
        return _cut_by_every(returns, element)

    def method_normed(self, qual: str) -> V | None:
        """What a call of the method `qual` (`C.m` of a top-level class of this file, walked before,
        in this walk or the unit's previous one) gives when every return of it is rows normalised
        whatever the call passes (`return F.normalize(x, p=2, dim=1)`: `z = self.forward(x)` then
        `z @ z.t()` is of cosines, engine/tensors.cosines); None for any other, or while it is being
        walked (a recursion)."""
        if qual in self.walking:
            return None
        returns = self.returns_of.get(qual) or self.prev_returns.get(qual)
        if not returns or not all(whole.normed for _parts, whole in returns):
            return None
        dims = {whole.normed_dim for _parts, whole in returns}
        return V(normed=True, normed_dim=dims.pop() if len(dims) == 1 else None, tensor=True, computed=True)

    def function_cut(self, name: str, element: int, carried: bool, count: int | None = None) -> V | None:
        """What a call of the top-level function `name` of this file (walked already, with what its
        callers here pass) gives for `element` of its return (-1: the whole value) when every
        return that can give it cuts it from the parameters the arguments carried
        (deep_cage's `deform_with_MVC` returning `weights.detach()`: yifita/deep_cage#16), as
        method_cut does for methods. The function holds no parameters of its own: only a call
        whose arguments carry some (`carried`) gets the cut value. A caller unpacking `count`
        names receives the tuple displays of `count` elements: a return of another shape
        (`return deformed` beside `return deformed, weights, unnormed` under `if verbose:`) is
        not what it unpacks. None when a return keeps it, or when the function's name says it
        stops the gradient on purpose (`stop_gradient`, `sg`, `get_target`)."""
        from gradlint.source.detached_modules import CUT_WORDS
        from gradlint.source.numerics_sites import _stop_gradient, _words

        if not carried or "." in name or _stop_gradient(name) or _words(name) & _CUTTING_WORDS:
            return None
        returns = self.returns_of.get(name)
        fn = self.module_functions.get(name)
        if fn is not None and not self.muted and (id(fn) not in self.units or self.binding(name) != self.walked_with.get(
                name, {})) and any(word in self.code(fn) for word in CUT_WORDS):
            # (a function walked after its caller, or to be walked again with what its callers pass
            # now: the caller is walked again after it, numerics._settle)
            self.stale.add(self.unit)
        if not returns:
            return None
        if count is not None and element >= 0:
            returns = [(parts, whole) for parts, whole in returns if isinstance(parts, list) and len(parts) == count]
        return _cut_by_every(returns, element)

    def _cut_returns(self) -> None:
        """A loss made by a function of this file and backpropagated by its caller (`loss, log =
        criterion(model, batch); loss.backward()`): a term the function cut, or a cut of the whole
        loss, is reported as if the caller had written it (GL407 at the cut, GL402 at the
        backward). Every `return` must agree that the value is cut, or has a cut term."""
        from gradlint.source.numerics_sites import _LOSSY, graph_break

        for (name, element), span, text in self.backpropagated:
            returns = self.returns_of.get(name)
            if not returns:
                continue
            values = [_returned_part(parts, whole, element) for parts, whole in returns]
            # (a term cut on one path only, `return main + reg.detach()` while warming up, is
            # what the join of branches makes of it inline: no finding)
            cut = [set(v.cut_terms) if not v.nograd else set() for v in values]
            terms = set().union(*cut) if cut and all(cut) else set()
            for where, how in sorted(terms, key=lambda e: (e[0].line, e[0].column)):
                self.add(Site("loss_term_cut", how, where.span, detail=text, function=name,
                              data=(("backward_line", span.line),)))
            # `loss.requires_grad_(True)` in the function, on the loss every return gives (the
            # usual answer to "does not require grad"), as if the caller had written it
            made = [set(v.rg) for v in values]
            for where, made_name in sorted(set.intersection(*made) if made and all(made) else (),
                                           key=lambda e: (e[0].line, e[0].column)):
                if _LOSSY.search(made_name):
                    self.add(Site("requires_grad_on_loss", "requires-grad", where.span, detail=made_name,
                                  function=name, data=(("backward_line", span.line),)))
            if values and all(graph_break(v) for v in values):
                v = values[0]
                self.add(Site("loss_graph_break", v.cut, span, detail=text, function=name,
                              data=(("through", v.cut), ("line", v.cut_span.line if v.cut_span else None))))
        self._method_cuts()

    def _method_cuts(self) -> None:
        """Terms a method of a top-level class cuts in a loss it returns (whole, an element of a
        tuple, an entry of a dict: `return {"loss": rec + kld.detach(), ...}`), for a file of the
        project that calls the method on an instance and backpropagates that part: a site at each
        cut every return agrees on, which holds where such a caller is
        (facts.numerics.backpropagated_elsewhere), as for a forward's returns (_returned_cuts)."""
        for name, returns in self.returns_of.items():
            cls, _, meth = name.partition(".")
            if not meth or meth == "forward" or cls not in self.local_classes:
                continue
            elements: set = {-1}
            for parts, _whole in returns:
                if isinstance(parts, dict):
                    elements.update(parts)
                elif isinstance(parts, list) and len(parts) > 1:
                    elements.update(range(len(parts)))
            for element in sorted(elements, key=str):
                values = [_returned_part(parts, whole, element) for parts, whole in returns]
                if not values or any(v.nograd or not v.cut_terms for v in values):
                    continue
                text = element if isinstance(element, str) else meth
                if not _RETURNED_LOSS.search(text):
                    continue  # a loss by its name: a straight-through output is none
                terms = set.intersection(*(set(v.cut_terms) for v in values))
                for where, how in sorted(terms, key=lambda e: (e[0].line, e[0].column)):
                    self.add(Site("loss_term_cut", how, where.span, detail=f"{meth}()[{element!r}]"
                                  if isinstance(element, str) else f"{meth}()", function=name,
                                  data=(("returned_by", name), ("element", element))))


def _cut_by_every(returns: list, element: int) -> V | None:
    """The cut value a call gives for `element` of what it returns (-1: the whole value) when every
    one of `returns` cuts it from the parameters it was computed from (method_cut, function_cut);
    else None (also with no return)."""
    from gradlint.source.numerics_sites import DETACHING

    values = [_returned_part(parts, whole, element) for parts, whole in returns]
    if not values or not all(v.cut in DETACHING and v.params for v in values):
        return None
    return V(cut=values[0].cut, cut_span=values[0].cut_span, params=True, tensor=True, computed=True)


def _returned_part(parts: list | dict | None, whole: V, element: int | str) -> V:
    """The part `element` of one return (Extractor.returned_value): an entry of a returned dict
    (a str), the whole value (-1), or an element of a returned tuple; UNKNOWN when that return
    has no such part."""
    if isinstance(element, str):  # an entry of a returned dict (`out["loss"]`)
        return parts.get(element, UNKNOWN) if isinstance(parts, dict) else UNKNOWN
    if element < 0:
        return whole if parts is None or isinstance(parts, dict) else UNKNOWN
    return parts[element] if isinstance(parts, list) and element < len(parts) else UNKNOWN
