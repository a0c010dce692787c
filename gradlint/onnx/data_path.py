"""The unit DAG of a lowered ONNX graph between a path's input and its exits, read as a node
sequence (lower.py builds it: the main input to the main output, or an input beside it to the
values the main path reads from it): a fork whose branches meet again in an `Add` with the fork's
own value is a residual block, any other fork-and-join one `Opaque` node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradlint.findings import GraphNode
from gradlint.model.ir import Activation, Node, Opaque, Param, Recurrent, Residual

if TYPE_CHECKING:
    from gradlint.onnx.lower import Lowering, Unit


ENTRY, EXIT = -1, -2


class DataPath:
    """The unit DAG between the main input and the main output, read as a node sequence; or, for
    an input beside the main one (`into`: the main input), between it and the values the main
    path reads from it (`exits`), without the units of the main path (`skip`)."""

    def __init__(self, low: Lowering, units: list[Unit], main_in: str, exits: list[str] | None = None,
                 skip: frozenset[int] = frozenset(), into: str | None = None) -> None:
        self.low = low
        self.units = units
        self.into = into
        self.dynamic, self.reached = dynamic, reached = low._reach(units, main_in, skip)
        producer: dict[str, int] = {main_in: ENTRY}
        for k in reached:
            for o in units[k].outputs:
                producer[o] = k
        if exits is None:
            exits = [o for o in low.g.outputs if o in dynamic][:1]
        ends = list(dict.fromkeys(producer[o] for o in exits if o in dynamic))
        self.succ: dict[int, list[int]] = {ENTRY: [], EXIT: []}
        self.pred: dict[int, list[int]] = {ENTRY: [], EXIT: []}
        for k in reached:
            self.succ.setdefault(k, [])
            self.pred.setdefault(k, [])
            for x in units[k].inputs:
                p = producer.get(x)
                if p is not None and p not in self.pred[k]:
                    self.pred[k].append(p)
                    self.succ[p].append(k)
        self.ok = bool(ends)
        for k in ends:
            self.pred[EXIT].append(k)
            self.succ[k].append(EXIT)
        self._prune()
        order = [ENTRY] + [k for k in reached if k in self.succ] + [EXIT]
        self.pos = {k: n for n, k in enumerate(order)}
        self.ipdom = self._postdominators(order)
        # For the coverage report: the IR each unit was read as, the units a fork or join left
        # unread (with the reason), and the adds read as residual joins.
        self.seen: dict[int, list[Node]] = {}
        self.hidden: dict[int, str] = {}
        self.joins: set[int] = set()
        # walk's answers by (first, stop, emit_first): a fork's branches were walked again at
        # every fork around them (a 43-node ladder of diamonds never ended)
        self._walks: dict[tuple[int, int, bool], tuple[Node, ...]] = {}

    def _prune(self) -> None:
        """Keep only units on some path to the main output."""
        live = {EXIT}
        stack = [EXIT]
        while stack:
            k = stack.pop()
            for p in self.pred.get(k, []):
                if p not in live:
                    live.add(p)
                    stack.append(p)
        for k in list(self.succ):
            if k not in live:
                del self.succ[k]
                self.pred.pop(k, None)
        for k in self.succ:
            self.succ[k] = [s for s in self.succ[k] if s in live]
            self.pred[k] = [p for p in self.pred.get(k, []) if p in live]

    def _postdominators(self, order: list[int]) -> dict[int, int]:
        ipdom = {EXIT: EXIT}
        for k in reversed(order[:-1]):
            succs = self.succ.get(k, [])
            if not succs:
                ipdom[k] = EXIT
                continue
            d = succs[0]
            for s in succs[1:]:
                d = self._intersect(d, s, ipdom)
            ipdom[k] = d
        return ipdom

    def _intersect(self, a: int, b: int, ipdom: dict[int, int]) -> int:
        while a != b:
            if self.pos[a] < self.pos[b]:
                a = ipdom[a]
            else:
                b = ipdom[b]
        return a

    def lower(self) -> list[Node]:
        if not self.ok:
            return []
        return self.walk(ENTRY, EXIT, emit_first=False)

    def ir(self, k: int) -> list[Node]:
        u = self.units[k]
        nodes = list(u.ir) if u.ir is not None else self.low.node_ir(u.head)
        if u.ir is None and self._adds_a_value_from_elsewhere(k):
            nodes = []  # a bias from another input (a conditioning vector): as a constant's
        self.seen[k] = nodes
        return nodes

    def ref(self, k: int) -> GraphNode:
        return self.low.g.ref(self.units[k].head)

    def walk(self, first: int, stop: int, emit_first: bool = True) -> list[Node]:
        key = (first, stop, emit_first)
        done = self._walks.get(key)
        if done is None:
            done = self._walks[key] = tuple(self._walk(first, stop, emit_first))
        return list(done)

    def _walk(self, first: int, stop: int, emit_first: bool) -> list[Node]:
        out: list[Node] = []
        k, emit = first, emit_first
        guard = 0
        while k != stop and k != EXIT and guard < 100000:
            guard += 1
            if emit:
                out.extend(self.ir(k))
            succs = self.succ.get(k, [])
            if not succs:
                break
            if len(succs) == 1:
                nxt = succs[0]
                if nxt != stop and nxt != EXIT and len(self.pred[nxt]) > 1:
                    # A join whose fork is not on this walk: the structure is not nested.
                    ref = self.ref(nxt)
                    out.append(Opaque(name=ref.name, what=f"{ref.op_type} joining paths", origin=ref))
                    self.hidden.setdefault(nxt, "a join of paths that do not nest")
                    break
                k, emit = nxt, True
                continue
            m = self.ipdom[k]
            out.extend(self.fork(k, succs, m))
            k, emit = m, False
        return out

    def fork(self, f: int, succs: list[int], m: int) -> list[Node]:
        """The nodes of a fork at f whose branches meet at m (m's own node included)."""
        if m != EXIT and self._is_add_join(m) and len(succs) == 2:
            from gradlint.onnx.lower import module_path  # (lower.py imports this module)

            ref = self.ref(m)
            name = module_path(ref.name) if ref.name.startswith("/") else ref.name
            if m in succs:
                other = succs[0] if succs[1] == m else succs[1]
                self.joins.add(m)
                return [Residual(body=tuple(self.walk(other, m)), name=name, origin=ref)]
            branches = [self.walk(s, m) for s in succs]
            skips = [b for b in branches if _is_shortcut(b)]
            if skips:
                skip = min(skips, key=len)
                body = branches[1] if skip is branches[0] else branches[0]
                scale = self._scalar_scale(succs[branches.index(skip)], m)
                self.joins.add(m)
                return [Residual(body=tuple(body), name=name, origin=ref, skip_scale=scale)]
        ref = self.ref(m) if m != EXIT else self.ref(f)
        what = (f"{ref.op_type} joining {len(succs)} branches" if m != EXIT
                else f"{len(succs)} branches to the outputs" if self.into is None
                else f"{len(succs)} branches read by the path from {self.into}")
        for k in self._region(succs, m):
            self.hidden[k] = "inside a fork and join that is not a residual (attention, gating, concatenation)"
        return [Opaque(name=ref.name, what=what, origin=ref)]

    def _region(self, succs: list[int], m: int) -> set[int]:
        """The units from a fork's successors up to and including its join m."""
        region: set[int] = set()
        stack = [s for s in succs if s != EXIT]
        while stack:
            k = stack.pop()
            if k in region:
                continue
            region.add(k)
            if k != m:
                stack.extend(s for s in self.succ.get(k, []) if s != EXIT)
        return region

    def _adds_a_value_from_elsewhere(self, k: int) -> bool:
        """An Add/Sub of one value on this path and one that depends on no value of it (another
        input's `e` in `W h + e`): the gradient passes to the path's operand unchanged."""
        u = self.units[k]
        if self.low.g.ops[u.head] not in ("Add", "Sub") or len(self.pred.get(k, [])) != 1:
            return False
        ins = [x for x in self.low.nodes[u.head].input if x and not self.low.g.is_static(x)]
        return len(ins) == 2 and sum(x in self.dynamic for x in ins) == 1

    def _is_add_join(self, m: int) -> bool:
        u = self.units[m]
        return ((u.join or (u.ir is None and self.low.g.ops[u.head] == "Add"))
                and len(self.pred.get(m, [])) == 2)

    def _scalar_scale(self, s: int, m: int) -> float | None:
        """DeepNorm-style alpha: the skip branch is one Mul by a scalar constant."""
        u = self.units[s]
        node = self.low.nodes[u.head]
        if u.ir is not None or self.low.g.ops[u.head] != "Mul" or self.succ.get(s) != [m]:
            return None
        for x in node.input:
            if x and self.low.g.is_static(x):
                return self.low.g.scalar(x)
        return None


def _is_shortcut(branch: list[Node]) -> bool:
    """A projection shortcut: at most one Param, no activation (conv1x1 + BN, a scale)."""
    params = sum(isinstance(n, Param) for n in branch)
    acts = sum(isinstance(n, (Activation, Recurrent, Residual)) for n in branch)
    return params <= 1 and acts == 0 and all(not isinstance(n, Opaque) or "by a constant" in n.what for n in branch)
