"""nn.Sequential as the numerics walk reads it: its call gives what its last module's call gives
(a softmax, a ReLU's output...), from the modules its constructor is given and from the ones
`add_module`/`append` put after them.

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
        held = self.env.get(key) if key is not None else None
        if held is not None and held.seq:
            self.env[key] = tail_unknown(held)


def tail_unknown(held: V, grown: bool = False) -> V:
    """A Sequential whose last module is not known: a module still, its call's kind unknown
    (`grown`: given modules that are not known, which may have parameters)."""
    return replace(held, callret=None, nonneg=False, params=held.params or grown)
