"""Numerically unsafe ONNX graph patterns, matched on the GraphIndex.

Each match becomes a `GraphHazard` named by what it is, with the kinds the Python front-end
gives its Sites (log_of_probability, sqrt_near_zero, divide_by_norm, acos_near_one,
unsafe_where_branch); the numerics rule that selects the kind words the finding
(SiteRule.graph_hazards), so the rule stays one class for Python and ONNX. Every graph is
searched, the bodies of If/Loop/Scan included. Operands that depend on no graph input (weights,
constants, shapes) never match: no gradient flows there.
"""

from __future__ import annotations

from typing import Any, Iterator

from gradlint.facts.graph import GraphHazard
from gradlint.findings import GraphNode
from gradlint.onnx.graph import GraphIndex, attr
from gradlint.onnx.ops import MS, NORMS, SKIP_NORMS, fused_activation, layer_op, quantized_relu
from gradlint.onnx.provenance import aten_op

Found = tuple[GraphIndex, int]


def find_hazards(root: GraphIndex) -> list[GraphHazard]:
    out: list[GraphHazard] = []
    for g in root.walk():
        for i, node in enumerate(g.nodes):
            # Keyed by domain-qualified op: a custom domain's `Log` is not ONNX's.
            for check in _CHECKS.get(g.ops[i], ()):
                out.extend(check(g, i))
    return out


# -- helpers ------------------------------------------------------------------------------------

def _op(found: Found | None) -> str | None:
    return found[0].ops[found[1]] if found else None


def _positive(g: GraphIndex, name: str) -> bool:
    v = g.scalar(name) if name else None
    return v is not None and v > 0


def _clip_bounds(g: GraphIndex, i: int) -> tuple[float | None, float | None]:
    node = g.nodes[i]
    if g.opset < 11:
        lo, hi = attr(node, "min"), attr(node, "max")
        return (float(lo) if lo is not None else None, float(hi) if hi is not None else None)
    lo = g.scalar(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    hi = g.scalar(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    return lo, hi


def _eps_guard(found: Found) -> str | None:
    """How a value is kept away from zero, when its producer does so."""
    g, i = found
    node = g.nodes[i]
    if node.op_type == "Add" and any(_positive(g, x) for x in node.input):
        return "an eps Add"
    if node.op_type == "Max" and any(_positive(g, x) for x in node.input):
        return "a Max with a positive constant"
    if node.op_type == "Clip":
        lo, _ = _clip_bounds(g, i)
        if lo is not None and lo > 0:
            return "a Clip with min > 0"
    return None


def _square(found: Found | None) -> bool:
    if found is None:
        return False
    g, i = found
    node = g.nodes[i]
    if node.op_type == "Pow" and len(node.input) == 2 and g.scalar(node.input[1]) == 2.0:
        return True
    return node.op_type == "Mul" and len(node.input) == 2 and node.input[0] == node.input[1]


def _sum_of_squares(g: GraphIndex, name: str) -> str | None:
    """What makes `name` a sum of squares that can be exactly zero, or None (safe or unknown)."""
    found = g.through(name)
    if found is None or _eps_guard(found):
        return None
    fg, i = found
    node = fg.nodes[i]
    if node.op_type == "ReduceSumSquare":
        return "ReduceSumSquare"
    if node.op_type in ("ReduceSum", "ReduceMean") and node.input and _square(fg.through(node.input[0])):
        return f"{node.op_type} of squares"
    if _square(found):
        return "a square"
    if node.op_type == "Add" and len(node.input) == 2:
        parts = [_sum_of_squares(fg, x) for x in node.input]
        if all(parts):
            return "a sum of squares"
    return None


def _unsafe_norm(g: GraphIndex, name: str) -> str | None:
    """What makes `name` a norm or standard deviation with no eps, or None."""
    found = g.through(name)
    if found is None or _eps_guard(found):
        return None
    fg, i = found
    node = fg.nodes[i]
    if node.op_type == "ReduceL2":
        return "ReduceL2 (a vector norm)"
    if node.op_type == "Sqrt" or (node.op_type == "Pow" and len(node.input) == 2 and fg.scalar(node.input[1]) == 0.5):
        inner = _sum_of_squares(fg, node.input[0])
        if inner:
            return f"{node.op_type} of {inner}"
    return None


def _normed_vector(g: GraphIndex, name: str) -> tuple[GraphIndex, str] | None:
    """The one vector a norm (ReduceL2, or the root of its sum of squares) is taken of; None for
    a sum of several vectors' squares."""
    found = g.through(name)
    if found is None:
        return None
    fg, i = found
    node = fg.nodes[i]
    if node.op_type == "ReduceL2" and node.input:
        return fg, node.input[0]
    if node.op_type in ("Sqrt", "Pow") and node.input:
        return _squared_vector(fg, node.input[0])
    return None


def _squared_vector(g: GraphIndex, name: str) -> tuple[GraphIndex, str] | None:
    """The one vector whose squares `name` sums (ReduceSumSquare(v), ReduceSum(v * v), v ** 2)."""
    found = g.through(name)
    if found is None:
        return None
    fg, i = found
    node = fg.nodes[i]
    if node.op_type == "ReduceSumSquare" and node.input:
        return fg, node.input[0]
    if node.op_type in ("ReduceSum", "ReduceMean") and node.input:
        found = fg.through(node.input[0])
        if found is None:
            return None
        fg, i = found
        node = fg.nodes[i]
    return (fg, node.input[0]) if _square((fg, i)) else None


def _learned_vector(vector: tuple[GraphIndex, str] | None) -> dict[str, str]:
    """`learned`: the learned layer whose output is the vector (learned_output), when it is one."""
    learned = learned_output(*vector) if vector is not None else None
    return {"learned": learned} if learned else {}


# Never all zero, as the source reader takes them: the output of a layer that adds its own
# parameters (its bias; a norm's shift), and probabilities (strictly positive).
_POSITIVE = frozenset({"Softmax", "Sigmoid"})


def learned_output(g: GraphIndex, name: str, depth: int = 0) -> str | None:
    """The learned layer whose output `name` is (its op type), as the Python front-end counts one
    (a `dense` value: a Linear/Conv/Embedding or norm module's output, a sum of such outputs, a
    softmax or sigmoid), through reshapes and bias adds; None for anything else (a difference, an
    activation that can be zero, the layer's output plus its own input, a rescaling)."""
    found = g.through(name)
    if found is None or depth > 16:
        return None
    fg, i = found
    key, node = fg.ops[i], fg.nodes[i]
    ins = [x for x in node.input if x]
    op = layer_op(key)
    if op == "Gather":
        learned = len(ins) >= 2 and fg.is_static(ins[0]) and not fg.is_static(ins[1])
        return "Gather (an embedding)" if learned else None
    if op is not None:
        weights = [x for x in ins[:2] if fg.is_static(x)] if op in ("MatMul", "Gemm") else ins[1:2]
        if len(weights) != 1 or not fg.is_static(weights[0]) or quantized_relu(fg, i):
            return None
        if key.startswith(f"{MS}:") and fused_activation(node) is not None:
            return None  # an activation fused into the layer
        return node.op_type
    if key in NORMS or key in SKIP_NORMS:
        scale = ins[2] if key in SKIP_NORMS else (ins[1] if len(ins) > 1 else "")
        return node.op_type if key != "LRN" and scale and fg.is_static(scale) else None
    if key in _POSITIVE:
        return key
    if key == "Add" and len(ins) == 2:
        dynamic = [x for x in ins if not fg.is_static(x)]
        if len(dynamic) == 1:
            return learned_output(fg, dynamic[0], depth + 1)  # a bias
        parts = [learned_output(fg, x, depth + 1) for x in dynamic]
        if len(parts) == 2 and all(parts):
            return "Add of learned outputs"
    return None


def _hazard(kind: str, g: GraphIndex, i: int, **data: Any) -> GraphHazard:
    ref = g.ref(i)
    return GraphHazard(kind=kind, node=ref, data={"node": ref.name, "op_type": ref.op_type, "index": ref.index, **data})


# -- Log of a probability ---------------------------------------------------------------------

# The torch ops whose decompositions may write a Log of a Sigmoid or Softmax.
_STABLE_LOGS = frozenset({"aten.log_sigmoid", "aten.log_sigmoid_forward", "aten._log_softmax", "aten.log_softmax"})


def _log_of_probability(g: GraphIndex, i: int) -> Iterator[GraphHazard]:
    node = g.nodes[i]
    if not node.input or g.is_static(node.input[0]):
        return
    found = g.through(node.input[0])
    op = _op(found)
    if op in ("Softmax", "Sigmoid"):
        op_of = aten_op(node)
        if op_of in _STABLE_LOGS and aten_op(found[0].nodes[found[1]]) == op_of:
            # one `F.logsigmoid` (or `log_softmax`) the dynamo exporter wrote as Log(Sigmoid): the
            # user's code is the stable op
            return
        yield _hazard("log_of_probability", g, i, producer=op)
        return
    if op == "Sub" and found is not None:
        fg, j = found
        a, b = (list(fg.nodes[j].input) + ["", ""])[:2]
        if fg.scalar(a) == 1.0 and _op(fg.through(b)) == "Sigmoid":
            yield _hazard("log_of_probability", g, i, producer="1-Sigmoid")
    elif op == "Div" and found is not None:
        # Log(p / q): 0 where p underflows, inf where q does (a KL divergence written by hand)
        fg, j = found
        for operand in list(fg.nodes[j].input)[:2]:
            inner = _op(fg.through(operand))
            if inner in ("Softmax", "Sigmoid") and not fg.is_static(operand):
                yield _hazard("log_of_probability", g, i, producer=inner, quotient=True)
                return
    elif op in ("Add", "Clip", "Max") and found is not None:
        # Log(p / q + eps), Log(Clip(p / q, eps)): inf where q underflows all the same, and the
        # Div's backward is NaN there
        fg, j = found
        for operand in list(fg.nodes[j].input)[:1] if op == "Clip" else list(fg.nodes[j].input)[:2]:
            div = fg.through(operand)
            if _op(div) != "Div" or fg.is_static(operand):
                continue
            dg, k = div
            divisor = (list(dg.nodes[k].input) + ["", ""])[1]
            inner = _op(dg.through(divisor))
            if inner in ("Softmax", "Sigmoid") and not dg.is_static(divisor):
                yield _hazard("log_of_probability", g, i, producer=inner, quotient=True)
                return


# -- Sqrt of what can be exactly zero -----------------------------------------------------------

def _sqrt_near_zero(g: GraphIndex, i: int) -> Iterator[GraphHazard]:
    node = g.nodes[i]
    if not node.input or g.is_static(node.input[0]):
        return
    if node.op_type == "Pow" and not (len(node.input) == 2 and g.scalar(node.input[1]) == 0.5):
        return
    what = _sum_of_squares(g, node.input[0])
    if what:
        yield _hazard("sqrt_near_zero", g, i, operand=what, **_learned_vector(_squared_vector(g, node.input[0])))


# -- Division by a norm without eps ------------------------------------------------------------

def _divide_by_norm(g: GraphIndex, i: int) -> Iterator[GraphHazard]:
    node = g.nodes[i]
    divisor = node.input[1] if node.op_type == "Div" and len(node.input) == 2 else (
        node.input[0] if node.op_type == "Reciprocal" and node.input else None)
    if not divisor or g.is_static(divisor):
        return
    what = _unsafe_norm(g, divisor)
    if what:
        # the vector the norm is of, when it is a learned layer's output: the rule decides
        yield _hazard("divide_by_norm", g, i, divisor=what, **_learned_vector(_normed_vector(g, divisor)))


# -- acos/asin of a value that may reach ±1 ------------------------------------------------------

def _acos_near_one(g: GraphIndex, i: int) -> Iterator[GraphHazard]:
    node = g.nodes[i]
    if not node.input or g.is_static(node.input[0]):
        return
    lo, hi = _bounds(g, node.input[0])
    if lo is not None and hi is not None and lo > -1.0 and hi < 1.0:
        return
    yield _hazard("acos_near_one", g, i, lower=lo, upper=hi)


def _bounds(g: GraphIndex, name: str) -> tuple[float | None, float | None]:
    """The constant bounds a value is clamped to by Clip or Min/Max, as far as they are known."""
    lo = hi = None
    for _ in range(4):
        found = g.through(name)
        if found is None:
            break
        fg, i = found
        node = fg.nodes[i]
        if node.op_type == "Clip":
            c_lo, c_hi = _clip_bounds(fg, i)
            lo = c_lo if lo is None else lo
            hi = c_hi if hi is None else hi
            name, g = node.input[0], fg
        elif node.op_type in ("Min", "Max") and len(node.input) == 2:
            consts = [fg.scalar(x) for x in node.input]
            dyn = [x for x, c in zip(node.input, consts) if c is None]
            known = [c for c in consts if c is not None]
            if len(dyn) != 1 or not known:
                break
            if node.op_type == "Min" and hi is None:
                hi = known[0]
            elif node.op_type == "Max" and lo is None:
                lo = known[0]
            name, g = dyn[0], fg
        else:
            break
        if lo is not None and hi is not None:
            break
    return lo, hi


# -- Where with a NaN branch ---------------------------------------------------------------------

_UNSAFE = {"Log": 0, "Sqrt": 0, "Reciprocal": 0, "Acos": 0, "Asin": 0, "Div": 1}


def _unsafe_where_branch(g: GraphIndex, i: int) -> Iterator[GraphHazard]:
    node = g.nodes[i]
    for pos in (1, 2):
        if len(node.input) <= pos or not node.input[pos]:
            continue
        found = g.through(node.input[pos])
        if found is None:
            continue
        fg, j = found
        branch = fg.nodes[j]
        k = _UNSAFE.get(fg.ops[j])
        if k is None or len(branch.input) <= k:
            continue
        operand = branch.input[k]
        if fg.is_static(operand) or _guarded(fg, operand):
            continue
        yield _hazard("unsafe_where_branch", g, i, branch=branch.op_type, branch_node=fg.ref(j).name)
        return


def _guarded(g: GraphIndex, name: str) -> bool:
    found = g.through(name)
    if found is None:
        return False
    fg, i = found
    op = fg.ops[i]
    # A Where (the double-where trick), an Exp, a Clip or Max: the operand was made safe.
    return bool(_eps_guard(found)) or op in ("Where", "Exp", "Softplus", "Clip", "Max", "Min")


_CHECKS = {
    "Log": (_log_of_probability,),
    "Sqrt": (_sqrt_near_zero,),
    "Pow": (_sqrt_near_zero,),
    "Div": (_divide_by_norm,),
    "Reciprocal": (_divide_by_norm,),
    "Acos": (_acos_near_one,),
    "Asin": (_acos_near_one,),
    "Where": (_unsafe_where_branch,),
}
