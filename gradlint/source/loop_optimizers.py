"""Loops over optimizers in training code (`for opt in optimizers: opt.step()`): which loop is one
update of each optimizer rather than a loop of its own, and which optimizers its container holds
(Event.each, Event.each_items). A mixin of the training-loop extractor (loops.py), which gives it
`pre` (loop_env's pre-pass), `qualify` and `_scope_nodes`."""

from __future__ import annotations

import dataclasses

import libcst as cst

from gradlint.facts.training import Block
from gradlint.source.engine.env import Ref
from gradlint.source.engine.values import Ctor, DictVal, ListVal, items_of
from gradlint.source.engine.walk import text as _text
from gradlint.source.engine.walk import walk
from gradlint.source.loop_calls import _last, is_optimizer_name
from gradlint.source.names import dotted


class OptimizerLoops:
    def each_optimizer(self, stmt: cst.CSTNode, fid: int) -> tuple[str, str, tuple]:
        """(the variable, what it iterates as written, the optimizers it holds) of a loop over the
        optimizers: `for opt in self.optimizers` (also `optimizers.values()`, Lightning's
        `self.optimizers()`), `for name, opt in optimizers.items()`, `for opt in (opt_g, opt_d)`;
        ('', '', ()) for any other loop. A container the engine knows (a display bound in the
        file, never changed in place) is one of optimizers when each of its items is one (by its
        value, else by its name), and a dict iterated for its keys is none; the name of what is
        iterated decides otherwise. (the variable, '', ()) for a container the engine knows holds
        no optimizer at all. The optimizers held are `_held`'s, () when not known."""
        if type(stmt) is not cst.For:
            return "", "", ()
        target, it, written = stmt.target, stmt.iter, _text(stmt.iter)
        values = False  # a dict's values are iterated
        if type(it) is cst.Call and not it.args and type(it.func) is cst.Attribute and it.func.attr.value == "items" \
                and type(target) is cst.Tuple and len(target.elements) == 2:
            # `for key, opt in optimizers.items()`: the values are the optimizers
            target, it = target.elements[1].value, it.func.value
            written = _text(it) + ".values()"
            values = True
        if type(target) is not cst.Name:
            return "", "", ()
        scope = self._scope_nodes.get(fid)
        if type(it) in (cst.Tuple, cst.List):
            known = self.pre._object(it, scope)
            items = known.items if type(known) is ListVal else ()
            if len(items) > 1 and all(self._item_is_optimizer(v) for v in items):
                return target.value, written, _held(known, "")
            return self._none_of(target.value, items), "", ()
        if type(it) is cst.Call and not it.args:
            func = it.func
            if type(func) is cst.Attribute and func.attr.value == "values":
                it, values = func.value, True
            else:
                it = func
        text = dotted(it) if type(it) in (cst.Name, cst.Attribute) else None
        if not text:
            return "", "", ()
        known = self.pre.value_of(text, scope, items=True)
        if type(known) in (ListVal, DictVal) and known.items:
            if type(known) is DictVal and not values:
                return target.value, "", ()  # its keys
            items = items_of(known)
            if all(self._item_is_optimizer(v) for v in items):
                # what it holds is read only from a display bound to the name itself, not
                # through another name or a function's result (whose names are another scope's)
                direct = "." not in text and type(self.pre.env.lookup(scope, text)) in (ListVal, DictVal)
                return target.value, written, _held(known, text) if direct else ()
            return self._none_of(target.value, items), "", ()
        last = _last(text)
        if last.endswith("s") and (last.lower() == "opts" or is_optimizer_name(last)):
            return target.value, written, ()
        return "", "", ()

    def _none_of(self, var: str, items: tuple) -> str:
        """`var` when every item is known to be something other than an optimizer, else ''."""
        kinds = [self.pre.kind(v, self.qualify) for v in items]
        return var if kinds and all(k and k != "optimizer" for k in kinds) else ""

    def _item_is_optimizer(self, value) -> bool:
        """An item of a container: an optimizer by the engine's value, else (nothing known) by the
        name it was written as."""
        known = self.pre.kind(value, self.qualify)
        if known:
            return known == "optimizer"
        return type(value) is Ref and is_optimizer_name(value.text)


def _drawn_from(block: Block, var: str, each: str, known: tuple = ()) -> Block:
    """The events of a loop over the optimizers whose optimizer is the loop variable, marked
    (with the optimizers the container holds, when they are known)."""
    items = []
    for it in block.items:
        if isinstance(it, Block):
            items.append(_drawn_from(it, var, each, known))
        elif it.target == var:
            items.append(dataclasses.replace(it, each=each, each_items=known))
        else:
            items.append(it)
    return dataclasses.replace(block, items=tuple(items))


def _held(container: ListVal | DictVal, text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The optimizers of a container display (Event.each_items): each as its name, or, built in
    the display, as the container subscripted (`optimizers[0]`, `optimizers['head']`; `text`:
    the container as written) with the modules whose `.parameters()` it is given. () when an
    item is anything else (a function's result, a loop's variable, a starred run), or is built
    in a display of the loop's header (`text` ''; built anew each time the loop runs): what the
    container holds is then not known, and a loop over it steps optimizers we cannot name."""
    keys = list(container.items) if type(container) is DictVal else list(range(len(container.items)))
    out = []
    for key, value in zip(keys, items_of(container)):
        if type(value) is Ref and not value.item:
            out.append((value.text, ()))
        elif type(value) is Ctor and type(value.node) is cst.Call and text:
            if isinstance(key, (str, int)):
                name = f"{text}[{key!r}]"
            else:
                name = f"{text}[{getattr(key, 'text', key)}]"  # a key known by its text (`Sym`)
            out.append((name, tuple(_parameter_owners(value.node))))
        else:
            return ()
    return tuple(out)


def _parameter_owners(call: cst.Call) -> list[str]:
    out = [_text(n.func.value) for n in walk(call) if type(n) is cst.Call and type(n.func) is cst.Attribute
           and n.func.attr.value in ("parameters", "named_parameters")]
    return list(dict.fromkeys(out))
