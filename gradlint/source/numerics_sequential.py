"""nn.Sequential and nn.ModuleList as the numerics walk reads them: a Sequential's call gives what
its last module's call gives (a softmax, a ReLU's output...), from the modules its constructor is
given, from the ones `add_module`/`append` put after them, and from a subclass's
`super().__init__(...)`; a ModuleList's item taken by an index is an instance of the classes of
the file its constructor and `append`/`insert` put there, when every item is one (`V.holds`).

A mixin of the walk's torch handlers (`numerics_ops.TorchOps`): the walk's environment, its
evaluator `ev` and its file extractor `x`. `V.seq` marks the value of a Sequential, so that a
module added to it later changes what its call gives, and only to it (`add_module` on any other
module registers a child its own forward may never call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.tensors import UNKNOWN, V, replace
from gradlint.source.list_ends import list_end
from gradlint.source.names import dotted
from gradlint.source.numerics_names import PARAM_FREE_MODULES, SIGN_KEEPING_MODULES

if TYPE_CHECKING:
    from gradlint.source.numerics_ops import _Call

# Methods of nn.Sequential that change its modules in place; `append` and `add_module` put one
# after the last (what they do on a list or another module is no concern here: V.seq).
GROWS = frozenset({"append", "add_module", "extend", "insert", "pop"})


class SequentialOps:
    """nn.Sequential's construction and growth (a mixin of TorchOps)."""

    def _q_sequential(self, c: _Call) -> V:
        return self.sequential_of(c.node, list(c.node.args), c.vals)

    def sequential_of(self, call: cst.Call, args: list[cst.Arg], vals: list[V]) -> V:
        """The Sequential that `call` makes of the modules `args` (evaluated: `vals`)."""
        if args and args[-1].star == "*":
            # `nn.Sequential(*layers)`: the module the list ends with, when the function's last
            # statement that reads the list appends it (`layers.append(nn.Sigmoid())`)
            tail = self._list_tail(call, args[-1].value)
            ends = tail is not None and tail.module
            return V(module=True, seq=True, callret=tail.callret if ends else None, nonneg=ends and tail.nonneg,
                     params=True)
        last = vals[-1] if vals else UNKNOWN
        # (params: a layer of it may have weights; only known parameter-free modules have none)
        free = all(self._param_free(a.value) for a in args)
        # the last module that changes the sign (a Dropout or a pooling after a ReLU does not)
        k = len(args) - 1
        while k > 0 and not args[k].star and self._sign_keeping(args[k].value):
            k -= 1
        signed = vals[k] if 0 <= k < len(vals) else UNKNOWN
        return V(module=True, seq=True, callret=last.callret, nonneg=signed.module and signed.nonneg,
                 params=not free)

    def _q_module_list(self, c: _Call) -> V:
        """`nn.ModuleList()`, `nn.ModuleList([A(), B(...)])`, `nn.ModuleList([A(k) for k in ks])`:
        a module that holds instances of those classes of the file (none yet for an empty one)."""
        listed = c.pos[0] if c.pos else c.kw.get("modules")
        return V(module=True, leaf=True, holds=frozenset() if listed is None else self._instances_in(listed))

    def _instances_in(self, listed: cst.BaseExpression) -> frozenset[str] | None:
        """The classes of the file whose instances a list display or comprehension makes, when
        each of its items is a call of one (`[A(), B(k)]`, `[A(k) for k in ks]`); else None."""
        if type(listed) in (cst.ListComp, cst.GeneratorExp):
            items = [listed.elt]
        elif type(listed) in (cst.List, cst.Tuple):
            items = [el.value for el in listed.elements]
            if any(type(el) is not cst.Element for el in listed.elements):
                return None  # `[*blocks]`
        else:
            return None
        out = set()
        for item in items:
            cls = self._instance_class(item)
            if cls is None:
                return None
            out.add(cls)
        return frozenset(out)

    def _instance_class(self, node: cst.BaseExpression) -> str | None:
        """The class of the file that `node`, a call of it, makes an instance of (an autograd
        Function's aside)."""
        if type(node) is not cst.Call or type(node.func) is not cst.Name:
            return None
        name = node.func.value
        x = self.x
        return name if name in x.local_classes and name not in x.autograd_classes and name not in self.env else None

    def module_list_grown(self, node: cst.Call, recv: cst.BaseExpression, meth: str) -> bool:
        """`self.blocks.append(Block())`, `.insert(i, Block())` on a ModuleList whose items are
        known (`V.holds`): the item's class joins them; anything else put there (an `extend`, an
        item of no known class of the file) leaves them unknown. Whether the receiver was one."""
        key = dotted(recv)
        held = self.env.get(key) if key is not None else None
        if held is None or held.holds is None:
            return False
        added = _arg(node, 0, "module") if meth == "append" else _arg(node, 1, "module") if meth == "insert" else None
        kinds = frozenset()
        for a in node.args:
            v = self.ev(a.value)
            if a.value is added:
                kinds = v.inst
        if meth == "pop":
            return True
        local = kinds and all(k in self.x.local_classes and k not in self.x.autograd_classes for k in kinds)
        self.env[key] = replace(held, holds=held.holds | kinds if local else None)
        return True

    def module_list_item(self, base: V, node: cst.Subscript) -> V | None:
        """`self.schedulers[i]` of a ModuleList each of whose items is an instance of the classes
        it holds: one of them (a slice is no item)."""
        if not base.holds or len(node.slice) != 1 or type(node.slice[0].slice) is not cst.Index:
            return None
        return V(inst=base.holds, leaf=True, module=True)

    def _param_free(self, node: cst.BaseExpression) -> bool:
        return type(node) is cst.Call and not PARAM_FREE_MODULES.isdisjoint(self.x.q(node.func))

    def _sign_keeping(self, node: cst.BaseExpression) -> bool:
        return type(node) is cst.Call and not SIGN_KEEPING_MODULES.isdisjoint(self.x.q(node.func))

    def _list_tail(self, call: cst.Call, listed: cst.BaseExpression) -> V | None:
        """What the list `listed` ends with where `call` reads it (source/list_ends.py: which item
        the function's statements put there last), as this walk evaluated it; None when unknown."""
        fn = getattr(self, "fn_node", None)
        item = list_end(fn, call, listed) if fn is not None else None
        if item is None:
            return None
        got = self.memo.get(id(item))
        if got is None and self.x.muted:
            got = self.ev(item)  # a builder read ahead of its turn (function_returns)
        return got

    def sequential_grown(self, node: cst.Call, recv: cst.BaseExpression, meth: str) -> V | None:
        """`model.add_module("softmax", nn.Softmax(dim=1))`, `model.append(nn.Sigmoid())` on a
        Sequential a name (or `self.x`) holds: its call now gives what the added module's does
        (`extend`, `insert`, `pop`: its last module is no longer known). What the method call
        gives (None for add_module, the Sequential itself for append and extend); None when the
        receiver is not a Sequential."""
        key = dotted(recv)
        if key == "self":
            self._own_modules_changed()
            return None
        held = self.env.get(key) if key is not None else None
        if held is None or not held.seq:
            return None
        added = _arg(node, 1, "module") if meth == "add_module" else _arg(node, 0, "module") \
            if meth == "append" else None
        for a in node.args:
            self.ev(a.value)
        if added is None:
            # (what `extend` or `insert` adds may have weights; `pop` removes none that matters)
            self.env[key] = tail_unknown(held, grown=meth != "pop")
        else:
            module = self.ev(added)
            # (a Dropout or a pooling after a ReLU keeps its output's sign)
            nonneg = held.nonneg if self._sign_keeping(added) else module.module and module.nonneg
            self.env[key] = replace(held, callret=module.callret, nonneg=nonneg,
                                    params=held.params or not self._param_free(added))
        return self.env[key] if meth in ("append", "extend") else UNKNOWN

    def sequential_item_set(self, target: cst.Subscript) -> None:
        """`model[-1] = nn.Identity()`, `del model[-1]` on a Sequential: its last module is no
        longer known."""
        key = dotted(target.value)
        if key == "self":
            self._own_modules_changed()
            return
        held = self.env.get(key) if key is not None else None
        if held is not None and held.seq:
            self.env[key] = tail_unknown(held)
        elif held is not None and held.holds is not None:
            self.env[key] = replace(held, holds=None)  # `self.blocks[0] = other`

    def _own_modules_changed(self) -> None:
        """`self.add_module(...)`, `self.append(...)`, `del self[-1]` in a method of the class: its
        last module is no longer the one its `super().__init__` was given (wherever the method
        runs, on whichever path), for it and for its subclasses."""
        if self.cls is not None:
            self.cls.changes_modules = True

    # -- subclasses: `class Head(nn.Sequential)` handing its modules to `super().__init__` --------
    def sequential_base_init(self, node: cst.Call) -> None:
        """`super().__init__(nn.LazyLinear(1), nn.Sigmoid())` in the `__init__` of a subclass of
        nn.Sequential (directly, or through a class of the file that hands its `*modules` on as
        they are): the Sequential its instances are (ClassCtx.sequential). A subclass whose
        `__init__` itself hands its `*modules` on is marked so (ClassCtx.hands_modules), for its
        own subclasses."""
        cls = self.cls
        if cls is None or self.name != "__init__" or not self.sequential_class(cls):
            return
        pos = [a for a in node.args if a.keyword is None]
        star = self.fn_node.params.star_arg if self.fn_node is not None else None
        if len(pos) == 1 and pos[0].star == "*" and type(star) is cst.Param and \
                type(pos[0].value) is cst.Name and pos[0].value.value == star.name.value:
            cls.hands_modules = True
            return
        if any(a.star == "**" for a in pos):
            return
        cls.sequential = self.sequential_of(node, pos, [self.ev(a.value) for a in pos])

    def sequential_class(self, cls) -> bool:
        """Whether instances of the class `cls` (a ClassCtx) are nn.Sequential's, with
        Sequential's forward: a base is nn.Sequential, or a class of the file that is one and
        hands its `*modules` to it; none of them defines forward."""
        if "forward" in cls.methods:
            return False
        if "torch.nn.Sequential" in cls.bases:
            return True
        x = self.x
        for b in cls.bases:
            if b in x.local_classes and b not in x.class_ctxs and b != cls.name:
                # a base of the file not walked yet: this unit is walked again once it is
                x.member_readers.setdefault(b, set()).add(x.unit)
                x.stale.add(x.unit)
        ctxs = x.class_ctxs
        return any(b in ctxs and ctxs[b].hands_modules and not ctxs[b].changes_modules
                   and "forward" not in ctxs[b].methods for b in cls.bases)


def sequential_returns(cls) -> str | None:
    """What calling an instance of the class (a ClassCtx) with Sequential's own forward gives,
    when its `super().__init__` named its modules: a probability kind, else None
    (NumClass.returns of a class with no forward of its own)."""
    made = cls.sequential
    return made.callret if made is not None and "forward" not in cls.methods and not cls.changes_modules else None


def tail_unknown(held: V, grown: bool = False) -> V:
    """A Sequential whose last module is not known: a module still, its call's kind unknown
    (`grown`: given modules that are not known, which may have parameters)."""
    return replace(held, callret=None, nonneg=False, params=held.params or grown)
