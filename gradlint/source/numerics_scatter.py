"""Grouped sums (`torch_scatter.scatter_add(src, index)`, `out.scatter_add(0, index, src)`,
`index_add`, `segment_csr`): what a sum over groups of `src` is, for the numerics handlers
(numerics_ops' tables). A grouped sum of exps is the denominator of a softmax per group (PyG's
`exp(x) / scatter_add(exp(x), index)[index]`) as `exp(x).sum()` is of a plain one: the same
value as `TorchOps.reduce_value` makes of a sum. Read only for a source that is an exp; any other
grouped sum is left to the generic call rules."""

from __future__ import annotations

import libcst as cst

from gradlint.source.engine.tensors import V, replace

# function -> (position of its source, keyword of it, position of `reduce` or None: a sum always)
_SRC_FIRST = (0, "src")
SCATTER_SUM_FUNCTIONS: dict[str, tuple[int, str, int | None]] = {
    "torch_scatter.scatter_add": (*_SRC_FIRST, None),
    "torch_scatter.scatter_sum": (*_SRC_FIRST, None),
    "torch_scatter.segment_sum_csr": (*_SRC_FIRST, None),
    "torch_scatter.segment_sum_coo": (*_SRC_FIRST, None),
    # scatter(src, index, dim, out, dim_size, reduce="sum"); segment_csr(src, indptr, out, reduce="sum")
    "torch_scatter.scatter": (*_SRC_FIRST, 5),
    "torch_scatter.segment_csr": (*_SRC_FIRST, 3),
    "torch_scatter.segment_coo": (*_SRC_FIRST, 4),
    # torch_geometric.utils.scatter(src, index, dim=0, dim_size=None, reduce="sum")
    "torch_geometric.utils.scatter": (*_SRC_FIRST, 4),
    # torch.scatter_add(input, dim, index, src); torch.index_add(input, dim, index, source)
    "torch.scatter_add": (3, "src", None),
    "torch.index_add": (3, "source", None),
    "torch.scatter_reduce": (3, "src", 4),
}
# method -> (position of its source, keyword of it, position of `reduce` or None)
SCATTER_SUM_METHODS: dict[str, tuple[int, str, int | None]] = {
    "scatter_add": (2, "src", None), "scatter_add_": (2, "src", None),
    "index_add": (2, "source", None), "index_add_": (2, "source", None),
    "scatter_reduce": (2, "src", 3), "scatter_reduce_": (2, "src", 3),
}
_SUMS = frozenset({"sum", "add"})


def _source(c, pos: int, key: str, reduce_at: int | None, reduce_required: bool) -> cst.BaseExpression | None:
    """The source a grouped sum adds up; None when the call reduces otherwise (`reduce="max"`, a
    reduce not written as a literal, scatter_reduce with no reduce) or has no source argument."""
    if reduce_at is not None:
        how = c.kw.get("reduce", c.pos[reduce_at] if len(c.pos) > reduce_at else None)
        if how is None and reduce_required:
            return None
        if how is not None and not (type(how) is cst.SimpleString and how.evaluated_value in _SUMS):
            return None  # (torch_scatter's and PyG's scatter reduce by "sum" by default)
    return c.kw.get(key, c.pos[pos] if len(c.pos) > pos else None)


def q_scatter_sum(ops, c) -> V | None:
    """`scatter_add(src, index, ...)` of torch_scatter or PyG, `torch.scatter_add(t, 0, i, src)`:
    a sum of src, when src is an exp (`sum_exp`); None for any other source."""
    for name in sorted(c.names):
        spec = SCATTER_SUM_FUNCTIONS.get(name)
        if spec is None:
            continue
        src_node = _source(c, *spec, reduce_required=name == "torch.scatter_reduce")
        if src_node is None:
            return None
        src = ops.ev(src_node)
        if not (src.exp or src.weighted):
            return None  # (any other grouped sum: what the call gives by default)
        res = replace(ops.reduce_value(src, mean=False), grouped=True)
        if spec[0] != 0:  # the tensor summed into (torch.scatter_add's input) may carry gradient
            res = replace(res, params=res.params or c.first.params)
        return res
    return None


def m_scatter_sum(ops, c) -> V | None:
    """`out.scatter_add(0, index, src)`, `out.index_add_(0, index, src)`: a sum of src into out."""
    spec = SCATTER_SUM_METHODS.get(c.meth)
    src_node = _source(c, *spec, reduce_required=c.meth.startswith("scatter_reduce")) if spec else None
    if src_node is None:
        return None
    src = ops.ev(src_node)
    if not (src.exp or src.weighted):
        return None  # (the generic method rule keeps the receiver's cut: `from_numpy(a).index_add(...)`)
    res = ops.reduce_value(src, mean=False)
    return replace(res, params=res.params or c.r.params, grouped=True)
