"""GL4xx behaviour beyond the documented examples: run-wide lookups and locations."""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config


def findings(src: str, select: str, **files: str):
    return check_source(src, Config(select=(select,)), extra_files=files or None)


def test_gl406_gradcheck_of_a_wrapper_function_in_another_file():
    ops = ("import torch\n\nclass Op(torch.autograd.Function):\n"
           "    @staticmethod\n    def forward(ctx, x):\n        return x * 3\n\n"
           "    @staticmethod\n    def backward(ctx, g):\n        return g * 3\n\n"
           "def op(x):\n    return Op.apply(x)\n")
    test = ("import torch\nfrom ops import op\n\n"
            "def test_op():\n    x = torch.randn(2, dtype=torch.float64, requires_grad=True)\n"
            "    assert torch.autograd.gradcheck(op, (x,))\n")
    assert [f.code for f in check_source(ops, Config(select=("GL406",)), path="ops.py")] == ["GL406"]
    assert check_source(ops, Config(select=("GL406",)), path="ops.py", extra_files={"test_ops.py": test}) == []


def test_gl406_points_at_the_class_and_is_info():
    src = ("import torch\n\nclass Op(torch.autograd.Function):\n"
           "    @staticmethod\n    def backward(ctx, g):\n        return g\n")
    (f,) = findings(src, "GL406")
    assert (f.span.line, f.span.column) == (3, 7)
    assert str(f.severity) == "info"


def test_gl401_message_names_the_backward_line():
    src = ("import torch\n\ndef step(crit, out, y):\n    loss = crit(out, y)\n"
           "    loss.requires_grad = True\n    loss.backward()\n")
    (f,) = findings(src, "GL401")
    assert f.span.line == 5 and "line 6" in f.message


def test_gl401_not_without_a_backward():
    src = ("import torch\n\ndef step(crit, out, y):\n    loss = crit(out, y)\n"
           "    loss.requires_grad = True\n    return loss\n")
    assert findings(src, "GL401") == []


def test_gl402_through_lightning_manual_backward_and_names_the_cut():
    src = ("import torch\nimport lightning as L\n\nclass M(L.LightningModule):\n"
           "    def training_step(self, batch, idx):\n"
           "        loss = torch.tensor(self.compute(batch).item())\n"
           "        self.manual_backward(loss)\n")
    (f,) = findings(src, "GL402")
    assert f.span.line == 7 and ".item()" not in f.message and "tensor(...)" in f.message and "line 6" in f.message


def test_gl404_self_in_module_subclass_of_another_file():
    base = "from torch import nn\n\nclass Block(nn.Module):\n    pass\n"
    src = ("import torch\nfrom blocks import Block\n\nclass Frozen(Block):\n"
           "    def freeze(self):\n        self.requires_grad = False\n")
    assert [f.code for f in findings(src, "GL404", **{"blocks.py": base})] == ["GL404"]
    assert findings(src, "GL404") == []  # Block unknown to the run: no claim


_FBANK = ("import torch\nfrom torch import nn\n\nclass Fbank(nn.Module):\n"
          "    def __init__(self, requires_grad=False, n_mels=40):\n        super().__init__()\n"
          "        self.requires_grad = requires_grad\n"
          "        self.fb = Filterbank(n_mels, {use})\n        self.proj = nn.Linear(n_mels, n_mels)\n")


def test_gl404_not_for_a_setting_recorded_beside_the_code_that_honours_it():
    # speechbrain's Fbank: `self.requires_grad = requires_grad`, the filterbank frozen through
    # `freeze=not requires_grad`; the attribute only records the setting
    assert findings(_FBANK.format(use="freeze=not requires_grad"), "GL404") == []


def test_gl404_a_setting_stored_only_on_the_module_is_still_a_noop_freeze():
    (f,) = findings(_FBANK.format(use="freeze=True"), "GL404")
    assert f.span.line == 7
    # a literal is no setting of the caller's
    src = _FBANK.format(use="freeze=True").replace("self.requires_grad = requires_grad", "self.requires_grad = False")
    assert [f.span.line for f in findings(src, "GL404")] == [7]


def test_gl404_a_setting_only_logged_or_held_by_layers_of_a_factory_is_still_a_noop_freeze():
    # a second read's reproducers: any other read of the name (a log line) honours nothing, and a
    # factory's result (`timm.create_model`, a helper of the file) is a layer the class holds
    logged = ("import logging\nimport torch\nfrom torch import nn\n\nlog = logging.getLogger(__name__)\n\n\n"
              "class Encoder(nn.Module):\n    def __init__(self, trainable=False):\n        super().__init__()\n"
              "        self.fc = nn.Linear(4, 4)\n        self.requires_grad = trainable\n"
              "        log.info('encoder trainable=%s', trainable)\n")
    assert [f.span.line for f in findings(logged, "GL404")] == [12]
    made = ("import timm\nimport torch\nfrom torch import nn\n\n\ndef make_mlp(n):\n"
            "    return nn.Sequential(nn.Linear(n, n), nn.ReLU())\n\n\n"
            "class Encoder(nn.Module):\n    def __init__(self, trainable=False):\n        super().__init__()\n"
            "        self.body = timm.create_model('resnet18')\n        self.requires_grad = trainable\n\n\n"
            "class Head(nn.Module):\n    def __init__(self, n, trainable=False):\n        super().__init__()\n"
            "        self.mlp = make_mlp(n)\n        self.requires_grad = trainable\n")
    assert len(findings(made, "GL404")) == 2


def test_gl404_not_for_a_setting_of_a_class_with_no_layer_of_its_own():
    # torchrl's environment wrappers (nn.Module subclasses) keep `requires_grad` for a
    # differentiable simulator; the class has no parameter or submodule to freeze
    src = ("import torch\nfrom torch import nn\n\nclass Wrapper(nn.Module):\n"
           "    def _build_env(self, env, requires_grad: bool = False):\n"
           "        self.parallel = True\n        self.requires_grad = requires_grad\n        return env\n")
    assert findings(src, "GL404") == []
    # a literal still says "freeze this", whatever the class holds (a base of another file may)
    assert len(findings(src.replace("= requires_grad\n", "= False\n"), "GL404")) == 1


def test_gl403_no_finding_for_plain_forward():
    src = ("import torch\nfrom torch import nn\n\nclass M(nn.Module):\n"
           "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(2, 2)\n\n"
           "    def forward(self, x):\n        mask = (x > 0).detach()\n        return self.fc(x) * mask\n")
    assert findings(src, "GL403") == []


def test_gl403_not_for_buffer_only_modules():
    # rotary / sinusoidal position modules: no_grad or detach over buffers, no parameters
    src = ("import torch\nfrom torch import nn\n\nclass Rotary(nn.Module):\n"
           "    def __init__(self, dim):\n        super().__init__()\n"
           "        self.register_buffer('inv_freq', 1.0 / (10000 ** (torch.arange(0, dim, 2) / dim)))\n\n"
           "    @torch.no_grad()\n    def forward(self, x, pos):\n"
           "        freqs = pos[..., None] * self.inv_freq\n        emb = torch.cat((freqs, freqs), dim=-1)\n"
           "        return emb.cos()\n\n"
           "class Sinusoidal(nn.Module):\n"
           "    def __init__(self, n, d):\n        super().__init__()\n        self.make_weights(n, d)\n\n"
           "    def forward(self, ids):\n        return self.weights.index_select(0, ids.view(-1)).detach()\n")
    assert findings(src, "GL403") == []


def test_gl404_on_a_torch_layer_attribute():
    src = ("import torch\nfrom torch import nn\n\nclass M(nn.Module):\n"
           "    def __init__(self, cfg):\n        super().__init__()\n"
           "        self.ln = nn.LayerNorm(8)\n        if cfg.stable:\n            self.ln.requires_grad = False\n")
    (f,) = findings(src, "GL404")
    assert f.span.line == 9 and "requires_grad_(False)" in f.message


def test_gl403_not_for_integer_outputs():
    # a sparse-attention indexer: no_grad over parameters, but it returns top-k indices,
    # which carry no gradient anyway
    src = ("import torch\nfrom torch import nn\n\nclass Indexer(nn.Module):\n"
           "    def __init__(self):\n        super().__init__()\n        self.proj = nn.Linear(4, 4)\n\n"
           "    @torch.no_grad()\n    def forward(self, x, k):\n"
           "        scores = self.proj(x) @ x.transpose(-1, -2)\n"
           "        return scores.topk(k, dim=-1).indices.to(torch.int32)\n")
    assert findings(src, "GL403") == []


_NOGRAD_LOSS = ("import torch\nfrom torch import nn\n\nnet = nn.Linear(4, 1)\n\n\n"
                "def hinge(d, y):\n    return torch.clamp(1 - y * d, min=0).mean()\n\n\n"
                "def step(x):\n    y = torch.randn(8, 1)\n    with torch.no_grad():\n        d = net(x)\n")


def test_gl401_a_loss_computed_under_no_grad_then_made_to_require_grad():
    # measured in torch: backward runs on the leaf requires_grad_ makes, and net.weight.grad stays None
    src = _NOGRAD_LOSS + "    loss = hinge(d, y)\n    loss.requires_grad_(True)\n    loss.backward()\n"
    (f,) = findings(src, "GL401")
    assert (f.span.line, f.span.column) == (16, 5)
    src = _NOGRAD_LOSS + "    loss = (d - y).pow(2).mean()\n    loss.requires_grad = True\n    loss.backward()\n"
    assert [f.code for f in findings(src, "GL401")] == ["GL401"]


def test_gl401_a_feature_computed_under_no_grad_then_made_to_require_grad_is_an_input():
    # saliency on frozen features: the features are the leaf whose .grad is wanted
    src = _NOGRAD_LOSS + ("    d.requires_grad_(True)\n    score = (d * y).sum()\n    score.backward()\n"
                          "    return d.grad\n")
    assert findings(src, "GL401") == []
    # computed under no_grad from data alone: no parameter involved, nothing to hide
    src = ("import torch\n\n\ndef step(x):\n    with torch.no_grad():\n        loss = (x * 2).sum()\n"
           "    loss.requires_grad_()\n    loss.backward()\n")
    assert findings(src, "GL401") == []


_NETS_FILE = ("import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
              "        super().__init__()\n        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.ReLU())\n"
              "        self.head = nn.Linear(4, 2)\n        self.cls_token = nn.Parameter(torch.zeros(1, 4))\n"
              "        self.temperature = 1.0\n")


def test_gl404_a_submodule_of_an_instance_of_a_project_class():
    # measured in torch: after `m.backbone.requires_grad = False` every backbone parameter still
    # has requires_grad True and gets a gradient
    src = ("import torch\nfrom nets import Net\n\nm = Net()\nm.backbone.requires_grad = False\n"
           "m.head.requires_grad = False\n")
    got = [(f.code, f.span.line) for f in findings(src, "GL404", **{"nets.py": _NETS_FILE})]
    assert got == [("GL404", 5), ("GL404", 6)]
    assert [f.code for f in findings(_NETS_FILE + "\n\nm = Net()\nm.backbone.requires_grad = False\n", "GL404")] \
        == ["GL404"]


def test_gl404_a_parameter_or_a_setting_of_an_instance_of_a_project_class():
    src = ("import torch\nfrom nets import Net\n\nm = Net()\nm.cls_token.requires_grad = False\n"
           "m.head.weight.requires_grad = False\nm.temperature.requires_grad = False\n"
           "m.unknown.requires_grad = False\n")
    assert findings(src, "GL404", **{"nets.py": _NETS_FILE}) == []


def test_gl404_a_submodule_of_a_model_torchvision_or_timm_builds():
    # `model.layer1.requires_grad = False` on a torchvision ResNet: the classic freeze that freezes nothing
    src = ("import torchvision\nimport timm\n\nmodel = torchvision.models.resnet50(weights=None)\n"
           "model.layer1.requires_grad = False\nvgg = torchvision.models.vgg16()\nvgg.features.requires_grad = False\n"
           "vit = timm.create_model('vit_base_patch16_224')\nvit.patch_embed.requires_grad = False\n")
    assert [f.span.line for f in findings(src, "GL404")] == [5, 7, 9]


def test_gl404_a_parameter_of_a_model_torchvision_or_timm_builds_or_the_method():
    src = ("import torchvision\nimport timm\n\nvit = timm.create_model('vit_base_patch16_224')\n"
           "vit.cls_token.requires_grad = False\nvit.pos_embed.requires_grad = False\n"
           "model = torchvision.models.resnet50(weights=None)\nmodel.layer1.requires_grad_(False)\n"
           "model.fc.weight.requires_grad = False\n")
    assert findings(src, "GL404") == []


_FUNCTION = ("import torch\n\nclass Op(torch.autograd.Function):\n"
             "    @staticmethod\n    def forward(ctx, x, alpha=1.0):\n        ctx.alpha = alpha\n        return {forward}\n\n"
             "    @staticmethod\n    def backward(ctx, g):\n        return {backward}\n")


def test_gl406_straight_through_and_gradient_reversal_backwards_need_no_gradcheck():
    # a gradcheck of these fails by design: the backward replaces the forward's derivative
    for forward, backward in [("torch.round(x)", "g, None"), ("torch.sign(x)", "g.clone(), None"),
                              ("x.view_as(x)", "-ctx.alpha * g, None"), ("x.clone()", "g * ctx.alpha, None"),
                              ("(x > 0).float()", "g"),
                              # quantizers: a step scaled, clamped or made by where/one_hot
                              ("torch.round(x / ctx.alpha) * ctx.alpha", "g, None"),
                              ("torch.floor(x * 4) / 4", "g, None"), ("x.round().clamp(-8, 7)", "g, None"),
                              ("torch.where(x >= 0, 1.0, -1.0)", "g, None")]:
        assert findings(_FUNCTION.format(forward=forward, backward=backward), "GL406") == [], (forward, backward)


def test_gl406_gradient_scaling_by_a_method_or_under_a_local_name_needs_no_gradcheck():
    # `g.mul(ctx.alpha)` as `g * ctx.alpha` is; DANN's gradient reversal layer names its result
    # first (`output = grad_output.neg() * ctx.alpha; return output, None`)
    for forward, backward in [("x.view_as(x)", "g.mul(ctx.alpha), None"), ("x.clone()", "g.neg().div(ctx.alpha), None")]:
        assert findings(_FUNCTION.format(forward=forward, backward=backward), "GL406") == [], (forward, backward)
    named = _FUNCTION.format(forward="x.view_as(x)", backward="output, None").replace(
        "        return output, None", "        output = g.neg() * ctx.alpha\n        return output, None")
    assert "output = g.neg() * ctx.alpha" in named
    assert findings(named, "GL406") == []
    # a local that computes is still a computed backward; a method that multiplies by a tensor of
    # the forward is a local derivative
    computed = named.replace("output = g.neg() * ctx.alpha", "output = g * 2 + 1")
    assert [f.code for f in findings(computed, "GL406")] == ["GL406"]
    saved = _FUNCTION.format(forward="x * x", backward="g.mul(2 * x), None")
    assert [f.code for f in findings(saved, "GL406")] == ["GL406"]


def test_gl406_a_pass_through_with_its_true_derivative_or_a_computed_backward_is_flagged():
    # (the identity itself, `x` and `g`, is the one true derivative a gradcheck tests nothing of:
    # test_gl406_the_identity_or_a_clipped_gradient_needs_no_gradcheck)
    for forward, backward in [("-x", "-g, None"), ("x * 3", "g * 3, None"),
                              ("x.view_as(x)", "torch.ones_like(g), None"), ("torch.round(x)", "g * x, None"),
                              ("torch.round(x)", "g if ctx.alpha else None, None")]:
        assert [f.code for f in findings(_FUNCTION.format(forward=forward, backward=backward), "GL406")] == ["GL406"], (
            forward, backward)


def test_gl406_the_identity_or_a_clipped_gradient_needs_no_gradcheck():
    # x-transformers' DetachMultiple (detached copies out, the gradients back as they are) and
    # espnet's LogSoftmaxGradModification (a copy out, the gradient clamped back)
    for forward, backward in [("x", "g, None"), ("x.detach()", "g, None"), ("x.clone()", "None, None"),
                              ("x.view_as(x)", "torch.clamp(g, -ctx.alpha, ctx.alpha), None"),
                              ("x.new(x)", "g.clamp(-1.0, 1.0), None")]:
        assert findings(_FUNCTION.format(forward=forward, backward=backward), "GL406") == [], (forward, backward)
    # an identity whose backward computes, and a clamp of something else than the gradient
    for forward, backward in [("x.clone()", "g * 2 + 1, None"), ("x.clone()", "torch.clamp(ctx.alpha, 0, 1), None")]:
        assert [f.code for f in findings(_FUNCTION.format(forward=forward, backward=backward), "GL406")] == ["GL406"], (
            forward, backward)


_LOCAL = ("import torch\n\nclass Op(torch.autograd.Function):\n"
          "    @staticmethod\n    def forward(ctx, x, scale):\n        ctx.scale = scale\n        {forward}\n\n"
          "    @staticmethod\n    def backward(ctx, grad_output):\n        scale = ctx.scale\n"
          "        if len(grad_output.shape) == 4:\n            scale = scale.view(-1, 1, 1, 1)\n"
          "        elif len(grad_output.shape) == 2:\n            scale = scale.view(-1, 1)\n"
          "        else:\n            scale = scale.view(-1)\n"
          "        return {backward}\n")


def test_gl406_a_setting_reshaped_under_a_local_name_before_a_straight_through_gradient():
    # ibert's SymmetricQuantFunction: a quantizer forward (through a helper), and a backward that
    # reshapes ctx.scale for the gradient's shape in branches, then returns grad / scale
    quantizer = "q = torch.round(x / scale)\n        return torch.clamp(q, -8, 7)"
    for backward in ("grad_output.clone() / scale, None", "grad_output / scale, None", "grad_output, None"):
        assert findings(_LOCAL.format(forward=quantizer, backward=backward), "GL406") == [], backward
    # the true derivative of `x / scale`, and backwards that compute (or a setting bound on one
    # branch only): a gradcheck applies
    for forward, backward in (("return x / scale", "grad_output / scale, None"),
                              ("return x / scale", "grad_output.clone() / ctx.scale, None"),
                              (quantizer, "grad_output * scale.abs(), None"),
                              (quantizer, "grad_output / other, None")):
        assert [f.code for f in findings(_LOCAL.format(forward=forward, backward=backward), "GL406")] == ["GL406"], (
            forward, backward)
    one_branch = _LOCAL.format(forward=quantizer, backward="grad_output / factor, None").replace(
        "            scale = scale.view(-1, 1)\n", "            factor = scale.view(-1, 1)\n")
    assert [f.code for f in findings(one_branch, "GL406")] == ["GL406"]


_SAVED = ("import torch\n\nclass Op(torch.autograd.Function):\n"
          "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return {forward}\n\n"
          "    @staticmethod\n    def backward(ctx, grad_output):\n        (x,) = ctx.saved_tensors\n"
          "        return {backward}\n")


def test_gl406_a_masked_straight_through_gradient_of_a_step_needs_no_gradcheck():
    # BinaryNet's sign with the hardtanh straight-through gradient: `grad * (|x| <= 1)`; the
    # same mask as the backward of a clamp is its true derivative, which gradcheck checks
    mask = "grad_output * (x.abs() <= 1).to(grad_output.dtype)"
    for forward in ("torch.sign(x)", "x.round()", "(x > 0).float()", "torch.round(x * 4) / 4",
                    "torch.where(x >= 0, 1.0, -1.0)"):
        for backward in (mask, "(x.abs() <= 1).float() * grad_output", "grad_output"):
            assert findings(_SAVED.format(forward=forward, backward=backward), "GL406") == [], (forward, backward)
    for forward, backward in (("x.clamp(-1, 1)", mask), ("torch.sign(x)", "grad_output * x"),
                              ("torch.sign(x)", "grad_output * (x.abs() + 1)"),
                              # the saved input unpacked, then a plain gradient: a forgotten `2 * x`
                              ("x ** 2", "grad_output"), ("torch.exp(x)", "grad_output")):
        assert [f.code for f in findings(_SAVED.format(forward=forward, backward=backward), "GL406")] == ["GL406"], (
            forward, backward)


_CHECKED = ("import torch\n\nclass Op(torch.autograd.Function):\n"
            "    @staticmethod\n    def forward(ctx, x, scale):\n"
            "        if not x.dtype.is_floating_point:\n            raise TypeError(f'{{x.dtype}}')\n"
            "        ctx.scale = scale\n        return {forward}\n\n"
            "    @staticmethod\n    def backward(ctx, grad_output):\n        return {backward}\n")


def test_gl406_gradient_scaling_behind_an_input_check_needs_no_gradcheck():
    # fairseq2's _GradScaleFunction: the forward checks its input's dtype (an `if` that only
    # raises) before `x.detach().clone()`; the backward scales: no derivative of the copy
    for forward in ("x.detach().clone()", "x.view_as(x)"):
        assert findings(_CHECKED.format(forward=forward, backward="grad_output * ctx.scale, None"), "GL406") == [], forward
    one_line = _CHECKED.format(forward="x.clone()", backward="grad_output * ctx.scale, None").replace(
        "floating_point:\n            raise", "floating_point: raise")
    assert findings(one_line, "GL406") == []
    # the true derivative behind the same check, and a branch that changes the value, stay flagged
    for forward, backward in (("x * scale", "grad_output * ctx.scale, None"), ("x * 3", "grad_output * 3, None")):
        assert [f.code for f in findings(_CHECKED.format(forward=forward, backward=backward), "GL406")] == ["GL406"], (
            forward, backward)
    changes = _CHECKED.format(forward="x.clone()", backward="grad_output * ctx.scale, None").replace(
        "            raise TypeError(f'{x.dtype}')\n", "            x = x.float()\n")
    assert [f.code for f in findings(changes, "GL406")] == ["GL406"]


_GANG = ("import torch\nfrom mylib.gang import Gang, ReduceOperation\n\n"
         "def _do_gather(x, gang, dim):\n    if gang.size == 1:\n        return x\n"
         "    splits = [torch.empty_like(x) for _ in range(gang.size)]\n"
         "    gang.{gather}(splits, x)\n    return torch.cat(splits, dim=dim)\n\n"
         "def _do_scatter(x, gang, dim):\n    return x.split(x.size(dim) // gang.size, dim=dim)[gang.rank].contiguous()\n\n"
         "class Op(torch.autograd.Function):\n"
         "    @staticmethod\n    def forward(ctx, x, gang, dim):\n        ctx.gang, ctx.dim = gang, dim\n"
         "        {forward}\n\n"
         "    @staticmethod\n    def backward(ctx, grad_output):\n        {backward}\n")


def test_gl406_a_collective_through_a_process_group_object_of_the_project_needs_no_gradcheck():
    # fairseq2's tensor-parallel Functions: `gang.all_reduce(...)` or `gang.all_gather_to_list`
    # (a helper's), the Gang being fairseq2's own wrapper of torch.distributed
    for gather, forward, backward in (
            ("all_gather_to_list", "return _do_scatter(x, gang, dim)",
             "return _do_gather(grad_output, ctx.gang, ctx.dim), None, None"),
            ("all_gather_to_list", "return _do_gather(x, gang, dim)",
             "return _do_scatter(grad_output, ctx.gang, ctx.dim), None, None"),
            ("all_gather", "x = x.detach().clone()\n        gang.all_reduce(x, ReduceOperation.SUM)\n        return x",
             "return grad_output, None, None"),
            ("allgather", "return x", "ctx.gang.all_reduce(grad_output, ReduceOperation.SUM)\n"
             "        return grad_output, None, None"),
            ("all_gather", "return x", "return hvd.allreduce(grad_output), None, None"),
            ("all_gather", "return x", "return reduce_scatter(grad_output, ctx.gang), None, None")):
        src = _GANG.format(gather=gather, forward=forward, backward=backward)
        assert findings(src, "GL406") == [], (forward, backward)
    # a derivative through a single-process gather, scatter or reduction stays flagged
    for forward, backward in (
            ("ctx.save_for_backward(x)\n        return x.gather(dim, x.argsort(dim))",
             "(x,) = ctx.saved_tensors\n        return torch.zeros_like(x).scatter(ctx.dim, x.argsort(ctx.dim), "
             "grad_output), None, None"),
            ("return x.sum(dim)", "return grad_output.unsqueeze(ctx.dim).expand(ctx.gang.shape), None, None"),
            ("return torch.broadcast_to(x, (2,) + x.shape)", "return grad_output.sum(0), None, None")):
        src = _GANG.format(gather="split", forward=forward, backward=backward)
        assert [f.code for f in findings(src, "GL406")] == ["GL406"], (forward, backward)


def test_gl406_a_halo_exchange_between_processes_needs_no_gradcheck():
    # mace's LAMMPS_MP: LAMMPS exchanges ghost atoms' features between the processes of a domain
    src = ("import torch\n\nclass LAMMPS_MP(torch.autograd.Function):\n"
           "    @staticmethod\n    def forward(ctx, *args):\n        feats, data = args\n"
           "        ctx.vec_len = feats.shape[-1]\n        ctx.data = data\n        out = torch.empty_like(feats)\n"
           "        data.{fwd}(feats, out, ctx.vec_len)\n        return out\n\n"
           "    @staticmethod\n    def backward(ctx, *grad_outputs):\n        (grad,) = grad_outputs\n"
           "        gout = torch.empty_like(grad)\n        ctx.data.{bwd}(grad, gout, ctx.vec_len)\n"
           "        return gout, None\n")
    assert findings(src.format(fwd="forward_exchange", bwd="reverse_exchange"), "GL406") == []
    # a method of that name is not what makes it one: any other call stays a hand-written derivative
    assert [f.code for f in findings(src.format(fwd="copy_into", bwd="copy_into"), "GL406")] == ["GL406"]


_VQ = ("import torch\n\nclass VQ(torch.autograd.Function):\n"
       "    @staticmethod\n    def forward(ctx, inputs, codebook):\n        {forward}\n\n"
       "    @staticmethod\n    def backward(ctx, grad_output, grad_indices=None):\n"
       "        grad_inputs, grad_codebook = None, None\n"
       "        if ctx.needs_input_grad[0]:\n            grad_inputs = {grad_inputs}\n"
       "        if ctx.needs_input_grad[1]:\n            indices, codebook = ctx.saved_tensors\n"
       "            grad_codebook = torch.zeros_like(codebook)\n"
       "            grad_codebook.index_add_(0, indices, grad_output.reshape(-1, codebook.size(1)))\n"
       "        return (grad_inputs, grad_codebook)\n")


def test_gl406_a_straight_through_to_an_input_the_outputs_do_not_depend_on_needs_no_gradcheck():
    # speechbrain's (the VQ-VAE's) VectorQuantizationStraightThrough: the codes are the codebook's
    # rows at indices another Function computes from `inputs`, marked non-differentiable, shaped
    # `view_as(inputs)`; the backward passes their gradient on to `inputs` (zero derivative there)
    marked = ("indices = Nearest.apply(inputs, codebook).view(-1)\n"
              "        ctx.save_for_backward(indices, codebook)\n        ctx.mark_non_differentiable(indices)\n"
              "        codes = torch.index_select(codebook, dim=0, index=indices).view_as(inputs)\n"
              "        return (codes, indices)")
    argmin = ("indices = torch.cdist(inputs.reshape(-1, inputs.shape[-1]), codebook).argmin(-1)\n"
              "        ctx.save_for_backward(indices, codebook)\n        return codebook[indices].view_as(inputs)")
    for forward in (marked, argmin):
        for grad_inputs in ("grad_output.clone()", "grad_output"):
            assert findings(_VQ.format(forward=forward, grad_inputs=grad_inputs), "GL406") == [], (forward, grad_inputs)
    # the outputs computed from `inputs` (marked or not), or filled from it by a call, and a
    # backward giving only the codebook its gradient: a gradcheck applies
    for forward in (marked.replace("view_as(inputs)", "mul(inputs)"),
                    marked.replace("ctx.mark_non_differentiable(indices)", "pass"),
                    argmin.replace("argmin(-1)", "softmin(-1).multinomial(1).view(-1)"),
                    "out = torch.empty_like(inputs)\n        _launch(inputs, codebook, out)\n"
                    "        ctx.save_for_backward(inputs, codebook)\n        return out",
                    "out = []\n        [out.append(v * codebook.sum()) for v in inputs]\n"
                    "        ctx.save_for_backward(inputs, codebook)\n        return torch.stack(out)",
                    "d = torch.cdist(inputs, codebook)\n        idx = d.argmin(-1)\n"
                    "        ctx.mark_non_differentiable(idx)\n        ctx.save_for_backward(idx, codebook)\n"
                    "        return d.min(-1).values, idx"):
        assert [f.code for f in findings(_VQ.format(forward=forward, grad_inputs="grad_output * 2"), "GL406")] \
            == ["GL406"], forward
    codebook_only = _VQ.format(forward=argmin, grad_inputs="None")
    assert [f.code for f in findings(codebook_only, "GL406")] == ["GL406"]


def test_gl406_a_forward_without_ctx_reads_its_first_parameter_as_an_input():
    # with a setup_context, `forward(x, scale)` takes no ctx: x is read, `x * 2` has the
    # derivative the backward gives, so a gradcheck applies (x is no ctx, scale no unread input)
    src = ("import torch\n\nclass Double(torch.autograd.Function):\n"
           "    @staticmethod\n    def forward(x, scale):\n        return x * 2\n\n"
           "    @staticmethod\n    def setup_context(ctx, inputs, output):\n        ctx.scale = inputs[1]\n\n"
           "    @staticmethod\n    def backward(ctx, grad):\n        return grad * 2, None\n")
    assert [f.code for f in findings(src, "GL406")] == ["GL406"]
    # its second parameter never read, and given a gradient: a surrogate
    assert findings(src.replace("return grad * 2, None", "return grad * 2, grad.sum()"), "GL406") == []


_REFUSES = ("import torch\n\nclass Nearest(torch.autograd.Function):\n"
            "    @staticmethod\n    def forward(ctx, inputs, codebook):\n"
            "        indices = torch.cdist(inputs, codebook).argmin(-1)\n"
            "        ctx.mark_non_differentiable(indices)\n        return indices\n\n"
            "    @staticmethod\n    def backward(ctx, grad_output):\n"
            "        \"\"\"Not differentiable.\"\"\"\n        {body}\n")


def test_gl406_a_backward_that_only_raises_needs_no_gradcheck():
    # speechbrain's VectorQuantization: the backward refuses (`raise RuntimeError(...)`): the
    # Function declares itself non-differentiable, there is no gradient to check
    for body in ("raise RuntimeError('VectorQuantization is not differentiable')", "raise NotImplementedError"):
        assert findings(_REFUSES.format(body=body), "GL406") == [], body
    # a backward that raises only on some path, or after computing, gives a gradient
    for body in ("if ctx.needs_input_grad[1]:\n            raise RuntimeError('no codebook gradient')\n"
                 "        return grad_output * 2, None",
                 "g = grad_output * 2\n        raise RuntimeError(g)\n        return g, None"):
        doubles = _REFUSES.format(body=body).replace(
            "indices = torch.cdist(inputs, codebook).argmin(-1)\n        ctx.mark_non_differentiable(indices)\n"
            "        return indices", "return inputs * 2")
        assert "return inputs * 2" in doubles
        assert [f.code for f in findings(doubles, "GL406")] == ["GL406"], body


def test_gl407_a_term_cut_in_a_loss_a_forward_returns_and_a_caller_backpropagates():
    # PredRNN: `return frames, loss` with a term through torch.tensor(list); train.py does
    # `next_frames, loss = self.network(...); loss.backward()`. Probe's cut term nobody backpropagates.
    from pathlib import Path

    from gradlint.api import check_paths

    folder = Path(__file__).resolve().parent.parent / "fixtures" / "paths" / "returned_cuts"
    model = folder / "model.py"
    expected = {(n, "GL407") for n, line in enumerate(model.read_text().splitlines(), 1) if "# expect: GL407" in line}
    assert len(expected) == 1

    def found(paths):
        result = check_paths(paths, Config(select=("GL4",), root=str(folder)), use_cache=False, jobs=1)
        assert not result.internal_errors
        return {(f.span.line, f.code) for f in result.findings}, result.findings

    got, raw = found([folder])
    assert got == expected
    assert "element 1 of `RNN`'s output that a caller backpropagates" in raw[0].message
    assert found([model])[0] == expected  # alone: train.py is found by scanning for the class's name
    # without the caller that backpropagates it, nothing
    assert check_source(model.read_text(), Config(select=("GL4",)), path="model.py") == []


def test_gl407_a_term_weighed_by_a_setting_and_a_list_filled_by_index():
    src = ("import torch\nimport torch.nn.functional as F\n\n"
           "def step(model, x, y, args, opt):\n"
           "    out = model(x)\n"
           "    parts = [torch.zeros(()), torch.zeros(())]\n"
           "    parts[0] = out.pow(2).mean()\n"
           "    parts[1] = out.abs().mean()\n"
           "    reg = torch.tensor(parts).sum()\n"
           "    loss = F.mse_loss(out, y) + args.reg_weight * reg\n"
           "    loss.backward()\n")
    assert [(f.code, f.span.line) for f in findings(src, "GL4")] == [("GL407", 9)]
    # a product with a value computed here is a stop-gradient (REINFORCE's advantage), not a weight
    reinforce = ("import torch\n\n"
                 "def step(policy, obs, ret, baseline, opt):\n"
                 "    logp = policy(obs).log_softmax(-1).max(-1).values\n"
                 "    adv = ret - baseline(obs)\n"
                 "    loss = -(logp * adv.detach()).mean() + (adv ** 2).mean()\n"
                 "    loss.backward()\n")
    assert findings(reinforce, "GL4") == []


def test_gl407_a_loss_written_into_the_return_itself(tmp_path):
    # `return h, self.mse(h, target) + self.cfg.beta * decouple`: no name, a criterion in it
    from pathlib import Path

    from gradlint.api import check_paths

    folder = Path(__file__).resolve().parent.parent / "fixtures" / "paths" / "returned_cuts"
    for name in ("model.py", "train.py"):
        text = (folder / name).read_text()
        if name == "model.py":
            text = text.replace("        loss = self.mse(h, target) + self.cfg.beta * decouple\n        return h, loss\n",
                                "        return h, self.mse(h, target) + self.cfg.beta * decouple\n")
            assert "return h, self.mse" in text
        (tmp_path / name).write_text(text)
    (tmp_path / "pyproject.toml").write_text("")
    result = check_paths([tmp_path], Config(select=("GL4",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert [(Path(f.path).name, f.span.line, f.code) for f in result.findings] == [("model.py", 28, "GL407")]


def test_gl402_a_model_a_function_of_the_file_builds_is_an_unknown_callable():
    # `model = build()` (a function of this file returning Tagger()), then `loss = model(x, y)`
    # with `y` made by a comparison: the forward computes the loss with it as the target, so
    # the result is unknown, not cut. A loss rebuilt by torch.tensor(...item()) still is.
    from pathlib import Path

    from gradlint.api import check_paths

    folder = Path(__file__).resolve().parent.parent / "fixtures" / "paths" / "factory_targets"
    train = folder / "train.py"
    expected = {(n, "GL402") for n, line in enumerate(train.read_text().splitlines(), 1) if "# expect: GL402" in line}
    assert len(expected) == 2
    result = check_paths([folder], Config(select=("GL4",), root=str(folder)), use_cache=False, jobs=1)
    assert not result.internal_errors
    assert {(f.span.line, f.code) for f in result.findings} == expected


def test_gl404_through_a_getter_of_a_class_of_another_file():
    # fixtures/paths/getters: `model.get_encoder().requires_grad = False` in a file that never
    # names torch, the getter in model.py returning a GRU; the Parameter getter's flag is real
    from pathlib import Path

    from gradlint.api import check_paths

    folder = Path(__file__).resolve().parent.parent / "fixtures" / "paths" / "getters"
    freeze = folder / "freeze.py"
    expected = {(n, "GL404") for n, line in enumerate(freeze.read_text().splitlines(), 1) if "# expect: GL404" in line}
    assert len(expected) == 1
    for paths in ([folder], [freeze]):
        result = check_paths(paths, Config(select=("GL4",), root=str(folder)), use_cache=False, jobs=1)
        assert not result.internal_errors
        assert {(f.span.line, f.code) for f in result.findings} == expected


def test_gl407_a_term_cut_in_a_dict_a_method_of_another_file_returns():
    # fixtures/paths/method_returns: train.py backpropagates `model.loss_function(x)["loss"]`, the
    # method of model.py's VAE; what it cuts there is GL407 in model.py, whichever file is checked
    from pathlib import Path

    from gradlint.api import check_paths

    folder = Path(__file__).resolve().parent.parent / "fixtures" / "paths" / "method_returns"
    model = folder / "model.py"
    expected = {("model.py", n, "GL407") for n, line in enumerate(model.read_text().splitlines(), 1)
                if "# expect: GL407" in line}
    assert len(expected) == 1
    for paths in ([folder], [model]):
        result = check_paths(paths, Config(select=("GL4",), root=str(folder)), use_cache=False, jobs=1)
        assert not result.internal_errors
        assert {(Path(f.path).name, f.span.line, f.code) for f in result.findings} == expected
    # without the loop that backpropagates it, nothing
    assert check_source(model.read_text(), Config(select=("GL4",)), path="model.py") == []


def test_gl406_a_tensor_the_forward_computed_from_its_input_is_no_setting():
    # `ctx.out = torch.exp(x)` read back (directly or under a local name) is the derivative's
    # factor, which gradcheck checks: flagged; `ctx.alpha` of another input, and a docstring
    # before a straight-through's settings, stay what they were
    exp = ("import torch\n\nclass Exp(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n"
           "        out = torch.exp(x)\n        ctx.out = out\n        return out\n\n"
           "    @staticmethod\n    def backward(ctx, grad_output):\n        {body}\n")
    for body in ("out = ctx.out\n        return grad_output * out", "return grad_output * ctx.out",
                 "return 2 * grad_output * ctx.out"):
        assert [f.code for f in findings(exp.format(body=body), "GL406")] == ["GL406"], body
    quantizer = _LOCAL.format(forward="q = torch.round(x / scale)\n        return torch.clamp(q, -8, 7)",
                              backward="grad_output / scale, None").replace(
        "def backward(ctx, grad_output):\n", "def backward(ctx, grad_output):\n        \"\"\"Straight-through.\"\"\"\n")
    assert findings(quantizer, "GL406") == []


def test_the_detached_module_reader_stays_linear_in_nested_loops():
    """Forty nested loops around an A-GCN forward: each loop's body is read once per pass of the
    outermost one (two readings per level would be 2 ** 40)."""
    from gradlint.api import check_source
    from gradlint.config import Config
    body = "        adj = self.adjacency(inp).detach()\n"
    indent = "        "
    for i in range(40):
        body += f"{indent}for i{i} in range(2):\n"
        indent += "    "
    body += f"{indent}inp = inp + 0\n"
    text = ("import torch\nfrom torch import nn\n\n\nclass GCN(nn.Module):\n    def __init__(self, d):\n"
            "        super().__init__()\n        self.adjacency = nn.Linear(d, d)\n        self.gc = nn.Linear(d, d)\n\n"
            "    def forward(self, inp):\n" + body + "        return torch.matmul(adj, self.gc(inp))\n\n"
            "    def get_config_optim(self, lr):\n        return [{'params': self.adjacency.parameters(), 'lr': lr},\n"
            "                {'params': self.gc.parameters(), 'lr': lr}]\n")
    found = [f for f in check_source(text, Config(select=("GL403",)))]
    assert [f.code for f in found] == ["GL403"] and "`self.adjacency`" in found[0].message


_SQUARE = ("import torch\n\n\nclass Square(torch.autograd.Function):\n"
           "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x * x\n\n"
           "    @staticmethod\n    def backward(ctx, g):\n        (x,) = ctx.saved_tensors\n        return 3 * x * g\n\n\n"
           "class Scaled(Square):\n    @staticmethod\n    def forward(ctx, x):\n{forward}\n\n\n"
           "def square(x):\n    return Square.apply(x)\n")
_CHECK_SCALED = ("import torch\nfrom torch.autograd import gradcheck\n\nfrom ops import Scaled\n\n\n"
                 "def test_scaled():\n    x = torch.randn(3, dtype=torch.float64, requires_grad=True)\n"
                 "    assert gradcheck(Scaled.apply, (x,))\n")


def test_gl406_a_subclass_gradcheck_checks_the_base_only_when_it_runs_the_base_forward():
    # a subclass with a forward of its own (1.5 x**2, whose derivative the base's wrong backward,
    # 3 x g, happens to match) checks nothing of the base's pair: measured, gradcheck(Scaled.apply)
    # passes and gradcheck(Square.apply) fails
    own = _SQUARE.format(forward="        ctx.save_for_backward(x)\n        return 1.5 * x * x")
    found = check_source(own, Config(select=("GL406",)), path="ops.py", extra_files={"test_ops.py": _CHECK_SCALED})
    assert [f.code for f in found] == ["GL406"]
    delegates = _SQUARE.format(forward="        return super(Scaled, Scaled).forward(ctx, x)")
    assert check_source(delegates, Config(select=("GL406",)), path="ops.py",
                        extra_files={"test_ops.py": _CHECK_SCALED}) == []


def test_gl406_an_identity_forward_is_only_a_copy_and_its_inputs_marked():
    # a loop over the copy that changes it (the forward computes 2x) is no identity
    src = ("import torch\n\nclass Double(torch.autograd.Function):\n"
           "    @staticmethod\n    def forward(ctx, x):\n        y = x.clone()\n        for row in y:\n"
           "            row.mul_(2)\n        return y\n\n"
           "    @staticmethod\n    def backward(ctx, g):\n        return g\n")
    assert [f.code for f in findings(src, "GL406")] == ["GL406"]
    marked = src.replace("row.mul_(2)", "row.requires_grad_()")
    assert findings(marked, "GL406") == []


_FIXED = ("import torch\nfrom torch import nn\n\n\nclass FixedEmbedding(nn.Module):\n"
          "    def __init__(self, c_in, d_model, fixed=False):\n        super().__init__()\n"
          "        w = torch.zeros(c_in, d_model)\n        self.emb = nn.Embedding(c_in, d_model)\n"
          "{freeze}\n\n    def forward(self, x):\n        return {out}.detach()\n")


@pytest.mark.parametrize("freeze, out", [
    # a parameter of its own that the cut leaves untrained
    ("        self.emb.weight = nn.Parameter(w, requires_grad=False)\n        self.scale = nn.Parameter(torch.ones(d_model))",
     "(self.emb(x) * self.scale)"),
    # frozen only on one branch (not the default)
    ("        if fixed:\n            self.emb.weight = nn.Parameter(w, requires_grad=False)", "self.emb(x)"),
    # made trainable again
    ("        self.emb.weight = nn.Parameter(w, requires_grad=False)\n        self.emb.weight.requires_grad = True",
     "self.emb(x)"),
])
def test_gl403_a_frozen_table_exempts_only_a_forward_with_nothing_else_to_train(freeze, out):
    assert [f.code for f in findings(_FIXED.format(freeze=freeze, out=out), "GL403")] == ["GL403"]


def test_gl403_a_frozen_table_and_a_frozen_scale_cut_nothing():
    src = _FIXED.format(freeze="        self.emb.weight = nn.Parameter(w, requires_grad=False)\n"
                               "        self.scale = nn.Parameter(torch.ones(d_model), requires_grad=False)",
                        out="(self.emb(x) * self.scale)")
    assert findings(src, "GL403") == []


def test_gl404_isinstance_narrows_the_branch_it_opens_negated_too():
    src = ("import torch\nimport torch.nn as nn\n\n\ndef outer(groups):\n    def _freeze(x):\n"
           "        if not isinstance(x, nn.Parameter):\n            for p in x.parameters():\n"
           "                p.requires_grad = False\n        else:\n            x.requires_grad = False\n"
           "    for g in groups:\n        _freeze(g)\n")
    assert findings(src, "GL404") == []
    # the negated test's own branch is the module case
    module_side = src.replace("            for p in x.parameters():\n                p.requires_grad = False\n",
                              "            x.requires_grad = False\n            for p in x.parameters():\n"
                              "                print(p)\n")
    assert [f.code for f in findings(module_side, "GL404")] == ["GL404"]


_WRAPPER = ("import torch\nfrom torch import nn\n\n\nclass FeatureExtractor(nn.Module):\n"
            "    def __init__(self):\n        super().__init__()\n        self.net = nn.Linear(4, 4)\n{init}\n\n"
            "    def forward(self, x):\n{forward}\n")


@pytest.mark.parametrize("init, forward", [
    # frozen whole, whatever it reads
    ("        self.scale = nn.Parameter(torch.ones(4))\n        self.requires_grad_(False)\n        self.eval()",
     "        return (self.net(x) * self.scale).detach()"),
    # a parameter read only for its device; one frozen after it was made, or made frozen positionally
    ("        self.net.eval()\n        self.dummy = nn.Parameter(torch.empty(0))",
     "        x = x.to(self.dummy.device)\n        return self.net(x).detach()"),
    ("        self.net.eval()\n        self.scale = nn.Parameter(torch.ones(4))\n        self.scale.requires_grad = False",
     "        return (self.net(x) * self.scale).detach()"),
    ("        self.net.eval()\n        self.scale = nn.Parameter(torch.ones(4), False)",
     "        return (self.net(x) * self.scale).detach()"),
    # a comment is no read
    ("        self.net.eval()\n        self.scale = nn.Parameter(torch.ones(4))",
     "        # self.scale is not applied at inference\n        return self.net(x).detach()"),
])
def test_gl403_inference_wrappers_that_cut_nothing_trainable(init, forward):
    assert findings(_WRAPPER.format(init=init, forward=forward), "GL403") == []


@pytest.mark.parametrize("init", ["        self.net.requires_grad_()", "        self.net.requires_grad_(True)"])
def test_gl403_requires_grad_on_is_no_freeze(init):
    src = _WRAPPER.format(init=init, forward="        return self.net(x).detach()")
    assert [f.code for f in findings(src, "GL403")] == ["GL403"]


def test_gl403_a_frozen_table_frozen_twice_stays_frozen():
    src = _FIXED.format(freeze="        self.emb.weight = nn.Parameter(w, requires_grad=False)\n"
                               "        self.emb.weight.requires_grad = False", out="self.emb(x)")
    assert findings(src, "GL403") == []


@pytest.mark.parametrize("test, body, orelse", [
    ("isinstance(x, nn.Module)", "            for p in x.parameters():\n                p.requires_grad = False",
     "            x.requires_grad = False"),
    ("isinstance(x, nn.Parameter) and x.dim() > 1", "            x.requires_grad = False",
     "            for p in x.parameters():\n                p.requires_grad = False"),
])
def test_gl404_isinstance_of_a_module_or_a_conjunction_narrows_the_right_branch(test, body, orelse):
    src = ("import torch\nimport torch.nn as nn\n\n\ndef outer(groups):\n    def _freeze(x):\n"
           f"        if {test}:\n{body}\n        else:\n{orelse}\n    for g in groups:\n        _freeze(g)\n")
    assert findings(src, "GL404") == []


def test_gl406_a_subclass_that_scales_its_base_forward_checks_nothing_of_the_base():
    scaled = _SQUARE.format(forward="        return 1.5 * super(Scaled, Scaled).forward(ctx, x)")
    found = check_source(scaled, Config(select=("GL406",)), path="ops.py", extra_files={"test_ops.py": _CHECK_SCALED})
    assert [f.code for f in found] == ["GL406"]


def test_gl406_a_forward_that_changes_its_input_through_data_is_no_identity():
    src = ("import torch\n\nclass Double(torch.autograd.Function):\n"
           "    @staticmethod\n    def forward(ctx, x):\n        x.data = x.data * 2\n        return x.clone()\n\n"
           "    @staticmethod\n    def backward(ctx, g):\n        return g\n")
    assert [f.code for f in findings(src, "GL406")] == ["GL406"]


def test_gl404_past_an_isinstance_guard_that_returns_only_the_parameter_goes_on():
    src = ("import torch.nn as nn\n\n\ndef outer(groups):\n    def _freeze(x):\n"
           "        if not isinstance(x, nn.Parameter):\n            for p in x.parameters():\n"
           "                p.requires_grad = False\n            return\n        x.requires_grad = False\n"
           "    for g in groups:\n        _freeze(g)\n")
    assert findings(src, "GL404") == []
    # without the return, a module reaches the assignment too
    falls = src.replace("            return\n", "")
    assert [f.code for f in findings(falls, "GL404")] == ["GL404"]


_HANDED = ("import torch\n\n\nclass Potential(torch.autograd.Function):\n    @staticmethod\n"
           "    def forward(ctx, input, call_function, gradient_function):\n"
           "        ctx.call_function = call_function\n        ctx.gradient_function = gradient_function\n"
           "        ctx.save_for_backward(input)\n        return call_function(input)\n\n"
           "    @staticmethod\n    def backward(ctx, grad_output):\n        (input,) = ctx.saved_tensors\n"
           "        grad = {grad}\n        return grad_output * grad, None, None\n")


def test_gl406_a_backward_handed_its_derivative_needs_no_gradcheck():
    # sbi's DifferentiablePotentialFunction: the caller hands the forward the gradient function;
    # pytorch-pfn-extras' RunBackward: the backward is an op the dispatcher finds by name
    assert findings(_HANDED.format(grad="ctx.gradient_function(input)"), "GL406") == []
    dispatched = ("import torch\n\n\ndef _get_autograd(name):\n    class RunBackward(torch.autograd.Function):\n"
                  "        @staticmethod\n        def forward(ctx, *args):\n            ctx.save_for_backward(*args)\n"
                  "            op_h = torch._C._dispatch_find_schema_or_throw(f'ppe::{name}_fwd', '')\n"
                  "            return torch._C._dispatch_call_boxed(op_h, *args)\n\n"
                  "        @staticmethod\n        def backward(ctx, *args):\n"
                  "            op_h = torch._C._dispatch_find_schema_or_throw(f'ppe::{name}_bwd', '')\n"
                  "            return torch._C._dispatch_call_boxed(op_h, *(args + tuple(ctx.saved_tensors)))\n\n"
                  "    return RunBackward.apply\n")
    assert findings(dispatched, "GL406") == []
    # a derivative written in the backward, or a helper the Function makes itself, stays flagged
    for grad in ("2 * input", "torch.cos(input)", "ctx.helper(input)"):
        src = _HANDED.format(grad=grad).replace("        ctx.save_for_backward(input)\n",
                                                "        ctx.save_for_backward(input)\n        ctx.helper = torch.cos\n")
        assert [f.code for f in findings(src, "GL406")] == ["GL406"], grad
