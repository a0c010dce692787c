"""Multi-node patterns an exporter emits for one operation, recognised so the lowering can fuse
them into one unit: LayerNorm and RMSNorm spelled out, GELU in its erf and tanh forms, SiLU as
x*sigmoid(x) and other gated forms, Softplus with torch's threshold. Each matcher, anchored at one
node, returns (member nodes, input, output, IR node) or None; Lowering checks that only the
output leaves the group.
"""

from __future__ import annotations

import math

from gradlint.model.ir import Activation, Norm
from gradlint.onnx.graph import GraphIndex, attr


class Patterns:
    """Mixed into Lowering: needs `g` (the GraphIndex), `nodes` and `node_name(i)`."""

    g: GraphIndex

    def node_name(self, i: int) -> str:  # pragma: no cover - provided by Lowering
        raise NotImplementedError

    def _closed(self, members: list[int], out: str) -> bool:
        """Only `out` may leave the group: an intermediate value used elsewhere forbids the fusion."""
        ms = set(members)
        for m in ms:
            for o in self.nodes[m].output:
                if o and o != out and (any(c not in ms for c in self.g.consumers.get(o, ())) or o in self.g.outputs):
                    return False
        return True

    def _prod(self, name: str, op: str | tuple[str, ...]) -> int | None:
        i = self.g.producers.get(name)
        if i is None:
            return None
        ops = (op,) if isinstance(op, str) else op
        return i if self.g.ops[i] in ops else None

    def _one_consumer(self, name: str, op: str | tuple[str, ...]) -> int | None:
        cons = self.g.consumers.get(name, [])
        if len(cons) != 1:
            return None
        ops = (op,) if isinstance(op, str) else op
        return cons[0] if self.g.ops[cons[0]] in ops else None

    def _other(self, i: int, name: str) -> str | None:
        ins = [x for x in self.nodes[i].input if x]
        if len(ins) != 2 or name not in ins:
            return None
        return ins[1] if ins[0] == name else ins[0]

    def _square_of(self, name: str) -> tuple[int, str] | None:
        """(node, x) when name = Pow(x, 2) or Mul(x, x)."""
        i = self._prod(name, ("Pow", "Mul"))
        if i is None:
            return None
        node = self.nodes[i]
        if self.g.ops[i] == "Pow" and len(node.input) == 2 and self.g.scalar(node.input[1]) == 2.0:
            return i, node.input[0]
        if self.g.ops[i] == "Mul" and len(node.input) == 2 and node.input[0] == node.input[1]:
            return i, node.input[0]
        return None

    def _rsqrt_of_mean_square(self, name: str) -> tuple[list[int], str] | None:
        """For name = Sqrt(ReduceMean(sq(x)) [+ eps]): (nodes, x)."""
        s = self._prod(name, "Sqrt")
        if s is None:
            return None
        members = [s]
        inner = self.nodes[s].input[0]
        a = self._prod(inner, "Add")
        if a is not None:
            other = [x for x in self.nodes[a].input if x and self.g.is_static(x)]
            if len(other) != 1:
                return None
            members.append(a)
            inner = next(x for x in self.nodes[a].input if x and x not in other)
        rm = self._prod(inner, "ReduceMean")
        if rm is None:
            return None
        sq = self._square_of(self.nodes[rm].input[0])
        if sq is None:
            return None
        members += [rm, sq[0]]
        return members, sq[1]

    def _absorb_affine(self, members: list[int], out: str) -> str:
        """Follow a norm's Mul(gamma) and Add(beta) by constants into the fused group."""
        for op in ("Mul", "Add"):
            c = self._one_consumer(out, op)
            if c is None:
                continue
            other = self._other(c, out)
            if other is None or not self.g.is_static(other):
                continue
            members.append(c)
            out = self.nodes[c].output[0]
        return out

    def _match_layernorm(self, i: int):
        node = self.nodes[i]
        if self.g.ops[i] not in ("Div", "Mul") or len(node.input) != 2:
            return None
        d, s = node.input
        members = [i]
        if self.g.ops[i] == "Mul":
            # d * Reciprocal(sqrt(...)), either order
            for a, b in ((d, s), (s, d)):
                r = self._reciprocal(b)
                if r is not None:
                    d, s = a, r[1]
                    members.append(r[0])
                    break
            else:
                return None
        sub = self._prod(d, "Sub")
        if sub is None:
            return None
        x, m = self.nodes[sub].input[:2]
        rm = self._prod(m, "ReduceMean")
        if rm is None or self.nodes[rm].input[0] != x:
            return None
        found = self._rsqrt_of_mean_square(s)
        if found is None or found[1] != d:
            return None
        members += [sub, rm] + found[0]
        out = self._absorb_affine(members, node.output[0])
        return members, x, out, Norm(name=self.node_name(i), kind="layer", origin=self.g.ref(i))

    def _match_rmsnorm(self, i: int):
        node = self.nodes[i]
        if self.g.ops[i] not in ("Div", "Mul") or len(node.input) != 2:
            return None
        for x, s in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
            members = [i]
            if self.g.ops[i] == "Mul":
                r = self._reciprocal(s)
                if r is None:
                    continue
                members.append(r[0])
                s = r[1]
            elif s != node.input[1]:
                continue
            found = self._rsqrt_of_mean_square(s)
            if found is not None and found[1] != x:
                # T5 squares x.to(float32): a Cast between x and the square.
                c = self._prod(found[1], "Cast")
                if c is not None and self.nodes[c].input[0] == x:
                    found = (found[0] + [c], x)
            if found is None or found[1] != x:
                continue
            members += found[0]
            out = self._absorb_affine(members, node.output[0])
            return members, x, out, Norm(name=self.node_name(i), kind="rms", origin=self.g.ref(i))
        return None

    def _match_gelu_erf(self, i: int):
        """x * 0.5 * (1 + erf(x / sqrt(2))), the multiplications in any order."""
        node = self.nodes[i]
        if self.g.ops[i] != "Erf":
            return None
        pre = self._prod(node.input[0], ("Div", "Mul"))
        if pre is None:
            return None
        x, c = self.nodes[pre].input[:2]
        k = self.g.scalar(c)
        want = math.sqrt(2.0) if self.g.ops[pre] == "Div" else 1 / math.sqrt(2.0)
        if k is None or abs(k - want) > 1e-3:
            return None
        add = self._one_consumer(node.output[0], "Add")
        if add is None or self.g.scalar(self._other(add, node.output[0]) or "") != 1.0:
            return None
        return self._gelu_tail([pre, i, add], x, self.nodes[add].output[0])

    def _gelu_tail(self, members: list[int], x: str, cur: str):
        """The `x * 0.5 * (1 + f)` end of a GELU, from `cur` = 1 + f: the products in any order."""
        have_x = have_half = False
        for _ in range(2):
            mul = self._one_consumer(cur, "Mul")
            if mul is None:
                return None
            other = self._other(mul, cur)
            if other is None:
                return None
            if other == x and not have_x:
                have_x = True
            elif _near(self.g.scalar(other), 0.5) and not have_half:
                have_half = True
            else:
                h = self._prod(other, "Mul")
                if h is None or have_x or have_half:
                    return None
                if not _near(self.g.scalar(self._other(h, x) or ""), 0.5):
                    return None
                members.append(h)
                have_x = have_half = True
            members.append(mul)
            cur = self.nodes[mul].output[0]
            if have_x and have_half:
                return members, x, cur, Activation(name=self.node_name(mul), fn="gelu", origin=self.g.ref(mul))
        return None

    def _match_gelu_tanh(self, i: int):
        """GELU's tanh form below opset 20 (GPT-2's gelu_new, nn.GELU(approximate='tanh')):
        x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))."""
        if self.g.ops[i] != "Tanh":
            return None
        node = self.nodes[i]
        pre = self._prod(node.input[0], "Mul")
        scaled = self._const_operand(pre) if pre is not None else None
        if scaled is None or not _near(scaled[0], math.sqrt(2 / math.pi), 1e-3):
            return None
        add = self._prod(scaled[1], "Add")
        if add is None or len(self.nodes[add].input) != 2:
            return None
        a, b = self.nodes[add].input
        for x, cubic in ((a, b), (b, a)):
            m = self._prod(cubic, "Mul")
            coef = self._const_operand(m) if m is not None else None
            if coef is None or not _near(coef[0], 0.044715, 1e-4):
                continue
            cube = self._cube_of(coef[1])
            if cube is None or cube[1] != x:
                continue
            one = self._one_consumer(node.output[0], "Add")
            if one is None or self.g.scalar(self._other(one, node.output[0]) or "") != 1.0:
                return None
            return self._gelu_tail([pre, add, m, *cube[0], i, one], x, self.nodes[one].output[0])
        return None

    def _reciprocal(self, name: str) -> tuple[int, str] | None:
        """(node, y) when name = Reciprocal(y) or 1 / y (torch.rsqrt as TorchScript writes it)."""
        j = self._prod(name, ("Reciprocal", "Div"))
        if j is None or not self.nodes[j].input:
            return None
        ins = self.nodes[j].input
        if self.g.ops[j] == "Reciprocal":
            return j, ins[0]
        return (j, ins[1]) if len(ins) == 2 and self.g.scalar(ins[0]) == 1.0 else None

    def _cube_of(self, name: str) -> tuple[list[int], str] | None:
        """(nodes, x) when name = Pow(x, 3), x * (x * x) or (x * x) * x."""
        j = self._prod(name, ("Pow", "Mul"))
        if j is None or len(self.nodes[j].input) != 2:
            return None
        a, b = self.nodes[j].input
        if self.g.ops[j] == "Pow":
            return ([j], a) if self.g.scalar(b) == 3.0 else None
        for x, sq in ((a, b), (b, a)):
            found = self._square_of(sq)
            if found is not None and found[1] == x and self.g.ops[found[0]] == "Mul":
                return [j, found[0]], x
        return None

    def _const_operand(self, j: int) -> tuple[float, str] | None:
        """(the scalar constant, the other operand) of a two-input node with one scalar input."""
        ins = [x for x in self.nodes[j].input if x]
        if len(ins) != 2:
            return None
        for c, other in ((ins[0], ins[1]), (ins[1], ins[0])):
            v = self.g.scalar(c)
            if v is not None and not self.g.is_static(other):
                return v, other
        return None

    def _match_softplus(self, i: int):
        """torch's Softplus(beta, threshold) spelled out: Softplus(beta*x)/beta, and dynamo's
        Where(beta*x > threshold, x, ...) around it (linear above the threshold)."""
        if self.g.ops[i] != "Softplus":
            return None
        node = self.nodes[i]
        xs = x = node.input[0]
        members = [i]
        beta = 1.0
        m = self._prod(xs, "Mul")
        scaled = self._const_operand(m) if m is not None else None
        if scaled is not None and scaled[0] > 0:
            beta, x = scaled
            members.append(m)  # type: ignore[arg-type]
        out = node.output[0]
        if beta != 1.0:
            d = self._one_consumer(out, "Div")
            if d is None or self.nodes[d].input[0] != out or not _near(self.g.scalar(self.nodes[d].input[1]), beta):
                return None
            members.append(d)
            out = self.nodes[d].output[0]
        w = self._one_consumer(out, "Where")
        if w is not None and len(self.nodes[w].input) == 3:
            cond, above, below = self.nodes[w].input
            gt = self._prod(cond, "Greater")
            if (gt is not None and above == x and below == out and self.nodes[gt].input[0] == xs
                    and self.g.scalar(self.nodes[gt].input[1]) is not None):
                members += [gt, w]
                out = self.nodes[w].output[0]
        if len(members) == 1:
            return None  # a plain Softplus is one node
        return members, x, out, Activation(name=self.node_name(i), fn="softplus", param=float(f"{beta:.7g}"),
                                           origin=self.g.ref(i))

    _GATES = {("Sigmoid",): "silu", ("HardSigmoid",): "hardswish", ("Softplus", "Tanh"): "mish"}

    def _match_gated(self, i: int):
        """x * f(x) with f a short chain of unary ops: SiLU, decomposed HardSwish, Mish, QuickGELU."""
        node = self.nodes[i]
        if self.g.ops[i] != "Mul" or len(node.input) != 2:
            return None
        for x, y in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
            chain: list[int] = []
            cur = y
            scale = None
            while len(chain) < 3:
                j = self.g.producers.get(cur)
                if j is None:
                    break
                chain.append(j)
                n = self.nodes[j]
                if self.g.ops[j] == "Mul" and len(n.input) == 2 and x in n.input:
                    scale = self.g.scalar(self._other(j, x) or "")
                    cur = x
                    break
                cur = n.input[0] if n.input else ""
                if cur == x:
                    break
            if cur != x or not chain:
                continue
            ops = tuple(self.g.ops[j] for j in reversed(chain))
            if scale is not None and ops[1:] == ("Sigmoid",) and abs(scale - 1.702) < 1e-3:
                fn = "gelu"
            elif scale is None and ops in self._GATES:
                fn = self._GATES[ops]
                if fn == "hardswish":
                    hs = self.nodes[chain[0]]
                    if abs(float(attr(hs, "alpha", 0.2)) - 1 / 6) > 1e-4:
                        continue
            else:
                continue
            return chain + [i], x, node.output[0], Activation(name=self.node_name(i), fn=fn,
                                                                origin=self.g.ref(i))
        return None


def _near(value: float | None, want: float, tol: float = 1e-6) -> bool:
    return value is not None and abs(value - want) <= tol * max(1.0, abs(want))
