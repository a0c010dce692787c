"""The numerics front-end: def-use through variables, cross-file model outputs, quiet contexts,
pure picklable facts, and no crash on unusual code."""

from __future__ import annotations

import pickle

import pytest

from gradlint import cache
from gradlint.api import check_source
from gradlint.config import Config
from gradlint.facts.files import FileFacts, ModuleSymbols
from gradlint.facts.project import ProjectIndex, Scope
from gradlint.source import parse
from gradlint.source.numerics import extract
from gradlint.facts.numerics import NumClass, NumericsFacts, forward_returns, is_module_class
from gradlint.findings import SourceSpan


def codes(src: str, select: str = "GL3", **files: str) -> list[str]:
    return [f.code for f in check_source(src, Config(select=(select,)), extra_files=files or None)]


def facts(src: str) -> NumericsFacts:
    return extract(parse("x.py", src))


def test_facts_are_picklable_and_free_of_parser_nodes():
    src = ("import torch\nimport torch.nn.functional as F\n\n"
           "def f(z, y):\n    z = torch.nn.Parameter(z)\n"
           "    return torch.log(F.softmax(z, -1)), torch.sqrt((z ** 2).sum())\n")
    f = facts(src)
    assert {s.kind for s in f.sites} == {"log_of_probability", "sqrt_near_zero"}
    assert all(s.pieces is not None for s in f.sites)  # the pieces a fix rewrites travel too
    again = pickle.loads(pickle.dumps(f))  # the process pool sends facts between processes
    assert again == f
    assert cache.loads(cache.dumps(f)) == f  # and the cache stores them as plain JSON


def test_value_followed_through_variables_and_reshapes():
    src = ("import torch\nfrom torch.nn import CrossEntropyLoss\n\n"
           "def head(hidden, labels):\n"
           "    logits = hidden @ hidden.T\n"
           "    scores = logits.softmax(-1)\n"
           "    flat = scores.view(-1, 10)\n"
           "    loss_fct = CrossEntropyLoss()\n"
           "    return loss_fct(flat, labels.view(-1))\n")
    assert codes(src) == ["GL303"]


def test_rebinding_clears_the_value():
    src = ("import torch\nimport torch.nn.functional as F\n\n"
           "def f(z, y):\n    p = F.softmax(z, -1)\n    p = z\n    return F.cross_entropy(p, y)\n")
    assert codes(src) == []


def test_branches_must_agree():
    src = ("import torch\nimport torch.nn.functional as F\n\n"
           "def f(z, y, probs):\n"
           "    if probs:\n        out = F.softmax(z, -1)\n    else:\n        out = z\n"
           "    return F.cross_entropy(out, y)\n")
    assert codes(src) == []
    both = src.replace("        out = z\n", "        out = torch.softmax(z, 1)\n")
    assert codes(both) == ["GL303"]


def test_lightning_self_call_and_module_attributes():
    src = ("import torch\nfrom torch import nn\nimport lightning as L\n\n"
           "class Lit(L.LightningModule):\n"
           "    def __init__(self):\n"
           "        super().__init__()\n"
           "        self.fc = nn.Linear(4, 3)\n"
           "        self.loss_fn = nn.CrossEntropyLoss()\n\n"
           "    def forward(self, x):\n"
           "        return torch.softmax(self.fc(x), dim=-1)\n\n"
           "    def training_step(self, batch, idx):\n"
           "        x, y = batch\n"
           "        return self.loss_fn(self(x), y)\n")
    assert codes(src) == ["GL303"]


def test_inherited_forward_and_disagreeing_definitions():
    base = ("import torch\nfrom torch import nn\n\n"
            "class Base(nn.Module):\n    def forward(self, x):\n        return x.softmax(-1)\n\n"
            "class Child(Base):\n    pass\n")
    user = ("import torch\nfrom torch import nn\nfrom base import Child\n\n"
            "def f(x, y):\n    m = Child()\n    return nn.CrossEntropyLoss()(m(x), y)\n")
    assert codes(user, **{"base.py": base}) == ["GL303"]
    # a second class of the same name elsewhere changes nothing: `Child` is base.Child here
    other = "from torch import nn\n\nclass Child(nn.Module):\n    def forward(self, x):\n        return x\n"
    assert codes(user, **{"base.py": base, "other.py": other}) == ["GL303"]
    # a conditional import of two classes that disagree: precision first
    either = user.replace("from base import Child\n",
                          "try:\n    from base import Child\nexcept ImportError:\n    from other import Child\n")
    assert codes(either, **{"base.py": base, "other.py": other}) == []


def test_index_queries_on_records():
    span = SourceSpan.point(1)

    def module(path: str, *classes: NumClass, imports=()) -> FileFacts:
        return FileFacts(path=path, kind="python", numerics=NumericsFacts(classes=classes),
                         symbols=ModuleSymbols(imports=imports, classes=tuple(c.name for c in classes)))

    index = ProjectIndex()
    index.add("pkg.a", module("pkg/a.py", NumClass("A", span, bases=("torch.nn.Module",), has_forward=True,
                                                     returns="softmax")))
    index.add("pkg.b", module("pkg/b.py", NumClass("B", span, bases=(".a.A",), has_forward=False),
                              NumClass("C", span, bases=("object",), has_forward=True, returns_via=("A",)),
                              imports=(("A", (".a.A",)),)))
    scope = Scope(index, "pkg.b")
    assert forward_returns(scope, "B") == "softmax"
    assert forward_returns(scope, "C") == "softmax"
    assert is_module_class(scope, "B") and not is_module_class(scope, "C")
    assert forward_returns(scope, "Missing") is None
    # from another module, the bare name means nothing until imported
    assert forward_returns(Scope(index, "pkg.a"), "B") is None
    assert forward_returns(Scope(index, "pkg.a"), "pkg.b.B") == "softmax"


def test_quiet_contexts_are_not_gradient_hazards():
    body = "    return torch.log(torch.softmax(z, -1)), torch.sqrt((z ** 2).sum()), z / z.norm()\n"
    head = "import torch\n\n"
    body = "    z = torch.nn.Parameter(z)\n" + body
    assert codes(head + "def validation_step(z):\n" + body) == []
    assert codes(head + "def compute_metrics(z):\n" + body) == []
    assert codes(head + "@torch.inference_mode()\ndef f(z):\n" + body) == []
    assert codes(head + "class AccuracyMetric:\n    def update(self, z):\n    " + body.replace("\n", "\n    ").rstrip() + "\n") == []
    assert codes(head + "def f(z):\n    with torch.no_grad():\n    " + body.replace("\n", "\n    ").rstrip() + "\n") == []
    assert len(codes(head + "def f(z):\n" + body)) == 3


def test_module_level_criterion_used_in_a_function_defined_above():
    src = ("import torch\nfrom torch import nn\n\n"
           "def step(z, y):\n    return crit(torch.sigmoid(z), y)\n\n"
           "crit = nn.BCELoss()\n")
    assert codes(src) == ["GL301"]


def test_unusual_code_does_not_crash():
    src = ("import torch\n\n"
           "async def f(x, *args, **kw):\n"
           "    async with ctx() as c:\n        pass\n"
           "    match x:\n        case [a, *rest]:\n            y = torch.log(a)\n        case _:\n            pass\n"
           "    if (n := x.norm()) > 0:\n        x = x / n\n"
           "    g = (lambda t: torch.log(t.softmax(-1)))(x)\n"
           "    d = {k: v for k, v in kw.items()}\n"
           "    x[0], x[1] = x[1], x[0]\n"
           "    del d\n"
           "    global Q\n"
           "    try:\n        pass\n    except* ValueError:\n        pass\n"
           "    return [torch.sqrt(t) for t in args if t], {**kw}, f'{x!r}'\n"
           "class K:\n    class Inner(torch.nn.Module):\n        def forward(self, x):\n            return x.sigmoid()\n")
    f = facts(src)
    assert isinstance(f, NumericsFacts)
    assert "log_of_probability" in {s.kind for s in f.sites}


def test_file_without_torch_is_skipped_cheaply():
    ff = FileFacts(path="x.py", kind="python")
    assert ff.numerics is None
    assert codes("def f(x):\n    return x\n") == []


def test_data_pipelines_and_optimizer_files_are_quiet():
    body = ("import torch\n\ndef f(a, b):\n    a = torch.nn.Parameter(a)\n"
            "    return torch.sqrt(((a - b) ** 2).sum(-1))\n")
    assert codes(body) == ["GL306"]
    for path in ("transforms/functional.py", "pkg/datasets/coco.py", "models/image_processing_vit.py"):
        assert check_source(body, Config(select=("GL3",)), path=path) == [], path
    optim = body + "\nclass Kron(torch.optim.Optimizer):\n    pass\n"
    assert codes(optim) == []


def test_autograd_function_bodies_are_not_traced():
    src = ("import torch\n\nclass Cum(torch.autograd.Function):\n"
           "    @staticmethod\n    def forward(ctx, q, k):\n"
           "        return 1 - torch.acos(q @ k.transpose(-1, -2))\n\n"
           "    @staticmethod\n    def backward(ctx, g):\n        return g, g\n")
    assert codes(src) == []


def test_quantization_helpers_are_quiet():
    src = ("import torch\n\ndef quantize_with_scales(w):\n"
           "    scales = torch.linalg.norm(w, dim=-1)\n    return w / scales[:, None]\n")
    assert codes(src) == []


def test_guarded_hand_written_softplus_is_one_finding_per_line():
    # measured: grad of where(g > 20, g, log(1 + exp(g))) at g = 100 is NaN
    src = ("import torch\n\ndef gate(g):\n    g = torch.nn.Parameter(g)\n"
           "    return torch.where(g > 20.0, g, torch.log(1.0 + torch.exp(g)))\n")
    assert sorted(codes(src)) == ["GL305"]
    # with GL305 off, GL309 still reports the line
    only_309 = check_source(src, Config(select=("GL309",)))
    assert [f.code for f in only_309] == ["GL309"]


def test_a_where_branch_bound_to_a_name_once():
    # kornia's quaternion_to_axis_angle before kornia/kornia#3980: the division is bound to a
    # local, then selected by where; its backward runs at sin_theta = 0 all the same (NaN)
    src = ("import torch\n\ndef axis_angle(q):\n    q = torch.nn.Parameter(q)\n"
           "    sin_sq = (q[..., 1:] ** 2).sum(-1)\n    sin_theta = torch.sqrt(sin_sq)\n"
           "    k_pos = q[..., 0] / sin_theta\n"
           "    k_neg = 2.0 * torch.ones_like(sin_theta)\n"
           "    k = torch.where(sin_sq > 0.0, k_pos, k_neg)\n    return k\n")
    found = check_source(src, Config(select=("GL309",)))
    assert [(f.code, f.span.line) for f in found] == [("GL309", 7)]
    # the fix: the double where makes the divisor safe before the division
    fixed = src.replace("torch.sqrt(sin_sq)", "torch.sqrt(torch.where(sin_sq > 0.0, sin_sq, torch.ones_like(sin_sq)))")
    assert codes(fixed, "GL309") == []
    # the name rebound, or changed in place, before the where: not followed
    assert codes(src.replace("    k_neg =", "    k_pos = k_pos.clamp(max=1e4)\n    k_neg ="), "GL309") == []
    assert codes(src.replace("    k_neg =", "    k_pos.nan_to_num_()\n    k_neg ="), "GL309") == []
    # bound in a branch that may not run: not followed
    branch = src.replace("    k_pos = q[..., 0] / sin_theta\n",
                         "    k_pos = sin_theta\n    if q.shape[0] > 1:\n        k_pos = q[..., 0] / sin_theta\n")
    assert codes(branch, "GL309") == []
    # a guarded divisor is safe
    assert codes(src.replace("q[..., 0] / sin_theta", "q[..., 0] / sin_theta.clamp(min=1e-6)"), "GL309") == []


def test_a_where_guarded_sqrt_of_squares_is_one_finding():
    # the masked branch's sqrt at a zero distance: GL306 (with its eps fix) when it is on, else GL309
    src = ("import torch\nimport torch.nn as nn\n\nnet = nn.Linear(8, 8)\n\n"
           "def masked(a, b, valid):\n    sq = ((net(a) - net(b)) ** 2).sum(-1)\n"
           "    return torch.where(valid, torch.sqrt(sq), torch.zeros_like(sq))\n")
    both = check_source(src, Config(select=("GL306", "GL309")))
    assert [f.code for f in both] == ["GL306"] and both[0].fix is not None
    assert [f.code for f in check_source(src, Config(select=("GL309",)))] == ["GL309"]
    # another unsafe op in the other branch is still GL309's
    other = src.replace("torch.zeros_like(sq)", "torch.log(sq)")
    assert sorted(f.code for f in check_source(other, Config(select=("GL306", "GL309")))) == ["GL306", "GL309"]


def test_quiet_classes_are_whole_words():
    body = ("import torch\nfrom torch import nn\n\nclass {}(nn.Module):\n"
            "    def __init__(self):\n        super().__init__()\n        self.proj = nn.Linear(2, 2)\n\n"
            "    def forward(self, a, b):\n        a = self.proj(a)\n        return torch.sqrt(((a - b) ** 2).sum(-1))\n")
    assert codes(body.format("VisionTransformer")) == ["GL306"]
    assert codes(body.format("RandomTransform")) == []
    assert codes(body.format("AudioFeatureExtractor")) == []
    assert codes(body.format("AccuracyMetric")) == []


def test_sqrt_and_norm_need_an_operand_that_carries_gradient():
    # RULES.md: a GL306-GL308 finding needs an operand that depends on parameters
    plain = "import torch\n\ndef f(a, b):\n    return torch.sqrt(((a - b) ** 2).sum(-1)), a / a.norm(), torch.acos(a)\n"
    assert codes(plain) == []
    trained = plain.replace("):\n    return", "):\n    a = torch.nn.Parameter(a)\n    return")
    assert sorted(codes(trained)) == ["GL306", "GL307", "GL308"]


def test_learned_projection_outputs_are_never_zero():
    src = ("import torch\nfrom torch import nn\n\nclass Clip(nn.Module):\n"
           "    def __init__(self):\n        super().__init__()\n        self.proj = nn.Linear(8, 4)\n\n"
           "    def forward(self, x):\n        e = self.proj(x)\n"
           "        r = torch.mean(e ** 2, dim=-1) ** 0.5\n"
           "        return e / e.norm(p=2, dim=-1, keepdim=True), r\n")
    assert codes(src) == []
    # a difference of two outputs can be exactly zero: flagged
    diff = src.replace("e = self.proj(x)", "e = self.proj(x) - x")
    assert sorted(codes(diff)) == ["GL306", "GL307"]


def test_positive_constant_inside_the_root_is_the_eps():
    src = ("import torch\n\ndef f(d):\n    d = torch.nn.Parameter(d)\n"
           "    return torch.sqrt(d ** 2 + 0.5 ** 2), torch.sqrt(d ** 2 + d ** 2)\n")
    assert codes(src) == ["GL306"]


def test_hand_written_softmax_without_max_shift():
    src = ("import torch\nimport torch.nn.functional as F\n\ndef f(z, y):\n"
           "    p = torch.exp(z) / torch.exp(z).sum(-1, keepdim=True)\n"
           "    return F.cross_entropy(p, y)\n")
    # GL305 at the division, and GL303: the hand-written softmax feeds cross-entropy
    assert sorted(codes(src)) == ["GL303", "GL305"]
    shifted = src.replace("torch.exp(z)", "torch.exp(z - z.amax(-1, keepdim=True))")
    assert "GL305" not in codes(shifted)


def test_hand_written_grouped_softmax_over_a_scatter_sum():
    # PyG's utils.softmax before pyg-team/pytorch_geometric#53: a softmax per node, its
    # denominator a grouped sum of the same exps, indexed back to the edges
    src = ("import torch\nfrom torch import nn\nfrom torch_scatter import scatter_add, scatter, scatter_max\n\n"
           "net = nn.Linear(8, 1)\n\n"
           "def softmax(x, index, n):\n    s = net(x).squeeze(-1)\n    out = s.exp()\n"
           "    return out / scatter_add(out, index, dim=0, dim_size=n)[index]\n")
    assert codes(src, "GL305") == ["GL305"]
    for denominator in ("scatter(out, index, dim=0)[index]", "scatter(out, index, 0, reduce='sum')",
                        "torch.zeros(n).scatter_add(0, index, out)[index]",
                        "out.new_zeros(n).index_add_(0, index, out)[index]",
                        "torch.zeros(n).scatter_reduce(0, index, out, reduce='sum')[index]",
                        "torch.scatter_add(torch.zeros(n), 0, index, out)[index]"):
        assert codes(src.replace("scatter_add(out, index, dim=0, dim_size=n)[index]", denominator), "GL305") \
            == ["GL305"], denominator
    # not a sum: a max or a mean per group, or a guarded denominator
    for denominator in ("scatter(out, index, dim=0, reduce='max')[index]",
                        "torch.zeros(n).scatter_reduce(0, index, out, reduce='amax')[index]",
                        "scatter_add(out, index, dim=0).clamp(min=1e-16)[index]"):
        assert codes(src.replace("scatter_add(out, index, dim=0, dim_size=n)[index]", denominator), "GL305") \
            == [], denominator
    # the fix (torch_geometric master): the per-node max subtracted before exp
    shifted = src.replace("out = s.exp()", "out = (s - scatter_max(s, index, dim=0, dim_size=n)[0][index]).exp()")
    assert codes(shifted, "GL305") == []


GROUPED = ("import torch\nfrom torch import nn\nfrom torch_scatter import scatter_add\n\n"
           "net = nn.Linear(8, 1)\n\n"
           "def softmax(x, index, n):\n    s = net(x).squeeze(-1)\n    out = s.exp()\n"
           "    return out / scatter_add(out, index, dim=0, dim_size=n)[index]\n")


def gl305(src: str) -> list:
    return [f for f in check_source(src, Config(select=("GL305",))) if f.code == "GL305"]


def test_a_grouped_softmax_is_a_site_that_says_so_and_a_plain_one_is_not():
    (site,) = [s for s in facts(GROUPED).sites if s.kind == "hand_written_unstable"]
    assert site.variant == "softmax" and dict(site.data).get("grouped") is True
    assert site.detail == "exp(z) / scatter_add(exp(z), index)[index]"
    plain = GROUPED.replace("scatter_add(out, index, dim=0, dim_size=n)[index]", "out.sum(-1, keepdim=True)")
    (site,) = [s for s in facts(plain).sites if s.kind == "hand_written_unstable"]
    assert "grouped" not in dict(site.data) and site.detail == "exp(z) / exp(z).sum()"


@pytest.mark.parametrize("denominator", [
    "scatter_add(out, index, dim=0, dim_size=n)[index]",
    "torch.zeros(n).index_add(0, index, out)[index]",
    "torch.zeros(n).scatter_reduce(0, index, out, reduce='sum')[index]",
])
def test_a_grouped_softmax_is_told_to_subtract_each_groups_max_not_to_use_torch_softmax(denominator):
    (f,) = gl305(GROUPED.replace("scatter_add(out, index, dim=0, dim_size=n)[index]", denominator))
    assert "torch.softmax" not in f.message
    assert "every term of the group underflows" in f.message
    assert "max-subtracted grouped softmax: `torch_geometric.utils.softmax(z, index)`" in f.message
    assert "scatter_reduce(0, index, z, 'amax')[index]" in f.message


def test_a_masked_grouped_softmax_and_a_grouped_logsumexp_get_grouped_advice():
    (f,) = gl305(GROUPED.replace("out = s.exp()", "out = s.exp() * x[:, 0].sigmoid()"))
    assert "grouped softmax of `z + torch.log(w)`" in f.message and "torch.softmax" not in f.message
    lse = GROUPED.replace("return out / scatter_add(out, index, dim=0, dim_size=n)[index]",
                          "return scatter_add(out, index, dim=0, dim_size=n).log()")
    (f,) = gl305(lse)
    assert "`log(scatter_add(exp(x), index))`" in f.message
    assert "torch_scatter.scatter_logsumexp(x, index)" in f.message and "torch.logsumexp" not in f.message


def test_a_softmax_over_a_dimension_keeps_torch_softmax_advice():
    (f,) = gl305(GROUPED.replace("scatter_add(out, index, dim=0, dim_size=n)[index]", "out.sum(-1, keepdim=True)"))
    assert "use torch.softmax(z, dim)" in f.message and "group" not in f.message


def test_exp_of_log_softmax_into_cross_entropy():
    src = ("import torch\nimport torch.nn.functional as F\n\ndef f(z, y):\n"
           "    p = torch.exp(F.log_softmax(z, dim=-1))\n    q = F.log_softmax(z, dim=-1).exp()\n"
           "    return F.cross_entropy(p, y) + F.cross_entropy(q, y)\n")
    assert codes(src) == ["GL303", "GL303"]
    # the log-probabilities themselves into CE are harmless (log_softmax is idempotent)
    assert codes(src.replace("torch.exp(F.log_softmax(z, dim=-1))", "F.log_softmax(z, dim=-1)")
                 .replace("F.log_softmax(z, dim=-1).exp()", "F.log_softmax(z, dim=-1)")) == []


def test_a_gaussian_kernel_is_not_a_hand_written_softmax():
    # exp of a non-positive exponent cannot overflow (diffusers' gaussian_blur_2d, SEG, SVD)
    for exponent in ("-0.5 * (x / sigma).pow(2)", "-x.pow(2.0) / (2 * sigma.pow(2.0))", "-(x ** 2) / 2.0"):
        src = ("import torch\n\ndef kernel(x, sigma):\n    x = torch.nn.Parameter(x)\n"
               f"    pdf = torch.exp({exponent})\n    return pdf / pdf.sum()\n")
        assert codes(src) == [], exponent
    # a positive multiple of a square is still unbounded above: flagged
    src = ("import torch\n\ndef kernel(x):\n    x = torch.nn.Parameter(x)\n"
           "    pdf = torch.exp(0.5 * x ** 2)\n    return pdf / pdf.sum()\n")
    assert codes(src) == ["GL305"]


def test_a_value_taken_out_by_item_is_a_metric():
    # `-log(p[i]).mean().item()` leaves autograd at once: no NaN gradient can come of it
    src = ("import torch\nimport torch.nn.functional as F\n\nnet = torch.nn.Linear(4, 3)\n\n"
           "def calibration(x, y):\n    probs = F.softmax(net(x), dim=-1)\n"
           "    return -torch.log(probs[torch.arange(len(y)), y]).mean().item()\n")
    assert codes(src, "GL302") == []
    assert codes(src.replace(".mean().item()", ".mean().tolist()"), "GL302") == []
    # the same log kept as a tensor (returned to a training loop) is flagged
    assert codes(src.replace(".mean().item()", ".mean()"), "GL302") == ["GL302"]
    # a loss whose logged value is taken with .item() elsewhere is still a loss
    loss = src.replace("    return -torch.log(probs[torch.arange(len(y)), y]).mean().item()\n",
                       "    loss = -torch.log(probs[torch.arange(len(y)), y]).mean()\n    print(loss.item())\n"
                       "    return loss\n")
    assert codes(loss, "GL302") == ["GL302"]


_ENTROPY = ("import torch\nfrom torch import nn\n\n\nclass Attn(nn.Module):\n    def __init__(self, d=32):\n"
            "        super().__init__()\n        self.qk = nn.Linear(d, 2 * d)\n        self.stats = {{}}\n\n"
            "    def forward(self, x):\n        q, k = self.qk(x).chunk(2, -1)\n"
            "        a = torch.softmax(q @ k.transpose(-1, -2), -1)\n{keep}        return a @ x\n")


@pytest.mark.parametrize("keep", [
    "        self.last_entropy = -(a * a.log()).sum(-1).mean().detach()\n",
    "        self.stats['entropy'] = (-(a * a.log()).sum(-1)).detach().cpu()\n",
])
def test_a_value_detached_as_it_is_stored_aside_is_a_metric(keep):
    # kept on the module for logging, cut from the graph where it is made: the log's NaN
    # gradient cannot come of it (measured: the model's gradient is finite with a 0 in `a`)
    assert codes(_ENTROPY.format(keep=keep), "GL302") == []
    # the same value stored without the cut, or detached into a name the output then uses, is not
    assert codes(_ENTROPY.format(keep=keep.replace(".detach()", "")), "GL302") == ["GL302"]
    used = "        ent = -(a * a.log()).sum(-1).mean().detach()\n        x = x * ent\n"
    assert codes(_ENTROPY.format(keep=used), "GL302") == ["GL302"]


def test_set_grad_enabled_false_as_a_statement_turns_grad_off_after_it():
    # an inference script: grad mode off for the rest of the module body
    src = ("import torch\nimport torch.nn.functional as F\n\nnet = torch.nn.Linear(4, 3)\n"
           "torch.set_grad_enabled(False)\nprobs = F.softmax(net(x), -1)\nent = -(probs * probs.log()).sum(-1)\n")
    assert codes(src, "GL302") == []
    # before the call, or after set_grad_enabled(True), grad is on
    assert codes(src.replace("torch.set_grad_enabled(False)\n", "")
                 + "torch.set_grad_enabled(False)\n", "GL302") == ["GL302"]
    assert codes(src.replace("probs = F", "torch.set_grad_enabled(True)\nprobs = F"), "GL302") == ["GL302"]
    # inside a branch it may not run: not followed
    assert codes(src.replace("torch.set_grad_enabled(False)", "if args.eval:\n    torch.set_grad_enabled(False)"),
                 "GL302") == ["GL302"]
    # a mode that is not a literal is not known
    assert codes(src.replace("set_grad_enabled(False)", "set_grad_enabled(training)"), "GL302") == ["GL302"]


def test_every_spelling_of_set_grad_enabled_is_read_alike_as_statement_and_context():
    """One list of names (source/names.SET_GRAD_ENABLED) for every reader: the `with` reader knew
    `torch.set_grad_enabled` only, so `with torch.autograd.set_grad_enabled(False):` was grad on."""
    body = "probs = F.softmax(net(x), -1)\nent = -(probs * probs.log()).sum(-1)\n"
    head = "import torch\nimport torch.nn.functional as F\n\nnet = torch.nn.Linear(4, 3)\n"
    for name in ("torch.set_grad_enabled", "torch.autograd.set_grad_enabled",
                 "torch.autograd.grad_mode.set_grad_enabled"):
        assert codes(head + f"{name}(False)\n" + body, "GL302") == [], name
        context = head + f"with {name}(False):\n" + "".join("    " + line + "\n" for line in body.splitlines())
        assert codes(context, "GL302") == [], name
        assert codes(context.replace("(False)", "(True)"), "GL302") == ["GL302"], name


def test_one_minus_a_probability_clamped_below_one_is_safe_to_log():
    # the hand-written BCE on a clamped sigmoid: 1 - clamp(p, eps, 1 - eps) >= eps
    src = ("import torch\nfrom torch import nn\n\nnet = nn.Linear(4, 1)\neps = 1e-7\n\n"
           "def bce(x, y):\n    p = torch.sigmoid(net(x)).clamp(eps, 1 - eps)\n"
           "    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()\n")
    assert codes(src, "GL302") == []
    assert codes(src.replace(".clamp(eps, 1 - eps)", "").replace("p = torch.sigmoid(net(x))",
                                                                  "p = torch.clamp(torch.sigmoid(net(x)), min=eps, max=1 - eps)")) == [], "torch.clamp"
    # clamped from below only: 1 - p still reaches 0 where the sigmoid saturates at 1
    assert codes(src.replace(".clamp(eps, 1 - eps)", ".clamp(min=eps)"), "GL302") == ["GL302"]
    assert codes(src.replace(".clamp(eps, 1 - eps)", ""), "GL302") == ["GL302", "GL302"]


def test_exp_of_a_negated_absolute_value_cannot_overflow():
    # the stable softplus / BCE-with-logits: max(x, 0) + log1p(exp(-|x|)), exp's argument <= 0
    for stable in ("torch.log1p(torch.exp(-torch.abs(x)))", "(-x.abs()).exp().log1p()",
                   "torch.log(1 + torch.exp(-abs(x)))"):
        src = f"import torch\n\ndef softplus(x):\n    return torch.clamp(x, min=0) + {stable}\n"
        assert codes(src) == [], stable
        # without the absolute value exp(-x) overflows for x < -88
        assert codes(src.replace("torch.abs(x)", "x").replace("x.abs()", "x").replace("abs(x)", "x")) == ["GL305"], stable


def test_learned_outputs_stay_dense_through_attributes_and_sums():
    src = ("import torch\nfrom torch import nn\n\nclass Clip(nn.Module):\n"
           "    def __init__(self):\n        super().__init__()\n        self.enc = nn.Linear(8, 4)\n"
           "        self.extra = nn.Linear(4, 4)\n\n"
           "    def forward(self, x):\n        out = self.enc(x)\n        e = out.embeds\n"
           "        t = e + self.extra(e)\n"
           "        return e / e.norm(dim=-1, keepdim=True), t / t.norm(dim=-1, keepdim=True)\n")
    assert codes(src) == []
    assert codes(src.replace("t = e + self.extra(e)", "t = e - self.extra(e)")) == ["GL307"]


def test_apply_aliases_do_not_depend_on_the_hash_seed():
    """A wrapper applying two autograd Functions records both in source-independent order: the
    facts (and the cache built from them) must be the same in every process."""
    import os
    import subprocess
    import sys
    code = (
        "from gradlint.source import extract_python_text\n"
        "src = '''import torch\n"
        "class Alpha(torch.autograd.Function):\n    pass\n"
        "class Beta(torch.autograd.Function):\n    pass\n"
        "def op(x):\n    return Beta.apply(Alpha.apply(x))\n'''\n"
        "print(extract_python_text(src, 'w.py').numerics.apply_aliases)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outs = set()
    for seed in ("1", "2", "3", "4"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=root)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outs.add(done.stdout)
    assert outs == {"(('op', 'Alpha'), ('op', 'Beta'))\n"}


def test_selections_written_as_torch_functions_keep_what_they_select():
    # InfoNCE written by hand: the log of the softmax's diagonal (measured: logits of 200 give a
    # loss of inf and NaN gradients, where log_softmax(...).diagonal() gives 200 and ±0.5)
    head = ("import torch\nimport torch.nn.functional as F\n\n"
            "def nce(q, k, idx):\n    probs = F.softmax(q @ k.t(), dim=1)\n")
    for pick in ("probs.diagonal()", "torch.diagonal(probs)", "torch.gather(probs, 1, idx)",
                 "probs.take_along_dim(idx, 1)", "torch.squeeze(probs)"):
        assert codes(head + f"    return -torch.log({pick}).mean()\n") == ["GL302"], pick
    # the log-probabilities selected the same way stay quiet, and so does a log of a selection
    # of the logits themselves
    quiet = ("import torch\nimport torch.nn.functional as F\n\n"
             "def nce(q, k, idx):\n    logp = F.log_softmax(q @ k.t(), dim=1)\n"
             "    return -torch.diagonal(logp).mean() - torch.gather(logp, 1, idx).mean()"
             " + torch.log(torch.diagonal(q @ k.t()).abs() + 1).mean()\n")
    assert codes(quiet) == []


# A method called by a later method of its class: walked again once with what that caller passes
# (before, the class's own records were dropped before each walk, so the callee stayed unbound and
# the class was walked MAX_REWALKS more times for nothing).
LATER_CALLER = '''
import torch


class Store:
    pass


def keep(store):
    return store


class Pipeline:
    def record(self, store, x):
        keep(store)
        return torch.relu(x)

    def run(self, x):
        return self.record(Store(), x)
'''


def _counted_walks(monkeypatch) -> list[str]:
    """The names of the units numerics walks (each walk again too), as they are walked."""
    from gradlint.source import numerics

    walks: list[str] = []
    real = numerics.Extractor._walk_unit

    def counting(self, node):
        walks.append(node.name.value)
        return real(self, node)

    monkeypatch.setattr(numerics.Extractor, "_walk_unit", counting)
    return walks


def test_a_method_is_walked_with_what_a_later_method_of_its_class_passes(monkeypatch):
    walks = _counted_walks(monkeypatch)
    out = facts(LATER_CALLER)
    (record,) = [f for f in out.functions if f.name == "Pipeline.record"]
    (call,) = [c for c in record.calls if c.callee == "keep"]
    assert call.args[0] == ("0", "inst:Store")
    # walked once, then once again with its caller's arguments, which then hold
    assert walks.count("Pipeline") == 2


# As model files are written (timm, torchvision): each unit above the ones that build or call it.
CALLERS_BELOW = '''
import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, dim, eps=1e-6, drop=0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.drop = drop

    def forward(self, x):
        return self.norm(x)


class Net(nn.Module):
    def __init__(self, dim=64, depth=4, eps=1e-5):
        super().__init__()
        self.blocks = nn.Sequential(*[Block(dim, eps=eps, drop=0.1 * i) for i in range(depth)])

    def forward(self, x):
        return self.blocks(x)


def _create(dim, **kwargs):
    return Net(dim=dim, **kwargs)


def net_small():
    return _create(32, depth=2)
'''


def test_units_whose_callers_are_below_them_are_walked_once(monkeypatch):
    # Walked last to first, each unit's first walk has its callers' arguments already: in file
    # order every unit but the last was walked again (830 of timm + torchvision's units)
    walks = _counted_walks(monkeypatch)
    out = facts(CALLERS_BELOW)
    assert sorted(walks) == ["Block", "Net", "_create", "net_small"]
    # the facts keep the file's order
    assert [c.name for c in out.classes] == ["Block", "Net"]


def test_a_script_that_only_loads_a_pretrained_model_is_checked(tmp_path):
    # no `torch` in it: the sniff that skips files with nothing for the rules must let it through
    from gradlint.api import check_paths

    script = tmp_path / "finetune.py"
    script.write_text('from transformers import AutoModel\n\nmodel = AutoModel.from_pretrained("bert-base-uncased")\n'
                      "for layer in model.encoder.layer[:8]:\n    layer.requires_grad = False\n")
    result = check_paths([script], Config(root=str(tmp_path)), use_cache=False, jobs=1)
    assert [(f.code, f.span.line) for f in result.findings] == [("GL404", 5)]


def test_steady_dict_reads_only():
    """A module-level dict display is trusted where it is read only while the text only reads it."""
    from gradlint.source.numerics_values import _only_read

    read = 'L = {"a": 1}\nx = L["a"]()\ny = L.get("a")\nif k in L:\n    pass\nz = L["a"] == 1\n'
    assert _only_read(read, "L")
    for changed in ('L["a"] = 2\n', 'def f():\n    L["a"] = 2\n', "L.update(a=2)\n", 'del L["a"]\n',
                    "register(L)\n", "M = L\n", "L = {}\n", 'L["a"] += 1\n', "L |= {}\n"):
        assert not _only_read(read + changed, "L"), changed


def test_registered_classes_only_where_nothing_else_writes():
    """A module-level dict filled by a registering decorator of the file holds each decorated
    class under its literal key; any other write, use or key leaves it unknown."""
    import libcst as cst

    from gradlint.source.numerics_registry import registered_classes

    base = ('R = {}\n\n\ndef reg(name):\n    """Use: @reg("a") on a class."""\n    def deco(cls):\n'
            '        if name in R:\n            raise KeyError(name)\n        R[name] = cls\n        return cls\n'
            '    return deco\n\n\n@reg("a")\nclass A:\n    pass\n\n\n@reg(name="b")\nclass B:\n    pass\n')

    def got(text):
        return registered_classes(cst.parse_module(text), text, "R", lambda f: True)

    assert got(base) == (("a", "A"), ("b", "B"))
    assert got(base.replace("R[name] = cls", "R[name or cls.__name__] = cls")) == (("a", "A"), ("b", "B"))
    for changed in ('R["a"] = B\n', "R.update(a=B)\n", "reg('c')(B)\n", "f(reg)\n", "S = R\n",
                    '@reg(KEY)\nclass C:\n    pass\n', '@reg("a")\nclass C:\n    pass\n',
                    '@reg("c")\ndef c():\n    pass\n', '@reg("c")\n@other\nclass C:\n    pass\n',
                    'def f():\n    @reg("c")\n    class C:\n        pass\n'):
        assert got(base + changed) is None, changed
    assert got(base.replace("R[name] = cls", "R[name.lower()] = cls")) is None
    assert got(base.replace("R = {}", "R = {'z': int}")) is None


def test_builder_shape():
    """`def build_model(name, **kw): return MODELS[name](**kw)` (raising guards allowed) builds
    the class a dict holds under the key it is given; any other body is no such builder."""
    import libcst as cst

    from gradlint.source.numerics_registry import builder_shape

    def shape(text):
        return builder_shape(cst.parse_module(text).body[0])

    assert shape("def build(arch, *a, **kw):\n    if arch not in M:\n        raise KeyError(arch)\n"
                 "    return M[arch](*a, **kw)\n") == ("M", "arch", 0)
    assert shape("def build(cfg, name):\n    assert name in M\n    return M[name]()\n") == ("M", "name", 1)
    for other in ("def build(name):\n    M = {}\n    return M[name]()\n",
                  "def build(name, M):\n    return M[name]()\n",
                  "def build(*, name):\n    return M[name]()\n",
                  "@cache\ndef build(name):\n    return M[name]()\n",
                  "def build(name):\n    m = M[name]()\n    return m\n",
                  "def build(name):\n    return M[name.lower()]()\n"):
        assert shape(other) is None, other


_DIRECTION = ("import torch\nfrom torch import nn\n\nlin = nn.Linear(4, 4)\n\n\ndef direction(v):\n"
              "    n2 = (v * v).sum(-1, keepdim=True)\n    nz = n2 > 0\n    n = {root}\n"
              "    return torch.where(nz, v / n, torch.zeros_like(v))\n\n\nloss = direction(lin(x)).sum()\n"
              "loss.backward()\n")


@pytest.mark.parametrize("root", ["torch.sqrt(torch.where(nz, n2, torch.ones_like(n2)))",
                                  "torch.where(nz, n2, torch.ones_like(n2)).sqrt()"])
def test_gl309_the_root_of_a_double_where_guarded_value_is_guarded(root):
    # measured: the gradient at a zero vector is [0, 0, 0] with the guard, NaN without
    assert codes(_DIRECTION.format(root=root), "GL309") == []
    assert codes(_DIRECTION.format(root="torch.sqrt(n2)"), "GL309") == ["GL309"]


@pytest.mark.parametrize("diagonal", ["torch.diag(sim)", "sim.diag()", "torch.diagonal(sim)"])
def test_the_diagonal_of_exps_over_their_row_sums_is_a_hand_written_softmax(diagonal):
    # NT-Xent written by hand: NaN at tau = 0.01 (measured; cross_entropy gives 0.0); torch.diag
    # was the one spelling not followed
    src = ("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\nenc = nn.Linear(8, 8)\n\n\n"
           "def nt_xent(z1, z2, tau=0.1):\n    sim = torch.exp(z1 @ z2.t() / tau)\n"
           f"    pos = {diagonal}\n    return -torch.log(pos / sim.sum(dim=1)).mean()\n\n\n"
           "nt_xent(enc(x), enc(y)).backward()\n")
    assert sorted(codes(src)) == ["GL302", "GL305"]


@pytest.mark.parametrize("den", ["var.clamp_min(eps).sqrt()", "var.clamp(min=1e-4).sqrt()", "torch.sqrt(var.clamp_min(1e-4))",
                                 "torch.clamp(var, min=self.eps).sqrt()", "var.clip(min=1e-4).sqrt()"])
def test_a_variance_clamped_above_zero_is_a_safe_divisor(den):
    # weight standardisation (vit-pytorch's WeightStandardizedLinear): the clamp is the eps;
    # measured: a constant row gives 0 / sqrt(1e-4) = 0 with a finite gradient
    src = ("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n\nclass WS(nn.Module):\n"
           "    def __init__(self, eps=1e-4):\n        super().__init__()\n        self.eps = eps\n"
           "        self.weight = nn.Parameter(torch.randn(4, 4))\n\n    def forward(self, x):\n"
           "        w, eps = self.weight, self.eps\n        var = w.var(dim=-1, keepdim=True, unbiased=False)\n"
           f"        return F.linear(x, (w - w.mean(-1, keepdim=True)) / {den})\n")
    assert codes(src, "GL307") == []
    # unclamped, or clamped at 0 (the root's gradient at 0 stays infinite), it is still flagged
    assert codes(src.replace(den, "var.sqrt()"), "GL307") == ["GL307"]
    assert codes(src.replace(den, "var.clamp(min=0).sqrt()"), "GL307") == ["GL307"]


@pytest.mark.parametrize("line, flagged", [
    ("torch.where(p > 0, p * p.log(), torch.zeros_like(p))", False),
    ("torch.where(0 < p, -torch.log(p), torch.zeros_like(p))", False),
    ("torch.where((p > 1e-12) & keep, p * p.log(), torch.zeros_like(p))", False),
    ("torch.where(p != 0, p * p.log(), torch.zeros_like(p))", False),
    ("(p * p.log()).where(p > eps, torch.zeros_like(p))", False),
    # the log in the branch the condition does not keep positive, or a bound that keeps nothing
    ("torch.where(p > 0, torch.zeros_like(p), p * p.log())", True),
    ("torch.where(p > -1, p * p.log(), torch.zeros_like(p))", True),
    ("torch.where(p >= 0, p * p.log(), torch.zeros_like(p))", True),
    ("torch.where(q > 0, p * p.log(), torch.zeros_like(p))", True),
])
def test_a_log_a_where_keeps_finite_is_not_a_log_of_probability(line, flagged):
    """`where(p > 0, p * p.log(), 0)` of a softmax: the value is never -inf (GL302 is quiet); the
    NaN gradient of the masked branch is GL309's, reported where the value carries gradient."""
    src = ("import torch\nfrom torch import nn\n\n\nclass Ent(nn.Module):\n    def __init__(self):\n"
           "        super().__init__()\n        self.lin = nn.Linear(4, 4)\n\n"
           "    def forward(self, x, q, keep, eps=1e-8):\n        p = torch.softmax(self.lin(x), -1)\n"
           f"        return ({line}).sum()\n")
    got = codes(src, "GL30")
    assert ("GL302" in got) is flagged, got
    assert "GL309" in got or "where(q" in line, got
