"""What one call means to a training loop: backward, optimizer steps, clips, unscales, clears.

`CallEvents` is the call half of the training-loop recorder (source/loops.py): a call is
recognised by its qualified name (torch, accelerate, Lightning, DeepSpeed, timm helpers), by its
receiver (an optimizer, a GradScaler, a model) as the file's assignments and parameters show it,
and by data flow for losses and clip thresholds. Each recognised call becomes a neutral `Event`;
calls to the file's own functions are recorded for the rules to follow.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import TYPE_CHECKING

import libcst as cst

from gradlint.facts.training import Event, Value
from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.env import Ref
from gradlint.source.engine.walk import evaluated_children as _children
from gradlint.source.engine.walk import text as _text
from gradlint.source.engine.values import Ctor, DictVal, ListVal, items_of
from gradlint.source.engine.walk import walk
from gradlint.source.names import dotted

if TYPE_CHECKING:
    from gradlint.source.loops import _Ctx

CLIP_TORCH = frozenset({
    "torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad_norm", "torch.nn.utils.clip_grad_value_",
    "torch.nn.utils.clip_grads_with_norm_", "timm.utils.dispatch_clip_grad", "timm.utils.clip_grad.dispatch_clip_grad",
})
ACCELERATORS = frozenset({"accelerate.Accelerator", "accelerate.accelerator.Accelerator"})
# Clamps and rescalings of a parameter's `.grad` (`.grad.data`, `.grad.detach()`): clips by hand.
_HAND_CLIPS = frozenset({"clamp_", "clamp", "clip_", "clip", "mul_", "div_", "copy_"})
_GRAD = re.compile(r"^(\w+)\.grad(?:\.data|\.detach\(\))?$")
# The same of gradients gathered first (`for g in grads: g.mul_(coef)`): a loop variable itself.
_GATHERED = re.compile(r"^(\w+)(?:\.data|\.detach\(\))?$")
# ... or scaled as one list (`torch._foreach_mul_(grads, clip_coef)`, torch's clip_grad_norm_ since 2.0)
_FOREACH_CLIPS = frozenset({"_foreach_mul_", "_foreach_div_", "_foreach_clamp_max_"})
# The iterable of a clip by hand: parameters (`model.parameters()`, `params`), or their gradients
# gathered (`grads = [p.grad for p in params]`, a helper's `grads` parameter)
_OF_PARAMS = re.compile(r"param", re.IGNORECASE)
_OF_GRADS = re.compile(r"grad", re.IGNORECASE)
# What the factor of a rescale by hand is made from when it clips: a norm, a clip coefficient
# (`p.grad.div_(world_size)` averages, `p.grad.mul_(10.0)` scales: neither clips)
_CLIP_FACTOR = re.compile(r"norm|clip|coef", re.IGNORECASE)
# What a gradient copied in (`p.grad.copy_(new)`) is bounded by when it clips (timm's adaptive
# clip: `torch.where(grad_norm < max_norm, g, g * (max_norm / grad_norm))`); a projection
# (PCGrad's `g - (g @ h) / h.norm() ** 2 * h`) bounds nothing
_BOUNDING = re.compile(r"\b(?:where|clamp|clamp_|clip|clip_|min|minimum)\(")
# Local bindings followed from a factor to what it is made from (`coef = max_norm / total`)
_MAX_MADE_FROM = 3
CLIP_NAMES = ("clip_grad_norm_", "clip_grad_norm", "clip_grad_value_", "clip_grads_with_norm_", "dispatch_clip_grad")
# Packages whose objects clip (and unscale) themselves: `accelerator.clip_grad_norm_`, Lightning.
_FRAMEWORK_PACKAGES = ("lightning", "pytorch_lightning", "accelerate", "deepspeed", "torch.")
OPTIMIZER_CLASSES = frozenset({
    "SGD", "Adam", "AdamW", "Adamax", "Adagrad", "Adadelta", "RMSprop", "Rprop", "ASGD", "NAdam", "RAdam",
    "LBFGS", "SparseAdam", "Adafactor", "Lamb", "LAMB", "Lion", "Adan", "AdaBelief", "Ranger", "SAM", "Muon",
    "FusedAdam", "FusedLAMB", "DeepSpeedCPUAdam", "Adam8bit", "AdamW8bit", "PagedAdamW", "Shampoo",
})
# Methods that return a new tensor, not a parametric module call (GL207's data flow).
_TENSOR_METHODS = frozenset({
    "to", "cuda", "cpu", "float", "double", "half", "bfloat16", "long", "int", "view", "reshape", "mean",
    "sum", "squeeze", "unsqueeze", "permute", "transpose", "contiguous", "flatten", "detach", "clone",
    "log", "exp", "softmax", "log_softmax", "argmax", "max", "min", "abs", "pow", "sqrt", "norm", "item",
    "type", "type_as", "expand", "repeat", "chunk", "split", "narrow", "gather", "masked_fill", "sigmoid",
    "tanh", "relu", "mul", "add", "sub", "div", "matmul", "t", "numel", "size", "get", "pop", "items",
    "values", "keys",
})
_CRITERION = re.compile(r"(loss|crit|criterion|metric|distance|divergence)", re.IGNORECASE)
_OPTIMIZER_NAME = re.compile(r"(optim|(^|_)opt($|_|\d|[A-Z])|^opt[A-Z_]|^opt$)")
_NOT_OPTIMIZER = re.compile(r"(sched|scaler|option|ema|env|warmup)", re.IGNORECASE)
_SCALER_NAME = re.compile(r"scaler", re.IGNORECASE)


class _ScopeIndex:
    """What the clips-by-hand tests read of one function (or the module's own code), gathered in
    one walk: each name's loop iterables (`for p in <iter>`, comprehensions too) and the values of
    its plain assignments. (A walk per call was quadratic in a long loop of `x.mul_(...)`.)"""

    def __init__(self, scope: cst.CSTNode) -> None:
        self.scope = scope
        self.loops: dict[str, list[str]] = {}
        self.binds: dict[str, list[cst.BaseExpression]] = {}
        for n in walk(scope, stop=()):
            if type(n) in (cst.For, cst.CompFor) and type(n.target) is cst.Name:
                self.loops.setdefault(n.target.value, []).append(_text(n.iter))
            elif type(n) is cst.Assign:
                for t in n.targets:
                    if type(t.target) is cst.Name:
                        self.binds.setdefault(t.target.value, []).append(n.value)

    def made_from(self, node: cst.BaseExpression) -> str:
        """The text of `node` and of what the names it reads are bound to (plain assignments, a
        few levels: `coef = max_norm / (total + 1e-6)` for `g.mul_(coef)`)."""
        texts, seen, frontier = [_text(node)], set(), [node]
        for _ in range(_MAX_MADE_FROM):
            names = {n.value for f in frontier for n in walk(f, stop=()) if type(n) is cst.Name} - seen
            if not names:
                break
            seen |= names
            frontier = [v for name in names for v in self.binds.get(name, ())]
            texts += [_text(v) for v in frontier]
        return "\n".join(texts)


def _last(text: str) -> str:
    text = re.sub(r"\[.*?\]", "", text)
    return text.rsplit(".", 1)[-1]


def is_optimizer_name(text: str) -> bool:
    last = _last(text)
    return bool(_OPTIMIZER_NAME.search(last) or _OPTIMIZER_NAME.search(last.lower())) and not _NOT_OPTIMIZER.search(last)


def _names_in(node: cst.CSTNode) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_name_reads(node)))


def _name_reads(node: cst.CSTNode) -> list[str]:
    """Every name an expression reads, once per read: `a.b` reads `a.b` and `a`."""
    out: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if type(n) is cst.Name:
            out.append(n.value)
            continue
        if type(n) is cst.Attribute:
            d = dotted(n)
            if d:
                out.append(d)
                out.append(d.split(".")[0])
                continue
        if type(n) is cst.Lambda:
            continue
        stack.extend(reversed(_children(n)))
    return out


_BUILTINS = frozenset({"float", "int", "len", "sum", "max", "min", "abs", "list", "tuple", "dict", "zip", "range",
                       "enumerate", "isinstance", "getattr", "round", "print", "str", "bool", "sorted", "any", "all"})
_MODELISH = re.compile(r"model|net|encoder|decoder|backbone|head|policy|generator|discriminator|critic|actor|student|teacher",
                       re.IGNORECASE)


def _call_kind(text: str, qualified: frozenset[str]) -> str:
    """'op' for calls that cannot hold parameters (torch functions, criteria, tensor methods,
    builtins), 'module' for anything else: a call we cannot see may be a trainable module."""
    head = text.split(".", 1)[0]
    last = text.rsplit(".", 1)[-1]
    if _CRITERION.search(last):
        return "op"
    if qualified:
        torchy = any(q.startswith(("torch.", "numpy.", "math.", "scipy.")) and
                     (not q.startswith("torch.nn.") or q.startswith("torch.nn.functional.")) for q in qualified)
        return "op" if torchy else "module"
    if "." not in text:
        return "op" if text in _BUILTINS else "module"
    if last in _TENSOR_METHODS:
        return "op"
    if head in ("self", "cls") or _MODELISH.search(head):
        return "module"
    return "op"


def _makes_leaf(call: cst.Call) -> bool:
    """`f(..., requires_grad=True)` or `t.requires_grad_()` / `t.requires_grad_(True)`."""
    def true(node) -> bool:
        return type(node) is cst.Name and node.value == "True"
    if type(call.func) is cst.Attribute and call.func.attr.value == "requires_grad_":
        return not call.args or (len(call.args) == 1 and true(call.args[0].value))
    return any(a.keyword is not None and a.keyword.value == "requires_grad" and true(a.value) for a in call.args)


_NONE: frozenset[str] = frozenset()
# Names of calls that take an optimizer to read or save it, or to set its learning rate, never to
# clear its gradients (`save_checkpoint(model, opt)`, `adjust_learning_rate(opt, epoch)`)
_NOT_CLEARING = re.compile(r"save|load|checkpoint|ckpt|state|log|print|record|track|report|summar|write|dump|"
                           r"plot|visual|metric|eval|lr|learning_rate|schedul|adjust|warm|decay", re.IGNORECASE)
# Calls that take an object without acting on it (containers, builtins, copies): no callback that
# may clear the gradients of what it is handed (Event kind 'invoke', via 'handed')
_NOT_HANDED = frozenset({"append", "extend", "insert", "add", "update", "setdefault", "remove", "discard", "pop",
                         "index", "count", "get", "format", "join", "print", "len", "isinstance", "getattr",
                         "setattr", "hasattr", "id", "type", "str", "repr", "deepcopy", "copy", "info", "debug",
                         "warning", "log"})


def _own_callee(text: str) -> bool:
    """A callee as written that may be a function or method of this file: `f`, `self.f`."""
    return "." not in text or (text.startswith("self.") and text.count(".") == 1)


# A call that clears gradients by its name (`zero_grad`, `clear_grad`, `reset_grads`): a helper
# named so clears, whether or not its body can be seen.
CLEARING = re.compile(r"(zero|clear|reset)_?grad")


def _recorded_call(name: str) -> bool:
    """Whether every call of a project function so named is an event of its caller's facts (an
    `invoke` or a `call`, with the arguments that matter), rather than read as a clip, a clear,
    a criterion or a framework call: its callers can then all be read from their facts."""
    return not (_CRITERION.search(name) or name in CLIP_NAMES or re.search(r"clip_?grad|grad_?clip|(zero|clear|reset)_?grad",
                                                                          name, re.IGNORECASE)
                or name in ("clip_gradients", "step", "first_step", "second_step", "backward", "manual_backward",
                            "unscale_", "unscale_gradients", "zero_", "fill_", "fit", "train", "register_hook",
                            "parameters", "named_parameters"))



def _imported_function(q: frozenset[str], receiver: str) -> bool:
    """A call whose callee an import names (`q`), as a function of a module that is no framework
    (Lightning, accelerate, DeepSpeed: their objects clip and unscale themselves) or torch's:
    `utils.clip_gradients(...)`, `from hooks import clip_grads`."""
    return bool(q) and not re.search(r"accelerat|fabric|trainer", receiver, re.I) and \
        not any(n.startswith(_FRAMEWORK_PACKAGES) for n in q)

class CallEvents:
    """The call events of the training-loop recorder (a mixin of loops._Extractor: its spans, names and contexts)."""

    _assigns_indexed = 0
    _assign_kinds: dict[str, set[str]]

    def _call_kinds(self, value: cst.BaseExpression):
        """(callee text, 'module' | 'op' | 'leaf') for each call in an expression (GL207's data
        flow); 'leaf' for a tensor made to require grad (`torch.zeros(n, requires_grad=True)`,
        `t.requires_grad_()`), which carries a gradient whatever grad mode it is made in."""
        out: list[tuple[str, str]] = []
        for n in walk(value):
            if type(n) is not cst.Call:
                continue
            if _makes_leaf(n):
                out.append((dotted(n.func) or "requires_grad_", "leaf"))
                continue
            text = dotted(n.func)
            if text is None:
                if type(n.func) is cst.Attribute and n.func.attr.value in _TENSOR_METHODS:
                    out.append((n.func.attr.value, "op"))
                continue
            out.append((text, _call_kind(text, self.qualify(n.func))))
        return out

    def _passed(self, value: cst.BaseExpression, calls) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Assign.passed: for each 'module' call of a bare name or `self.name` in the value, the
        names read only in its arguments (`rollout(policy, obs)`: policy and obs reach the value
        only through what `rollout` returns)."""
        if not any(kind == "module" and _own_callee(text) for text, kind in calls):
            return ()
        reads = Counter(_name_reads(value))
        out = []
        for n in walk(value):
            if type(n) is not cst.Call:
                continue
            text = dotted(n.func)
            if not text or not _own_callee(text) or _makes_leaf(n) or _call_kind(text, self.qualify(n.func)) != "module":
                continue
            inside = Counter(name for a in n.args for name in _name_reads(a.value))
            out.append((text, tuple(name for name, k in inside.items() if k == reads[name])))
        return tuple(out)

    # -- calls ---------------------------------------------------------------------------------
    def events(self, expr: cst.CSTNode, sid: int, ctx: "_Ctx") -> list[Event]:
        found = [n for n in walk(expr) if type(n) is cst.Call]
        if not found:
            return []
        # inner calls run first: `clip(...)` inside `norm = float(clip(...))`, the scale inside
        # `scaler.scale(loss).backward()`
        found.sort(key=lambda n: (self.span(n).end_line, self.span(n).end_column))
        out: list[Event] = []
        for call in found:
            out.extend(self.call(call, sid, ctx))
        return out

    def call(self, call: cst.Call, sid: int, ctx: "_Ctx") -> list[Event]:
        func = call.func
        text = dotted(func)
        span = self.span(call)
        q = self.qualify(func)
        fid = ctx.fid
        ng = ctx.nograd
        attr = func.attr.value if type(func) is cst.Attribute else (func.value if type(func) is cst.Name else "")
        receiver = func.value if type(func) is cst.Attribute else None
        recv_text = _text(receiver) if receiver is not None else ""

        if attr == "register_hook" and re.search(r"clamp|clip", _text(call)):
            self.hook_clipping = True

        if attr in _FOREACH_CLIPS and call.args and self._foreach_clip(call, q, fid):
            # torch's own clip since 2.0: the gradients gathered in a list, scaled at once
            return [Event("clip", span, fid, sid, ng, via="hand", name=text or attr, target=_text(call.args[0].value))]
        if attr in _HAND_CLIPS and self._hand_clip(call, attr, recv_text, fid):
            # A clip written by hand: `p.grad.data.clamp_(-1, 1)` (the DQN tutorial's),
            # `p.grad = p.grad.clamp(-1, 1)`, `p.grad.data.mul_(clip_coef)` (torch's own
            # clip_grad_norm before 0.4, and its copies). It counts as clipping (GL201); the
            # rules that judge torch's clips by their threshold or their place leave it alone.
            written = text or _text(func)  # (`p.grad.detach().mul_` has no dotted name)
            if attr.startswith(("clamp", "clip")):
                return [dataclasses.replace(self._clip(call, "hand", written, 1, ctx, sid, keyword=("max",)),
                                            target=recv_text)]
            return [Event("clip", span, fid, sid, ng, via="hand", name=written, target=recv_text)]

        # clip calls
        if not q.isdisjoint(CLIP_TORCH) or (text and not q and any(text.endswith("nn.utils." + n) for n in CLIP_NAMES)):
            return [self._clip(call, "torch", text or attr, 1, ctx, sid)]
        if attr in CLIP_NAMES or attr == "clip_gradients":
            if type(func) is cst.Name:
                if attr in self.pre.functions:
                    return [self._local_call(call, attr, None, ctx, sid)]
                return [self._clip(call, "helper", attr, 1, ctx, sid)]
            if type(receiver) is cst.Name and _imported_function(q, recv_text):
                # `utils.clip_gradients(model, 1.0)` with `import utils`: a function of a module,
                # read as what it runs when the project defines it (rules/training/steps)
                return [self._clip(call, "helper", text or attr, 1, ctx, sid)]
            if attr == "clip_gradients":
                if recv_text == "self" and attr in self.pre.methods and "fabric" not in recv_text:
                    return [self._local_call(call, attr, "self", ctx, sid)]
                kw = ("gradient_clip_val",) if recv_text == "self" else ("max_norm", "clip_val")
                return [self._clip(call, "framework", text or attr, -1, ctx, sid, keyword=kw)]
            if recv_text == "self" and attr in self.pre.methods:
                return [self._local_call(call, attr, "self", ctx, sid)]
            positional = [a for a in call.args if a.keyword is None]
            pos = 1 if self._accelerator(recv_text, fid) or len(positional) >= 2 else 0
            return [self._clip(call, "framework", text or attr, pos, ctx, sid)]
        if attr and re.search(r"clip_?grad|grad_?clip", attr, re.IGNORECASE) and (
                not q or (type(func) is cst.Name or type(receiver) is cst.Name) and _imported_function(q, recv_text)):
            if type(func) is cst.Name and attr in self.pre.functions:
                return [self._local_call(call, attr, None, ctx, sid)]
            if recv_text == "self" and attr in self.pre.methods:
                return [self._local_call(call, attr, "self", ctx, sid)]
            # (with its arguments: a helper another file defines is read with them, facts.training)
            return [Event("clip", span, fid, sid, ng, via="helper", name=text or attr, args=self._args(call, ctx))]

        # a method of a class of this file, called on an instance of it
        if text and not q:
            inst = self._instance_call(call, attr, recv_text, ctx, sid)
            if inst:
                return inst
        if type(receiver) is cst.Call and type(receiver.func) is cst.Name and receiver.func.value in self.pre.classes:
            # `GradientClipper().on_step_end(model)`: the method of a class of this file, on a new instance
            made = self._method_calls(call, attr, recv_text, [receiver.func.value], ctx, sid)
            if made:
                return made

        # backward
        if not q.isdisjoint({"torch.distributed.autograd.backward"}):
            # distributed autograd: gradients live in the context, one per iteration
            return [self._backward(call, "dist_autograd", _arg(call, 1, "roots"), ctx, sid)]
        if attr == "backward" and receiver is not None:
            if recv_text == "self" and "backward" in self.pre.methods:
                return [self._local_call(call, "backward", "self", ctx, sid)]
            if type(receiver) is cst.Call and type(receiver.func) is cst.Attribute and receiver.func.attr.value == "scale":
                loss = _arg(receiver, 0, "outputs")
                return [self._backward(call, "scaler", loss, ctx, sid, scaler=_text(receiver.func.value))]
            low = recv_text.lower()
            positional = [a for a in call.args if a.keyword is None]
            if self._accelerator(recv_text, fid):
                # (the accelerator's text: one made with fp16 scales the loss, GL203)
                return [self._backward(call, "accelerate", _arg(call, 0, "loss"), ctx, sid, scaler=recv_text)]
            if "fabric" in low:
                # (the Fabric's text: one made with precision="16-mixed" scales the loss, GL203)
                return [self._backward(call, "fabric", _arg(call, 0, "tensor"), ctx, sid, scaler=recv_text)]
            if any(q2.startswith("torch.autograd") for q2 in q):
                return [self._backward(call, "autograd", _arg(call, 0, "tensors"), ctx, sid)]
            if "engine" in low or "deepspeed" in low or "model_engine" in low:
                return [self._backward(call, "deepspeed", _arg(call, 0, "loss"), ctx, sid)]
            if recv_text.startswith("super(") or recv_text in ("ctx", "cls"):
                return []
            if re.fullmatch(r"\w*tape", _last(low)):
                # `with wp.Tape() as tape: ...; tape.backward(loss)`: another library's tape (NVIDIA
                # Warp's records, backpropagates and clears its own gradients, `tape.zero()`);
                # torch has no tape (skrl's Warp agents were read as torch loops, GL205)
                return []
            if positional and type(receiver) in (cst.Name, cst.Attribute) and re.search(
                    r"model|module|strategy|plugin|precision|trainer|runner|booster|wrapper|learner|agent", _last(low)):
                # `strategy.backward(loss)`: a framework object whose first argument is the loss;
                # elsewhere `y.backward(g)` backpropagates y, and g is only its incoming gradient
                return [self._backward(call, "framework", positional[0].value, ctx, sid)]
            return [self._backward(call, "tensor", receiver, ctx, sid)]
        if attr == "manual_backward" and recv_text == "self":
            return [self._backward(call, "lightning", _arg(call, 0, "loss"), ctx, sid)]
        if not q.isdisjoint({"torch.autograd.backward"}):
            return [self._backward(call, "autograd", _arg(call, 0, "tensors"), ctx, sid)]

        # optimizer steps
        if attr in ("step", "first_step", "second_step") and receiver is not None:
            if recv_text in ("self", "cls") and attr in self.pre.methods:
                return [self._local_call(call, attr, recv_text, ctx, sid)]  # an optimizer's own methods (SAM)
            scope = self._scope_nodes.get(fid)
            scaler = self._scaler_name(recv_text, scope) or self._passed_as(recv_text, fid, ctx, self._made_scaler)
            zero = _arg(call, -1, "zero_grad")
            clears = type(zero) is cst.Name and zero.value == "True"
            if attr == "step" and scaler:
                opt = _arg(call, 0, "optimizer")
                return [Event("step", span, fid, sid, ng, via="scaler", target=_text(opt) if opt is not None else "",
                              scaler=recv_text)]
            if recv_text in ctx.undrawn:
                return []
            if self._is_optimizer(recv_text, fid) or recv_text in ctx.drawn \
                    or self._passed_as(recv_text, fid, ctx, self._made_optimizer):
                out: list[Event] = []
                closure = _arg(call, 0, "closure") if attr == "step" else None
                callees: tuple[int, ...] = ()
                name = ""
                if closure is not None:
                    name = _text(closure)
                    if type(closure) is cst.Name and closure.value in self.pre.functions:
                        callees = (-1,)
                    elif type(closure) is cst.Attribute and recv_text and closure.attr.value in self.pre.methods:
                        callees = (-1,)
                ev = Event("step", span, fid, sid, ng, via="sam" if attr != "step" else "optimizer",
                           target=recv_text, name=name, callees=callees, clears=clears)
                out.append(ev)
                if clears:
                    out.append(Event("clear", span, fid, sid, ng, via="zero_grad", target=recv_text))
                return out
            if self._open_param(recv_text, fid, ctx):
                # `o.step()` / `s.step(o)` on a parameter no call of this file decides: a step
                # when every call in the project passes an optimizer (a scaler) for it, which
                # the rules ask the project index (facts.training.bind_callers)
                return [Event("open_step", span, fid, sid, ng, target=recv_text, name=attr, param=recv_text,
                              args=self._args(call, ctx))]
            ref = self._foreign_ref(recv_text, ctx)
            if ref:
                # `trainer.step()` on an instance of a project class defined elsewhere
                return [Event("invoke", span, fid, sid, ng, target=text or attr, name=attr, ref=ref,
                              args=self._args(call, ctx))]
            return []

        if attr == "unscale_" and receiver is not None:
            opt = _arg(call, 0, "optimizer")
            return [Event("unscale", span, fid, sid, ng, target=_text(opt) if opt is not None else "", scaler=recv_text)]
        if attr == "unscale_gradients":
            return [Event("unscale", span, fid, sid, ng, target="", scaler=recv_text)]

        # clearing
        if attr and CLEARING.search(attr):
            # a helper named so clears, whether or not we can see into it
            return [Event("clear", span, fid, sid, ng, via="zero_grad", target=recv_text)]
        if attr in ("zero_", "fill_") and receiver is not None and re.search(r"\.grad(\.data)?$", recv_text):
            return [Event("clear", span, fid, sid, ng, via="grad-zero", target=recv_text)]
        if not q.isdisjoint({"torch._foreach_zero_"}):
            return [Event("clear", span, fid, sid, ng, via="grad-none")]

        # framework training entry points
        if attr in ("fit", "train") and receiver is not None and (
                re.search("trainer", _last(recv_text), re.IGNORECASE)
                or not self._assigned(recv_text).isdisjoint(("pl_trainer", "hf_trainer"))):
            model = _arg(call, 0, "model") if attr == "fit" else None
            if type(model) is cst.Call and dotted(model.func):
                # trainer.fit(LitModel(...)): the class itself
                return [Event("fit", span, fid, sid, ng, target=recv_text, via="ctor",
                              name=dotted(model.func).rsplit(".", 1)[-1])]
            return [Event("fit", span, fid, sid, ng, target=recv_text, name=_text(model) if model is not None else "")]

        # calls of this file's functions (for inlining), and other calls (model invocations)
        if type(func) is cst.Name and attr in self.pre.functions and not q:
            return [self._local_call(call, attr, None, ctx, sid)]
        if recv_text in ("self", "cls") and attr in self.pre.methods:
            return [self._local_call(call, attr, recv_text, ctx, sid)]
        # a call that may run a model: GL201 falls back on these to tell which model a loop trains
        ref = self._foreign_ref(recv_text if receiver is not None else attr, ctx) \
            if text and not q and attr not in ("parameters", "named_parameters") else ""
        if ref and not _CRITERION.search(_last(ref)):
            # an instance of a project class defined elsewhere (`loss_scaler(loss, opt)`): the
            # rules may read its method through the project index
            return [Event("invoke", span, fid, sid, ng, target=text, name=attr if receiver is not None else "__call__",
                          ref=ref, args=self._args(call, ctx))]
        # `cb.on_step_end(self)`, `hook(optimizer)`: a callback nothing here sees into (no import
        # names it: a parameter, a loop variable, an attribute), handed the optimizer or the
        # object that holds it, which it may clear; not a container's method, a builtin, or a
        # call named for saving, logging or the learning rate
        callback = not q and recv_text not in ("self", "cls") and attr not in _NOT_HANDED and \
            not _NOT_CLEARING.search(attr)
        module_call = text and _call_kind(text, q) == "module" and attr not in ("parameters", "named_parameters")
        # what each argument is to a training step ('optimizer', 'scaler', ''), read once for both
        kinds = [self._object_kind(a.value, fid) for a in call.args if not a.star] if callback or module_call else []
        handed = callback and ("optimizer" in kinds or any(not a.star and _text(a.value) == "self" for a in call.args))
        if module_call:
            # what it passes matters only where it passes an optimizer or a scaler (a training
            # step of another file may take it for a parameter: facts.training.bind_callers), or
            # where it is a function another file of the project defines (inlined there, with them),
            # or a class of this file (what its constructor keeps: facts.training.config_threshold)
            passes = any(kinds) or (bool(q) and not any(n.startswith("torch.") for n in q)) or \
                text in self.pre.classes
            return [Event("invoke", span, fid, sid, ng, target=text, args=self._args(call, ctx) if passes else (),
                          via="handed" if handed else "")]
        if handed:
            return [Event("invoke", span, fid, sid, ng, target=text or attr, via="handed")]
        return []

    def _assigned(self, text: str) -> frozenset[str] | set[str]:
        """The kinds of the assignments to `text` recorded so far (Assign.kind), indexed as they come."""
        index = self._assign_kinds
        for a in self.assigns[self._assigns_indexed:]:
            index.setdefault(a.target, set()).add(a.kind)
        self._assigns_indexed = len(self.assigns)
        return index.get(text, _NONE)

    def _accelerator(self, recv_text: str, fid: int) -> bool:
        """The receiver is an accelerate `Accelerator`: by its name, or by what the engine knows
        it holds where this function reads it (`acc = Accelerator(...)` here or at the module's
        level, `self.acc` set in any method, before or after this one)."""
        if "accelerat" in recv_text.lower():
            return True
        if not re.fullmatch(r"[\w.]+", recv_text):
            return False
        value = self.pre.value_of(recv_text, self._scope_nodes.get(fid))
        return type(value) is Ctor and not self.qualify(value.node.func).isdisjoint(ACCELERATORS)

    def _value_kind(self, text: str, scope) -> str:
        """What the value `text` holds where `scope` reads it is to a training step (the engine's
        value: `_PrePass.kind`): 'optimizer', 'scaler', 'model', 'other', or '' when unknown."""
        if not text or not re.fullmatch(r"[\w.]+", text):
            return ""
        return self.pre.kind(self.pre.value_of(text, scope), self.qualify)

    def _scaler_name(self, recv_text: str, scope=None) -> bool:
        """A GradScaler: by the value it holds where the engine knows it, else by its name or its
        assignment."""
        known = self._value_kind(recv_text, scope)
        if known:
            return known == "scaler"
        return self._named_scaler(recv_text)

    def _named_scaler(self, recv_text: str) -> bool:
        """A GradScaler by its name or its assignment (where the engine knows no value)."""
        return bool(_SCALER_NAME.search(_last(recv_text))) or "scaler" in self._assigned(recv_text)

    def _passed_as(self, recv_text: str, fid: int, ctx: "_Ctx", test) -> bool:
        """`s.step(o)` in `def update(model, o, s, loss)`: every call of this file passes a scaler
        (or an optimizer, by `test`) for the parameter."""
        fdef = self._scope_nodes.get(fid)
        if recv_text not in self._params.get(fid, ()) or fdef is None or self._func_parent.get(fid) != 0:
            return False
        texts = self.pre.passed(fdef, ctx.cls is not None, recv_text)
        return bool(texts) and all(test(t, scope) for t, scope in texts)

    def _open_param(self, recv_text: str, fid: int, ctx: "_Ctx") -> bool:
        """A parameter of a top-level function, or of a plain method of a top-level class (not
        `self`, no decorator, neither `forward` nor a dunder), whose name says nothing against an
        optimizer or a scaler: what it is depends on the callers of the whole project."""
        fdef = self._scope_nodes.get(fid)
        if not (type(fdef) is cst.FunctionDef and self._func_parent.get(fid) == 0 and recv_text in self._params.get(fid, ())
                and not _NOT_OPTIMIZER.search(recv_text) and _recorded_call(fdef.name.value)):
            return False
        if ctx.cls is None:
            return True
        name = fdef.name.value
        first = next(iter((*fdef.params.posonly_params, *fdef.params.params)), None)
        return (ctx.cls in self.top_classes and not fdef.decorators and first is not None
                and first.name.value != recv_text and name != "forward" and not (name.startswith("__") and name.endswith("__")))

    def _object_kind(self, node: cst.BaseExpression, fid: int) -> str:
        """What an argument is to a training step: 'scaler' (a name this file binds to a GradScaler
        or names as a scaler), 'optimizer' (likewise), '' else. The value it holds decides where
        the engine knows it; its name only where nothing is known."""
        if type(node) not in (cst.Name, cst.Attribute):
            return ""
        text = dotted(node)
        if not text:
            return ""
        scope = self._scope_nodes.get(fid)
        known = self._value_kind(text, scope)
        if known:
            return known if known in ("optimizer", "scaler") else ""
        if self._made_scaler(text, scope):
            return "scaler"
        cls = self.pre.instance_class(text)
        if "lr_scheduler" in cls or "swa_utils" in cls or _NOT_OPTIMIZER.search(_last(cls)):
            return ""  # `torch.optim.lr_scheduler.LambdaLR(...)`: no optimizer
        if self._made_optimizer(text) or "optimizer" in self._assigned(text):
            return "optimizer"
        return ""

    def _made_scaler(self, text: str, scope=None) -> bool:
        """A name this file binds to a GradScaler (or names as one), read where `scope` reads it."""
        known = self._value_kind(text, scope)
        if known:
            return known == "scaler"
        return self._named_scaler(text) or self.pre.instance_class(text).rsplit(".", 1)[-1] == "GradScaler"

    def _made_optimizer(self, text: str, scope=None) -> bool:
        """A name this file binds to an optimizer (or names as one), read where `scope` reads it."""
        known = self._value_kind(text, scope)
        if known:
            return known == "optimizer"
        cls = self.pre.instance_class(text)
        last = cls.rsplit(".", 1)[-1]
        return is_optimizer_name(text) or bool(cls) and (
            cls.startswith(("torch.optim.", "optim.")) or last in OPTIMIZER_CLASSES or last.endswith("Optimizer"))

    def _is_optimizer(self, recv_text: str, fid: int) -> bool:
        if not recv_text:
            return False
        known = self._value_kind(recv_text, self._scope_nodes.get(fid))
        if known:
            return known == "optimizer"
        kinds = self._assigned(recv_text)
        if "optimizer" in kinds:
            return True
        if not kinds.isdisjoint(("model", "scaler", "pl_trainer", "hf_trainer")):
            return False
        return is_optimizer_name(recv_text)

    def _local_call(self, call: cst.Call, name: str, receiver: str | None, ctx: "_Ctx", sid: int, ref: str = "") -> Event:
        return Event("call", self.span(call), ctx.fid, sid, ctx.nograd, target=(receiver + "." if receiver else "") + name,
                     name=name, callees=(-1,), args=self._args(call, ctx), ref=ref)

    def _args(self, call: cst.Call, ctx: "_Ctx") -> tuple[tuple[str, Value], ...]:
        """The arguments as the callee's parameters will read them (see Event.args)."""
        out: list[tuple[str, Value]] = []
        position = 0
        for a in call.args:
            if a.star:
                out.append(("*", Value(_text(a.value))))
                break
            value = self.value(a.value, ctx.fid, ctx.tests) or Value("")
            kind = self._object_kind(a.value, ctx.fid)
            if kind:
                value = dataclasses.replace(value, kind=kind)
            if kind in ("", "other") and self.env.field is not None and (
                    built := self.env.field.built(a.value, self._scope_nodes.get(ctx.fid), call)) is not None:
                value = dataclasses.replace(value, fields=built[0], origin=built[1])
            if a.keyword is not None:
                out.append((a.keyword.value, value))
            else:
                out.append((str(position), value))
                position += 1
        return tuple(out)

    def _instance_call(self, call: cst.Call, attr: str, recv_text: str, ctx: "_Ctx", sid: int) -> list[Event]:
        """`loss_scaler(loss, opt)` / `trainer.optimize()` on an instance of a class of this file
        that defines the method (itself or in a base of this file): a call to inline. On the
        variable of a loop over instances (`for cb in callbacks: cb.on_step_end(model)`), a call
        of the method of each class that defines it, in the order of the items."""
        holder, method = (recv_text, attr) if recv_text else (attr, "__call__")
        if holder in ("self", "cls", "") or holder in self.pre.functions:
            return []
        cls = self.pre.instance_class(holder, self._scope_nodes.get(ctx.fid)) or self._passed_instance(holder, ctx)
        if cls:
            classes = [cls]
        elif any(re.search(rf"(?<![\w.]){re.escape(holder)}(?!\w)", t) for t in ctx.tests):
            # `if isinstance(cb, Logger): cb.on_step_end(model)`: which items reach the call is
            # decided by a test of the item; the loop is not read
            classes = []
        else:
            classes = self._item_classes(holder, ctx)
        return self._method_calls(call, method, holder, classes, ctx, sid)

    def _method_calls(self, call: cst.Call, method: str, holder: str, classes: list[str], ctx: "_Ctx",
                      sid: int) -> list[Event]:
        """A call of `method` of each of `classes` (this file's) that defines it, on `holder`, to
        inline; [] for a project optimizer's own `step` or `zero_grad` (the step itself)."""
        out = []
        for cls in classes:
            if not self.pre.method_of(cls, method):
                continue
            bases = self.pre.classes.get(cls.rsplit(".", 1)[-1], ((), set()))[0]
            if method in ("step", "zero_grad") and (is_optimizer_name(holder) or cls.endswith("Optimizer")
                                                   or any(b.endswith("Optimizer") for b in bases)):
                return []
            out.append(self._local_call(call, method, holder, ctx, sid, ref=cls))
        return out

    def _item_classes(self, holder: str, ctx: "_Ctx") -> list[str]:
        """The classes, in the order of the items, of the instances the variable `holder` of a
        loop goes through (`for cb in callbacks`, `for cb in callbacks.values()`): a display of
        instances of this file's classes bound in the file and never changed in place, or one
        passed for the function's parameter by every call of this file (`train(..., [Clipper()])`:
        the classes of each call's display, first seen first). [] when an item is anything else."""
        scope = self._scope_nodes.get(ctx.fid)
        bound = self.pre.env.lookup(scope, holder) if "." not in holder else None
        if type(bound) is not Ref or not bound.item:
            return []
        known = self.pre.value_of(bound.text, bound.scope, items=True)
        if type(known) in (ListVal, DictVal):
            if type(known) is DictVal and bound.item != "values":
                return []  # its keys
            return self._display_classes(known)
        if bound.scope is not scope or not self.pre.env.is_param(scope, bound.text) or type(scope) is not cst.FunctionDef \
                or self._func_parent.get(ctx.fid) != 0 or ctx.cls is not None:
            return []
        if self.pre.env.assigns(scope, bound.text) or bound.text in self.pre.mutated:
            return []  # the function binds the name again, or changes what it was passed
        out: list[str] = []
        for text, where in self.pre.passed(scope, False, bound.text) or ():
            try:
                node = cst.parse_expression(text)
            except cst.ParserSyntaxError:
                return []
            passed = self.pre._object(node, where)
            if type(passed) is Ref:
                passed = self.pre.value_of(passed.text, passed.scope, items=True)
            if type(passed) is not (DictVal if bound.item == "values" else ListVal):
                return []
            found = self._display_classes(passed)
            if not found:
                return []
            out.extend(c for c in found if c not in out)
        return out

    def _display_classes(self, container: ListVal | DictVal) -> list[str]:
        """The classes of this file of a display's items, each an instance (`Clipper()`); [] when
        one is anything else."""
        out: list[str] = []
        for item in items_of(container):
            if type(item) is not Ctor or item.cls.rsplit(".", 1)[-1] not in self.pre.classes \
                    or self.pre.kind(item, self.qualify) in ("optimizer", "scaler"):
                return []  # (a project optimizer's `step` is the step itself)
            if item.cls not in out:
                out.append(item.cls)
        return out

    def _passed_instance(self, holder: str, ctx: "_Ctx") -> str:
        """The class of the instance every call of this file passes for `holder`, a parameter of a
        top-level function (`def run(agent, loader)` with `run(Agent(), data)` or `agent = Agent();
        run(agent, data)`); '' when a call passes another class, something else, or none calls."""
        fdef = self._scope_nodes.get(ctx.fid)
        if "." in holder or holder not in self._params.get(ctx.fid, ()) or type(fdef) is not cst.FunctionDef \
                or self._func_parent.get(ctx.fid) != 0 or ctx.cls is not None:
            return ""
        texts = self.pre.passed(fdef, False, holder)
        found: set[str] = set()
        for text, scope in texts or ():
            called = re.fullmatch(r"([A-Za-z_][\w.]*)\(.*\)", text, re.DOTALL)
            cls = called.group(1) if called and called.group(1).rsplit(".", 1)[-1] in self.pre.classes \
                else self.pre.instance_class(text, scope) if re.fullmatch(r"[\w.]+", text) else ""
            if not cls:
                return ""
            found.add(cls)
        return found.pop() if len(found) == 1 else ""

    def _foreign_ref(self, holder: str, ctx: "_Ctx") -> str:
        """The class `holder` is an instance of, when it is not a class of this file (the rules may
        find it through the project index); for `self` in a method, the class's first base that
        is not of this file (a method it does not define itself comes from there); '' else."""
        if holder == "self" and ctx.cls:
            bases = self.pre.classes.get(ctx.cls, ((), set()))[0]
            return next((b for b in bases if b.rsplit(".", 1)[-1] not in self.pre.classes), "")
        cls = self.pre.instance_class(holder) if holder not in ("self", "cls", "") else ""
        return cls if cls and cls.rsplit(".", 1)[-1] not in self.pre.classes else ""

    def _hand_clip(self, call: cst.Call, attr: str, recv_text: str, fid: int) -> bool:
        """Whether `<p>.grad.<attr>(...)` clips by hand: `p` runs over parameters (a loop of this
        function over something named like them: an input's `x.grad.clamp_` in adversarial
        training, one weight's gradient, clip nothing of the model), or `<g>.<attr>(...)` with `g`
        running over gradients gathered first; and the call bounds the gradient on both sides
        (`clamp_(min=0)` does not), rescales it by a factor made from a norm or a clip
        coefficient, or copies in a gradient bounded by one (`copy_`)."""
        m = _GRAD.match(recv_text)
        gathered = m is None
        if gathered:
            m = _GATHERED.match(recv_text)
            if m is None:
                return False
        bounds = attr.startswith(("clamp", "clip"))
        if bounds:
            positional = [a for a in call.args if a.keyword is None and not a.star]
            named = {a.keyword.value for a in call.args if a.keyword is not None}
            if len(positional) + len(named & {"min", "max"}) < 2:
                return False
        elif not call.args:
            return False
        index = self._hand_index(fid)
        if index is None:
            return False
        iterables = index.loops.get(m.group(1), ())
        if not any(self._over(it, gathered, index) for it in iterables):
            return False
        if bounds:
            return True
        made = index.made_from(call.args[0].value)
        return _CLIP_FACTOR.search(made) is not None and (attr != "copy_" or _BOUNDING.search(made) is not None)

    def _foreach_clip(self, call: cst.Call, q: frozenset, fid: int) -> bool:
        """Whether `torch._foreach_mul_(grads, coef)` (or `_div_`, `_clamp_max_`) scales gathered
        gradients by a factor made from a norm or a clip coefficient."""
        if not any(n.startswith("torch.") for n in q) or len(call.args) < 2:
            return False
        grads, factor = call.args[0].value, call.args[1].value
        index = self._hand_index(fid)
        return index is not None and self._over(_text(grads), True, index) \
            and _CLIP_FACTOR.search(index.made_from(factor)) is not None

    def _hand_index(self, fid: int) -> _ScopeIndex | None:
        scope = self._scope_nodes.get(fid)
        if scope is None:  # (the module's own code)
            src = getattr(self, "src", None)
            scope = src.module if src is not None else None
        if scope is None:
            return None
        found = self._hand_indexes.get(fid)
        if found is None:
            found = self._hand_indexes[fid] = _ScopeIndex(scope)
        return found

    @staticmethod
    def _over(iterable: str, gathered: bool, index: _ScopeIndex) -> bool:
        """Whether a loop over `iterable` runs over parameters or, `gathered`, over their gradients:
        named so, or a name the scope binds to the `.grad` of parameters."""
        if not gathered:
            return _OF_PARAMS.search(iterable) is not None
        if not _OF_GRADS.search(iterable):
            return False
        if not iterable.isidentifier():  # `[p.grad for p in params]` written in place
            return ".grad" in iterable and _OF_PARAMS.search(iterable) is not None
        # a name: bound here to what reads parameters' `.grad`, or a helper's parameter named so
        bound = [_text(v) for v in index.binds.get(iterable, ())]
        scope = index.scope
        return all(".grad" in v and _OF_PARAMS.search(v) for v in bound) if bound else \
            type(scope) is cst.FunctionDef and any(p.name.value == iterable for p in scope.params.params)

    def _clip(self, call: cst.Call, via: str, name: str, position: int, ctx: "_Ctx", sid: int,
              keyword: tuple[str, ...] = ("max_norm", "clip_value", "max_grad_norm", "value")) -> Event:
        value_node = _arg(call, position, keyword)
        norm_node = _arg(call, 2 if via == "torch" else -1, "norm_type")
        if via == "torch" and name.endswith("dispatch_clip_grad"):
            norm_node = None
        value = self.value(value_node, ctx.fid, ctx.tests)
        if value is not None and value.number is None and self.env.field is not None and \
                (param := self.env.field.param_field(value_node, self._scope_nodes.get(ctx.fid))):
            # under a test of the config it reads (`if cfg.grad_clip > 0:`, `if cfg.use_clip:`),
            # also when the call reads it through a local name: the config decides the clip
            # (`cfg.optim.grad_clip` under a test of `cfg.optim` or of `cfg`)
            owner = param.split(".")
            owners = [".".join(owner[:i]) for i in range(2 if owner[0] == "self" else 1, len(owner))]
            tested = any(re.search(r"(?<![\w.])" + re.escape(o) + r"\.", t) for o in owners for t in ctx.tests)
            value = dataclasses.replace(value, param=param, guarded=value.guarded or tested)
        return Event("clip", self.span(call), ctx.fid, sid, ctx.nograd, via=via, name=name,
                     target=_text(call.args[0].value) if call.args else "",
                     value=value,
                     # a helper another file defines is read with what the call passes (steps)
                     args=self._args(call, ctx) if via == "helper" else (),
                     norm_type=self.value(norm_node, ctx.fid, ctx.tests) if norm_node is not None else None)

    def _backward(self, call: cst.Call, via: str, loss: cst.BaseExpression | None, ctx: "_Ctx", sid: int,
                  scaler: str = "") -> Event:
        uses: tuple[str, ...] = ()
        module_call = False
        text = ""
        if loss is not None:
            text = _text(loss)
            uses = _names_in(loss)
            module_call = any(kind == "module" for _, kind in self._call_kinds(loss))
        return Event("backward", self.span(call), ctx.fid, sid, ctx.nograd, via=via, target=text, scaler=scaler,
                     uses=uses, module_call=module_call)
