"""nn.Sequential as the numerics walk reads it: its call gives what its last module's call gives
(a softmax, a ReLU's output...), from the modules its constructor is given.

A mixin of the walk's torch handlers (`numerics_ops.TorchOps`): the walk's environment, its
evaluator `ev` and its file extractor `x`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from gradlint.source.engine.tensors import UNKNOWN, V
from gradlint.source.list_ends import list_end
from gradlint.source.numerics_names import PARAM_FREE_MODULES, SIGN_KEEPING_MODULES

if TYPE_CHECKING:
    from gradlint.source.numerics_ops import _Call


class SequentialOps:
    """nn.Sequential's construction (a mixin of TorchOps)."""

    def _q_sequential(self, c: _Call) -> V:
        return self.sequential_of(c.node, list(c.node.args), c.vals)

    def sequential_of(self, call: cst.Call, args: list[cst.Arg], vals: list[V]) -> V:
        """The Sequential that `call` makes of the modules `args` (evaluated: `vals`)."""
        if args and args[-1].star == "*":
            # `nn.Sequential(*layers)`: the module the list ends with, when the function's last
            # statement that reads the list appends it (`layers.append(nn.Sigmoid())`)
            tail = self._list_tail(call, args[-1].value)
            ends = tail is not None and tail.module
            return V(module=True, callret=tail.callret if ends else None, nonneg=ends and tail.nonneg, params=True)
        last = vals[-1] if vals else UNKNOWN
        # (params: a layer of it may have weights; only known parameter-free modules have none)
        free = all(self._param_free(a.value) for a in args)
        # the last module that changes the sign (a Dropout or a pooling after a ReLU does not)
        k = len(args) - 1
        while k > 0 and not args[k].star and self._sign_keeping(args[k].value):
            k -= 1
        signed = vals[k] if 0 <= k < len(vals) else UNKNOWN
        return V(module=True, callret=last.callret, nonneg=signed.module and signed.nonneg, params=not free)

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
