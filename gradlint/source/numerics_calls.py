"""The numerics evaluator's calls: what calling a torch function, a tensor method, a module, a
criterion or a function of the file gives (`engine/tensors.V`).

`qualified_call` (a callee an import names: `torch.log`, `F.softmax`, `nn.BCELoss`) and
`method_call` (`x.sum()`, `p.clamp(min=eps)`) dispatch through the tables of handlers of
`numerics_ops` (what each torch function and tensor method does). Each call is also an edge of the
call graph with what it passes (`numerics_callers.CallRecords`).
"""

from __future__ import annotations


import libcst as cst

from gradlint.facts.numerics import Site
from gradlint.source.engine import bounds
from gradlint.source.engine.calls import arg as _arg, arguments, bind
from gradlint.source.metric_uses import leaving_call
from gradlint.source.numerics_sites import graph_break
from gradlint.source.numerics_callers import _STDLIB
from gradlint.source.pure_callables import LIBRARIES
from gradlint.source.numerics_eval import _function_value
from gradlint.source.engine.calls import split as _args
from gradlint.source.engine.tensors import (SAFETY_FACTS, V, UNKNOWN, replace, _combine, merge, knows_nothing, every_part,
                                            live_params, parts_joined)
from gradlint.source.engine.walk import children, suite, walk
from gradlint.source.names import changes_in_place, decorators, dotted, grad_state, is_off, root_name, with_items
from gradlint.source.numerics_registry import builder_shape
from gradlint.source.numerics_wrapped import module_with_criterion
from gradlint.source.numerics_sequential import GROWS as SEQUENTIAL_GROWS
from gradlint.source.numerics_names import _ARITH, GRADCHECK
from gradlint.source.numerics_ops import _METHODS, _MODULE_CLASS_ORDER, _QUALIFIED, TorchOps, _Call, _converted, _short_of
from gradlint.source.trained_names import trained_names


# The switches of grad mode as written (no import table here: names.grad_mode reads them by their
# last name).
def _BY_NAME(_expr: cst.BaseExpression) -> frozenset[str]:
    return frozenset()


_NOT_READ = object()  # (a method method_returns has not read yet)


def _short_returns(fn: cst.FunctionDef) -> list[cst.BaseExpression] | None:
    """The returned expressions of a function or method of at most 5 statements whose every return
    (at its top level or in an if/else there) gives a call, an attribute, a subscript or a dict
    display; None for any other."""
    body = suite(fn.body)
    if len(body) > 5:
        return None
    out: list[cst.BaseExpression] = []
    # (each statement with the grad state it runs in: what it returns under no_grad carries no
    # gradient, and the other returns decide)
    stack: list[tuple[cst.CSTNode, str | None]] = [(s, None) for s in body]
    while stack:
        n, state = stack.pop()
        if type(n) is cst.If:
            stack.extend((s, state) for s in suite(n.body))
            if n.orelse is not None:
                stack.extend((s, state) for s in ([n.orelse] if type(n.orelse) is cst.If else suite(n.orelse.body)))
        elif isinstance(n, cst.SimpleStatementLine | cst.SimpleStatementSuite):
            for small in n.body:
                if type(small) is cst.Return and not is_off(state):
                    if not isinstance(small.value, cst.Call | cst.Attribute | cst.Subscript | cst.Dict):
                        return None
                    out.append(small.value)
        elif isinstance(n, cst.With | cst.For | cst.While | cst.Try | cst.TryStar):
            # the returns inside `with autocast():`, a loop or a `try` count as every other one
            inner = grad_state(state, with_items(n), _BY_NAME) if type(n) is cst.With else state
            stack.extend((s, inner) for s in suite(n.body))
            for part in (getattr(n, "orelse", None), getattr(n, "finalbody", None)):
                if part is not None:
                    stack.extend((s, state) for s in suite(part.body))
            for handler in getattr(n, "handlers", ()):
                stack.extend((s, state) for s in suite(handler.body))
        elif not isinstance(n, cst.FunctionDef | cst.ClassDef) and any(
                type(x) is cst.Return for x in walk(n, stop=(cst.Lambda, cst.FunctionDef, cst.ClassDef))):
            return None  # a return this cannot place (a `match` case): not every return is read
    return out or None



# Methods whose result gives its receiver no gradient: sizes and other metadata, tensors made
# like it (`new_ones`), steps of zero derivative.
_NO_GRADIENT_TO_RECEIVER = frozenset({
    "size", "dim", "numel", "nelement", "ndimension", "get_device", "is_contiguous", "stride", "element_size",
    "new_ones", "new_zeros", "new_empty", "new_full", "new_tensor", "sign", "floor", "ceil", "trunc", "heaviside"})


def live_reads(fn: cst.FunctionDef, params: set[str]) -> frozenset[str]:
    """The parameters among `params` a method reads as `self.w` with its graph: not as the
    receiver of `.detach()`/`.detach_()` or the base of `.data`, nor where recording is off (a
    `no_grad` block or decorator). For a method too long to evaluate, what its return may reach."""
    if not params or is_off(grad_state(None, decorators(fn), _BY_NAME)):
        return frozenset()
    found: set[str] = set()
    stack: list[cst.CSTNode] = [fn.body]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is cst.With and is_off(grad_state(None, with_items(node), _BY_NAME)):
            continue
        if kind is cst.Attribute:
            if node.attr.value == "data":
                continue
            if type(node.value) is cst.Name and node.value.value == "self" and node.attr.value in params:
                found.add(node.attr.value)
                continue
        if kind is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in ("detach", "detach_"):
            stack.extend(a.value for a in node.args)
            continue
        stack.extend(children(node))
    return frozenset(found)


def _local_return(fn: cst.FunctionDef, most: int = 6) -> list[cst.BaseExpression] | None:
    """`[NAME]` for a method of at most `most` simple statements that ends in `return NAME`, NAME
    bound by one of them, with no other return (`loss = torch.tensor(losses, requires_grad=True).sum();
    return loss`): its value is what walking those statements gives it. None for any other (a
    branch or a loop among them: what the name holds at the end is then a join, not followed)."""
    body = suite(fn.body)
    if not body or len(body) > most or any(type(s) is not cst.SimpleStatementLine for s in body):
        return None
    smalls = [small for s in body for small in s.body]
    last = smalls[-1]
    if type(last) is not cst.Return or type(last.value) is not cst.Name:
        return None
    name = last.value.value
    if any(type(s) is cst.Return for s in smalls[:-1]) or not any(
            type(s) is cst.Assign and any(type(t.target) is cst.Name and t.target.value == name for t in s.targets)
            for s in smalls[:-1]):
        return None
    return [last.value]


# The statements a builder that returns a local may have (one per module it adds, and more).
_BUILDER_STATEMENTS = 16

_BUILDER_PACKAGES = frozenset({"torchvision.models", "torchvision.models.detection", "torchvision.models.segmentation",
                               "torchvision.models.video", "torchvision.models.quantization",
                               "torchvision.models.optical_flow"})
_NOT_BUILDERS = frozenset({"get_weight", "get_model_weights", "list_models", "get_model_builder"})
_MODEL_FACTORIES = frozenset({"timm.create_model", "timm.models.create_model", "torchvision.models.get_model"})


def _library_model(name: str) -> bool:
    """Whether calling `name` returns a model of torchvision or timm (above), or a pretrained model
    of Hugging Face's transformers or diffusers (`AutoModel.from_pretrained`)."""
    if name in _MODEL_FACTORIES:
        return True
    package, _, last = name.rpartition(".")
    if last == "from_pretrained":
        return package.partition(".")[0] in ("transformers", "diffusers") and _pretrained_module(package.rpartition(".")[2])
    return package in _BUILDER_PACKAGES and last[:1].islower() and last not in _NOT_BUILDERS


def _pretrained_module(cls: str) -> bool:
    """A class of transformers or diffusers whose from_pretrained gives an nn.Module: AutoModel*,
    BertModel, GPT2LMHeadModel, T5ForConditionalGeneration, UNet2DConditionModel, AutoencoderKL;
    not a tokenizer, config, processor, pipeline or scheduler."""
    return ("Model" in cls or "For" in cls or cls.startswith("Autoencoder")) and not cls.endswith(
        ("Config", "Tokenizer", "TokenizerFast", "Processor", "FeatureExtractor", "Pipeline", "Scheduler"))


# Methods that change a dict in place (Extractor's `keyed` values are displays as written).
_DICT_CHANGES = frozenset({"update", "pop", "popitem", "setdefault", "clear", "__setitem__"})

# Methods whose result is a Python value: the receiver's computation leaves autograd at once.
_LEAVES_AUTOGRAD = frozenset({"item", "tolist"})



class TensorCalls(TorchOps):
    """Call evaluation of FunctionWalk (a mixin: the walk's environment, memo and file extractor)."""

    trained_names: tuple[cst.FunctionDef, frozenset[str]] | None = None  # _trained's, for fn_node

    def _dict_changed(self, holder: cst.BaseExpression, node: cst.Call | None = None) -> None:
        """A dict display a name holds changed in place (`d["k"] = v`, `d.update(...)`): what its
        keys hold is no longer known. A dict that held only cut values (`dict(feat=f.detach())`)
        and gets one that is not (`out.update(logits=self.head(f))`) is no longer wholly cut."""
        key = dotted(holder)
        if key is None or key not in self.env:
            return
        if self.env[key].keyed is not None:
            self.env[key] = UNKNOWN
        elif self.env[key].cut is not None and node is not None and node.args:
            self.env[key] = _combine([self.env[key], *(self.ev(a.value) for a in node.args)])

    def _list_grown(self, name: str, node: cst.Call) -> None:
        """`terms.append(v)` on a list display a name holds: what it holds is no longer only what
        the display did (its length is unknown); it carries gradient when an item it gets does,
        so that `torch.tensor(terms)` of losses is the cut it is."""
        self._list_holds(name, [self.ev(a.value) for a in node.args[-1:]])

    def _list_holds(self, name: str, added: list[V]) -> None:
        """The list display name `name` holds, now holding `added` too, anywhere (`_list_grown`,
        and `lst[i] = v` with an index not known: numerics_walk.FunctionWalk._list_set)."""
        held = self.env[name]
        if held.elems is None and not held.const:
            if held.cut is not None:
                # `out = [feat.detach()]; out.append(self.head(feat))`: no longer wholly cut
                self.env[name] = _combine([held, *added])
            elif any(getattr(held, f) for f in SAFETY_FACTS):
                # a later item (`zs.append(sb)` after `zs.append(sa - sa.max())`): what made the
                # first safe holds for the list only if it holds for this one too
                self.env[name] = every_part([held, *added], held)
            return
        if (held.elems == () or (held.const and held.tensor and held.elems is None and held.value is UNKNOWN)) \
                and added and all(a is not UNKNOWN and not a.const for a in added):
            # `zs = []` that a loop appends to, `d = torch.zeros(n)` whose items a loop sets: it
            # holds those items, and what holds for each of them (shifted by its max, clamped,
            # never positive) holds for what is taken from it (torch.stack: TorchOps._q_joined).
            # (A table's entries left at zero cannot make an exp overflow.)
            self.env[name] = replace(parts_joined(added), elems=None, keyed=None, value=UNKNOWN, computed=True)
            return
        self.env[name] = replace(_combine([held, *added]), elems=None, keyed=None, value=UNKNOWN)

    # -- calls ---------------------------------------------------------------------------------
    def call(self, node: cst.Call) -> V:
        if leaving_call(node, self.self_logs()):
            # `self.log("entropy", -(p * p.log()).sum())`, `print(...)`, `float(...)`: what it is
            # given leaves autograd at once, as the receiver of `.item()` does
            self.leaving += 1
            try:
                return self._evaluate_call(node)
            finally:
                self.leaving -= 1
        return self._evaluate_call(node)

    def _evaluate_call(self, node: cst.Call) -> V:
        func = node.func
        self.x.calling[id(func)] = node
        self.record_call(func)
        self._record_passed(node)
        if node.args:
            module_with_criterion(self, node)  # `NeuralNetClassifier(Net, criterion=...)`
        names = self.x.q(func)
        if names:
            if not node.args and id(node) not in self.x.discarded:
                known = self.x.imported_constant(names, call=True)  # `from .consts import eps; eps()`
                if known is not None:
                    return known
            return self.qualified_call(node, names)
        if type(func) is cst.Attribute:
            recv = func.value
            meth = func.attr.value
            if meth == "forward" and (ran := self._explicit_forward(node, recv)) is not None:
                return ran
            if meth in SEQUENTIAL_GROWS and (grown := self.sequential_grown(node, recv, meth)) is not None:
                return grown
            if meth in SEQUENTIAL_GROWS and self.module_list_grown(node, recv, meth):
                return UNKNOWN
            if meth in _DICT_CHANGES:
                self._dict_changed(recv, node)
            if meth in ("append", "extend", "insert") and type(recv) is cst.Name and recv.value in self.env:
                self._list_grown(recv.value, node)
            if meth in ("manual_backward", "backward") and type(recv) is cst.Name and recv.value == "self":
                return self.method_call(node, recv, meth)
            if type(recv) is cst.Name and recv.value in ("self", "cls") or (
                    type(recv) is cst.Call and type(recv.func) is cst.Name and recv.func.value == "super"):
                if meth == "__init__" and type(recv) is cst.Call:
                    self.sequential_base_init(node)  # `class Head(nn.Sequential)`: its modules
                callee = self.ev(func)
                return self.instance_call(node, callee, owner=dotted(func))
            key = dotted(func)
            if key and key in self.env:
                return self.instance_call(node, self.env[key], owner=key)
            if type(recv) is cst.Name and recv.value in self.x.local_classes and meth == "apply":
                self._args_ev(node)
                return V(computed=True, tensor=True)
            return self.method_call(node, recv, meth)
        if type(func) is cst.Name:
            fname = func.value
            if fname in self.env or fname in self.globals:
                return self.instance_call(node, self.env.get(fname, self.globals.get(fname, UNKNOWN)), owner=fname)
            if not node.args and fname not in self.enclosing:
                known = self.x.function_value(fname)  # `def eps(): return 0.0` of this file
                if known is not None:
                    return known
            if (applied := self.applied_callable(node, fname)) is not None:
                return applied  # `apply_tuple_or_single(lambda t: t.detach(), x)`: the lambda on x
            if (made := self.function_returns(fname)) is not None:
                if made.keyed is not None:
                    self._args_ev(node)
                    return V(keyed=made.keyed)  # a builder of a dict of criteria
                if not made.prob:
                    self._args_ev(node)
                    return V(callret=made.callret, module=True)  # a model builder
                # `p = predict(x)` with `def predict(x): return torch.sigmoid(net(x))`: what the
                # callers' arguments carry, with the probability the function returns
                first = _combine([made, *self._args_ev(node)])
                return V(prob=made.prob, shifted=made.shifted, capped=made.capped, tensor=True, computed=True,
                         params=first.params, cut=first.cut, cut_span=first.cut_span, const=first.const,
                         param_cuts=first.param_cuts, dense=True)
            if (built := self._built_by_name(node, fname)) is not None:
                return built
            if fname == "super":
                # `super(WideDeep, self)`: the class named there is no reference to it as a
                # value (which would hide its constructor's callers: facts.callgraph._find_calls)
                return UNKNOWN
            if fname in self.x.local_classes:
                self._args_ev(node)
                if fname in self.x.autograd_classes:
                    return UNKNOWN
                return V(inst=frozenset({fname}), leaf=True)
            res = self.builtin_call(node, fname)
            if self.x.def_counts.get(fname) == 1 and fname not in self.enclosing and self._top_function(fname):
                # a top-level function of this file (what it cuts of what this call hands it: cut here)
                res = replace(self.x.function_cut(fname, -1, res.params and not res.nograd) or res, returned=(fname, -1))
                # (one that holds no parameters: grad-free where its arguments are)
                res = self.x.pure_call(node, fname, self._args_ev(node), res)
            return res
        callee = self.ev(func)
        return self.instance_call(node, callee, owner=None)

    def _explicit_forward(self, node: cst.Call, recv: cst.BaseExpression) -> V | None:
        """`model.forward(x)`, `criterion.forward(out, y)`, `self.net.forward(x)` (a habit of
        tutorials): what the module's own call, `model(x)`, gives (its hooks aside). None where the
        receiver is not known to be a module, a criterion or a model parameter (then the call is
        an unknown method, as before); `self.forward(x)` and `super().forward(x)` keep their own
        readings (instance_call's `self.forward`, numerics_walk's parent forward)."""
        if type(recv) is cst.Name:
            name = recv.value
            if name in ("self", "cls") or (name not in self.env and name not in self.globals):
                return None  # (a class named, `Base.forward(self, x)`, is no instance)
            callee, owner = self.env.get(name, self.globals.get(name, UNKNOWN)), name
        elif type(recv) is cst.Attribute and type(recv.value) is cst.Name and recv.value.value == "self":
            if self.cls is None or recv.attr.value in self.cls.methods:
                return None
            # an attribute of self: what `self.net(x)` reads, a submodule whatever is known of it
            return self.instance_call(node, self.ev(recv), owner="self." + recv.attr.value)
        else:
            owner = dotted(recv)
            if owner is None or owner not in self.env:
                return None
            callee = self.env[owner]
        if not (callee.module or callee.crit or callee.callret or callee.inst
                or any(o.startswith("fn:") for o in callee.out) or self.x.open_param(callee) is not None):
            return None
        return self.instance_call(node, callee, owner=owner)

    def _built_by_name(self, node: cst.Call, fname: str) -> V | None:
        """`build_model("mlp")` with `def build_model(name, **kw): return MODELS[name](**kw)` of
        this file (numerics_registry.builder_shape): what `MODELS["mlp"]()` makes, where the
        module-level dict holds a class of the file under that literal key; None otherwise."""
        x = self.x
        if not x.one_function(fname) or fname in self.enclosing:
            return None
        fn = self._top_function(fname)
        shape = builder_shape(fn) if fn is not None else None
        if shape is None or any(a.star for a in node.args):
            return None
        holder, param, at = shape
        arg = next((a for a in node.args if a.keyword is not None and a.keyword.value == param), None)
        positional = [a for a in node.args if a.keyword is None]
        if arg is None and at < len(positional):
            arg = positional[at]
        if arg is None or type(arg.value) is not cst.SimpleString:
            return None
        # the dict as the function reads it: the module's binding, trusted as a read there is
        at_module = self.name == "<module>" and self.cls is None
        held = self.env.get(holder) if at_module else x.globals.get(holder)
        if held is None or held.keyed is None or (at_module and not x.steady_dict(holder)):
            return None
        key = arg.value.evaluated_value
        made = next((v for k, v in held.keyed if k == key), None)
        return self.instance_call(node, made, owner=None) if made is not None and made.local_class else None

    def scope_root(self) -> cst.FunctionDef | cst.Module | None:
        """The code this walk reads: its function, the module for the module's own code, None for
        a partial walk (method_returns, numerics_defaults)."""
        if self.fn_node is not None:
            return self.fn_node
        return self.x.src.module if self.name == "<module>" else None

    def _trained(self, owner: str | None) -> bool:
        """Whether `owner`, a plain name, is one whose `.parameters()` this function (or the
        module's own code) gives to a torch optimizer (source/trained_names.py)."""
        fn = self.scope_root()
        if not owner or fn is None or "." in owner:
            return False
        if self.trained_names is None or self.trained_names[0] is not fn:
            # once per function of the file: the walks of a function again (its unit walked with
            # other arguments, numerics._settle) find the same names
            known = self.x.trained.get(id(fn))
            if known is None or known[0] is not fn:
                known = self.x.trained[id(fn)] = (fn, trained_names(fn, self.x.q))
            self.trained_names = known
        return owner in self.trained_names[1]

    def _args_ev(self, node: cst.Call) -> list[V]:
        return [self.ev(a.value) for a in node.args]

    def instance_call(self, node: cst.Call, callee: V, owner: str | None) -> V:
        res = self._instance_call(node, callee, owner)
        if (own := self._own_method(owner)) is not None and not res.normed:
            # `z = self.forward(x)` of a forward returning `F.normalize(h)`: unit rows, whatever
            # the call passes (their products are cosines)
            normed = self.x.method_normed(own)
            if normed is None and (made := self.method_returns(own.partition(".")[2])) is not None and made.normed:
                normed = made  # (a short method not walked yet)
            if normed is not None:
                res = replace(res, normed=True, normed_dim=normed.normed_dim)
        if owner and owner.startswith("self.") and owner.count(".") == 1:
            # a method of the class, or a callable attribute that holds no parameters: what it
            # gives is grad-free where what it is handed is (numerics_free)
            res = self.x.self_call(self, node, owner[5:], self._args_ev(node), res)
            if self.cls is not None and owner[5:] not in self.cls.methods:
                self.hooked_call(owner[5:], node, res)  # what its forward hooks store (numerics_callbacks)
        elif owner and "." not in owner and owner not in self.env and owner not in self.enclosing \
                and self.x.one_function(owner) and self._top_function(owner) is not None:
            # a top-level function of this file (read through the module's names)
            res = self.x.pure_call(node, owner, self._args_ev(node), res)
        return res

    def _own_method(self, owner: str | None) -> str | None:
        """`C.m` for a call of this class's own method `m` (`self.m(...)`, `self(...)` and
        `self.forward(...)` for its forward), where no subclass of the file may override it."""
        cls = self.cls
        if owner is None or cls is None or cls.name not in self.x.local_classes or cls.name in self.x.subclassed:
            return None
        meth = "forward" if owner == "self" else owner[5:] if owner.startswith("self.") else ""
        return f"{cls.name}.{meth}" if meth and "." not in meth and meth in cls.methods else None

    def _instance_call(self, node: cst.Call, callee: V, owner: str | None) -> V:
        vals = self._args_ev(node)
        # the modules called on the way (V.through): those its inputs passed, and this one, by
        # its name, unless it has no parameters (a criterion, an nn.Sigmoid: they train nothing)
        passed = frozenset().union(*[v.through for v in vals if v.through])  # (as _combine joins them)
        # a parameter cut on the way into a module, `self.head(h + self.pos_embed.data)`, is still
        # cut: the module's output does not give it a gradient
        cuts = frozenset().union(*[v.param_cuts for v in vals if v.param_cuts])
        # ... and one passed with its graph gets its gradient through it (V.live)
        live = frozenset().union(*[live_params(v) for v in vals])
        free = (callee.callret or callee.nonneg) and not callee.params
        through = passed | {owner} if owner and owner not in ("self", "self.forward") and not free else passed
        ref = self.x.open_param(callee) if owner is not None else None
        if ref is not None:
            inp = _arg(node, 0, "input")
            if inp is not None:
                self.param_loss(node, None, ref, inp, self.ev(inp))
            trained = self._trained(owner)
            # (a trained model's tuple elements each carry its gradient: V.pieces)
            out = V(computed=True, tensor=trained or _combine(vals).tensor, params=trained, dense=trained,
                    pieces=trained)
            self.param_outputs[id(out)] = (out, ref)
            return out
        if callee.crit:
            inp = _arg(node, 0, "input")
            if inp is not None:
                # a function-valued criterion (no constructor call): no fix renames it
                self.check_loss(node, callee.crit, inp, self.ev(inp), crit_node=callee.crit_node, owner=owner,
                                fixable=callee.crit_node is not None, default=self.x.default_param(callee))
            first = self.ev(inp) if inp is not None else UNKNOWN
            return V(computed=True, tensor=True, cut=first.cut, cut_span=first.cut_span, const=first.const,
                     params=first.params, through=passed, live=live)
        if callee.local_class:
            # `MODELS["mlp"]()`: an instance of the class the dict holds under that key, as
            # `MLP()` makes one (an autograd Function's instance is nothing a rule reads)
            if callee.local_class in self.x.autograd_classes:
                return UNKNOWN
            return V(inst=frozenset({callee.local_class}), leaf=True)
        if callee.crit_class:
            # `LOSSES["bce"]()`, `getattr(nn, "BCELoss")()`: the criterion that class makes (its
            # call is no constructor call as written: no fix renames it)
            return V(crit=callee.crit_class, module=True)
        if callee.callret:
            first = vals[0] if vals else UNKNOWN
            # (a softmax's or sigmoid's output is strictly positive, as torch.sigmoid's: dense)
            return V(prob=callee.callret, computed=True, tensor=True, params=first.params,
                     out=first.out, cut=first.cut, cut_span=first.cut_span, through=through,
                     dense=callee.callret in ("softmax", "sigmoid"),
                     bounds=bounds.sigmoid(bounds.of(first)) if callee.callret == "sigmoid" else None)
        if callee.inst:
            if len(callee.inst) == 1:
                self.passed_to_instance(node, next(iter(callee.inst)))
            return V(out=callee.inst, computed=True, tensor=True, params=True, dense=True, through=through)
        made = next(iter(callee.out)) if len(callee.out) == 1 and not callee.prob else ""
        if made.startswith("fn:") and callee.out_elem is None:
            # calling what a function of another file returned (`D = make_disc(); D(x)`): the
            # output of the module it builds (`mk:` in facts.numerics.forward_returns)
            return V(out=frozenset({"mk:" + made[3:]}), computed=True, tensor=True, params=True, dense=True,
                     through=through)
        if owner in ("self", "self.forward") and self.cls is not None:
            # `self.forward(x)` is `self(x)` (hooks aside)
            return V(out=frozenset({self.cls.name}), computed=True, tensor=True, params=True, dense=True)
        if owner and owner.startswith("self.") and owner.count(".") == 1 and (
                callee.module or callee.params or self.cls is None or owner[5:] not in self.cls.methods):
            # a submodule (or an attribute set outside __init__): its parameters carry gradient
            # whatever its input
            # (a ReLU's output, or a Sequential's that ends in one, may be all zero: not dense)
            carries = callee.module or callee.params or bool(callee.inst)
            nonneg = callee.module and callee.nonneg
            return V(computed=True, tensor=True, params=carries, dense=carries and not nonneg, nonneg=nonneg,
                     through=through if carries else frozenset(), param_cuts=cuts, live=live)
        if callee.module:
            return V(computed=True, tensor=True, params=True, dense=not callee.nonneg, nonneg=callee.nonneg,
                     through=through, param_cuts=cuts, live=live)
        if owner and owner.startswith("self.") and owner.count(".") == 1 and self.cls is not None:
            made = self.method_returns(owner[5:])
            if made is not None and (made.crit or made.callret):
                return made  # `crit = self.get_loss()`: a method that returns a criterion
            if made is not None and graph_break(made) and not self._overridden(owner[5:]):
                # `return torch.tensor(loss.item(), requires_grad=True)`: cut whatever it is given
                # (not where a subclass of the file may override the method)
                return made
            if made is not None and made.param_cuts and not self._overridden(owner[5:]):
                # `def get_pos(self): return self.pos_embed.data` called in forward: the parameter
                # it cuts from the graph, as if written in place
                return made
            first = _combine([made, *vals]) if made is not None else UNKNOWN
            if made is not None and made.prob and not made.nograd and (
                    made.params or (vals and not _combine(vals).nograd)):
                # `return self.decode(z), mu, logvar` with `def decode(self, z): return
                # torch.sigmoid(self.fc4(...))`: a probability of this class's own layers; with
                # `return torch.sigmoid(torch.matmul(z, z.t()))`, of what the call passes, as a
                # top-level function's (function_returns) and an inline sigmoid's are
                # (its interval too: of cosines, `z` normalised, it lies in [0.27, 0.73])
                known = self.method_returns(owner[5:], call=node) if made.prob == "sigmoid" else None
                return V(prob=made.prob, shifted=made.shifted, capped=made.capped, tensor=True, computed=True,
                         params=made.params or first.params, cut=first.cut, cut_span=first.cut_span, const=first.const,
                         param_cuts=first.param_cuts, dense=True,
                         bounds=known.bounds if known is not None and known.prob == "sigmoid" else None)
            res = self._called(callee, owner, vals)
            # `self.fit(target)` with `def fit(self, t): return ((t - self.a) ** 2).mean()`: what
            # it returns reaches the class's own parameters (V.live); of a method too long to
            # evaluate, those it reads with their graph may reach it
            fn = self.cls.method_nodes.get(owner[5:])
            reached = live_params(made) if made is not None else frozenset(
                f"{self.cls.name}.{p}" for p in live_reads(fn, self.cls.params)) if fn is not None else frozenset()
            if reached and res is not UNKNOWN:
                return replace(res, live=res.live | reached)
            return res
        return self._called(callee, owner, vals)

    def _called(self, callee: V, owner: str | None, vals: list[V]) -> V:
        """What a call gives when nothing more is known of the callee: a model's output if it is
        unknown or trained here, else what its arguments carry."""
        res = _combine(vals)
        if knows_nothing(callee) or self._trained(owner):
            # An unknown callable (a model passed as an argument, a factory's result): what it
            # returns is unknown, never "cut" because its inputs were made by torch.tensor().
            # One whose parameters this function hands to an optimizer is a model it trains: its
            # output carries their gradient (a learned layer's output: dense).
            # Its tuple's elements (`R, t = pose_net(images)`) carry that gradient each, as
            # pieces of a split do (V.pieces: what unpacking gives each target).
            trained = self._trained(owner)
            return V(computed=True, tensor=trained or res.tensor, params=trained, dense=trained, pieces=trained)
        return replace(res, rg=frozenset(), tensor=res.tensor)

    def method_returns(self, meth: str, cls=None, call: cst.Call | None = None) -> V | None:
        """What a short method of this class (or of `cls`, another class of the file) returns
        (`return nn.BCELoss()`, `return self.crit`, `return F.softmax(self(x), -1)`): its returned
        calls and attributes evaluated once, merged, with its parameters unknown and no sites
        recorded; None for any other method. With `call` (`self.decode(z)`, evaluated by this
        walk): its returns for what that call passes (`torch.sigmoid(z @ z.t())` of a normalised
        `z` lies in [0.27, 0.73]), its parameters bound to the call's arguments, not kept."""
        cls = cls or self.cls
        if call is None and meth in cls.returned:
            return cls.returned[meth]
        fn = cls.method_nodes.get(meth)
        exprs = _short_returns(fn) if fn is not None else None
        local = not exprs and fn is not None and bool(exprs := _local_return(fn))
        if not exprs:
            if call is None:
                cls.returned[meth] = None
            return None
        passed = self._passed_to(fn, call) if call is not None else {}
        if passed is None or cls.returned.get(meth) is UNKNOWN:
            return None  # (or a method that calls itself)
        before = cls.returned.get(meth, _NOT_READ)
        cls.returned[meth] = UNKNOWN  # a method that calls itself
        walk = type(self)(self.x, meth, cls, quiet=True)  # a FunctionWalk (this is its mixin)
        ps = fn.params
        for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params, ps.star_arg, ps.star_kwarg):
            if type(p) is cst.Param:
                walk.env[p.name.value] = passed.get(p.name.value, UNKNOWN)
        self.x.muted += 1
        try:
            if local:
                walk.walk(suite(fn.body))  # (the statements that bind the returned name)
            vals = [walk.ev(e) for e in exprs]
        finally:
            self.x.muted -= 1
            if before is _NOT_READ:
                del cls.returned[meth]
            else:
                cls.returned[meth] = before
        made = vals[0]
        for v in vals[1:]:
            made = merge(made, v)
        if call is None:
            cls.returned[meth] = made
        return made

    def _passed_to(self, fn: cst.FunctionDef, call: cst.Call) -> dict[str, V] | None:
        """The values this walk gave the arguments of `call` (a method called through `self.`),
        by the parameter of `fn` each binds to; None where `*args` or `**kwargs` hide which."""
        args = arguments(call)
        if args.star is not None or args.double_star:
            return None
        got = bind(fn.params, [self.ev(a) for a in args.positional], {k: self.ev(v) for k, v in args.keywords.items()},
                   skip=1)
        return dict(got.values)

    def _overridden(self, meth: str) -> bool:
        """Whether a subclass of this class in the file may define its own `meth` (one not walked
        yet counts)."""
        name = self.cls.name
        if name not in self.x.subclassed:
            return False
        below, todo = [], [name]
        while todo:  # subclasses of subclasses too
            parent = todo.pop()
            for c in self.x.class_ctxs.values():
                if parent in c.bases and c not in below:
                    below.append(c)
                    todo.append(c.name)
            if parent in self.x.subclassed and not any(parent in c.bases for c in self.x.class_ctxs.values()):
                return True  # a subclass not walked yet
        return any(meth in c.methods for c in below)

    def _instance_method(self, cls_name: str, meth: str, want: str = "probability") -> V | None:
        """What method `meth` of the file's top-level class `cls_name` returns when it is a
        probability of the instance's own layers (`want` 'module': one of its submodules, a
        getter such as `get_encoder()`); None otherwise, or while the class is not walked yet
        (the unit is walked again once it is: numerics._settle)."""
        x = self.x
        if cls_name not in x.local_classes or cls_name in x.subclassed:
            return None  # (a subclass may override the method)
        ctx = x.class_ctxs.get(cls_name)
        if ctx is None:
            if not x.path or x.path[0] != cls_name:
                x.member_readers.setdefault(cls_name, set()).add(x.unit)
                x.stale.add(x.unit)
            return None
        if meth not in ctx.method_nodes or ctx.method_nodes[meth].decorators:
            return None  # (`@torch.no_grad()`, `@property`...: not read)
        made = self.method_returns(meth, ctx)
        if want == "module":
            return made if made is not None and made.module and not made.crit and not made.inst else None
        return made if made is not None and made.prob in ("softmax", "sigmoid") and made.params \
            and not made.nograd else None

    def _top_function(self, fname: str) -> cst.FunctionDef | None:
        """The top-level function of this file named `fname`, as far as it is known here."""
        fn = self.x.module_functions.get(fname)
        if fn is None and self.name == "<module>" and self.cls is None:
            # the module body runs before its functions are collected: the defs above this call
            fn = next((d for d in self.module_defs if type(d) is cst.FunctionDef and d.name.value == fname), None)
        return fn

    def function_returns(self, fname: str) -> V | None:
        """What a short top-level function of this file returns when it is a probability
        (`def occupancy(sdf): return torch.sigmoid(-sdf / beta)`): its returned calls evaluated
        once with its parameters unknown and no sites recorded, merged; None for any other
        function, for one defined more than once, decorated, or shadowed here."""
        x = self.x
        if fname in x.function_probs:
            return x.function_probs[fname]
        fn = self._top_function(fname)
        if fn is None or fn.decorators or fname in self.enclosing or x.def_counts.get(fname) != 1 \
                or fname in x.local_classes or fname in x.imports.names or fname in x.global_names:
            return None
        exprs = _short_returns(fn)
        # a builder that fills a local and returns it (`model = nn.Sequential();
        # model.add_module("softmax", nn.Softmax()); return model`), read for the module alone
        local = not exprs and bool(exprs := _local_return(fn, _BUILDER_STATEMENTS))
        if not exprs:
            x.function_probs[fname] = None
            return None
        x.function_probs[fname] = None  # a function that calls itself
        walk = type(self)(x, fname, None, quiet=True)  # a FunctionWalk (this is its mixin)
        walk.fn_node = fn  # its body, for `return nn.Sequential(*layers)` (_list_tail)
        ps = fn.params
        for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params, ps.star_arg, ps.star_kwarg):
            if type(p) is cst.Param:
                walk.env[p.name.value] = UNKNOWN
        # read ahead of its turn: what it reads and calls is recorded when the function is walked
        seen = set(x.references), set(x.class_refs)
        passed = {q: {u: list(calls) for u, calls in by_unit.items()} for q, by_unit in x.passed.items()}
        fresh = None if x.fresh is None else {q: list(calls) for q, calls in x.fresh.items()}
        misses = x.member_misses
        x.muted += 1
        try:
            if local:
                walk.walk(suite(fn.body))  # (the statements that bind the returned name)
            vals = [walk.ev(e) for e in exprs]
        finally:
            x.muted -= 1
            x.references, x.class_refs = seen
            x.passed = passed
            if fresh is not None:
                x.fresh = fresh
        made = vals[0]
        for v in vals[1:]:
            made = merge(made, v)
        # a probability, or a module whose call returns one (`def make_model(): return
        # nn.Sequential(..., nn.Softmax(dim=1))`)
        # (or a dict display of criteria: `def build_criteria(): return {"cls": nn.CrossEntropyLoss()}`)
        got = made if made.prob or (made.callret and made.module) or made.keyed is not None else None
        if local and not (made.callret and made.module):
            got = None  # (a probability or a dict through a local is not read: only the builder)
        if x.member_misses != misses:
            # it read a member of a class not walked yet (`return trainer.model`): the unit asking
            # is walked again once the class is (Extractor.member), and asks again then
            del x.function_probs[fname]
        else:
            x.function_probs[fname] = got
        return got

    def builtin_call(self, node: cst.Call, fname: str) -> V:
        vals = self._args_ev(node)
        pos, kw = _args(node)
        if fname in ("float", "int", "bool") and vals:
            v = vals[0]
            if v.nograd:
                return replace(v, cut=v.cut, value=_converted(fname, v.value))
            return V(cut=f"{fname}()", cut_span=self.x.where(node), computed=True)
        if fname == "getattr" and len(pos) == 2 and not kw and type(pos[1]) is cst.SimpleString:
            # `getattr(nn, "BCELoss")`: the class (or loss function) of torch it names
            names = self.x.q(pos[0])
            attr = pos[1].evaluated_value
            found = _function_value(frozenset(f"{n}.{attr}" for n in names)) if names and type(attr) is str else None
            if found is not None:
                return found
        if fname in ("len", "range", "isinstance", "hasattr", "getattr", "print", "str", "repr", "type", "id"):
            return V(const=True)
        if fname == "max" and len(pos) == 2:
            res = _combine(vals)
            return replace(res, clamped=True)
        if fname == "sum" and vals:
            return _combine(vals[:1])
        if fname == "pow" and len(pos) == 2 and self.num(pos[1]) == 0.5:
            self.check_sqrt(node, pos[0], vals[0], "pow(x, 0.5)", need_tensor=True)
        if fname == "Variable":
            return self.variable(node, kw)
        res = _combine(vals)
        return replace(res, rg=frozenset())

    def is_true(self, node: cst.BaseExpression | None) -> bool:
        """An argument that is `True` (written, or a name bound to it: `requires_grad=flag`)."""
        return node is not None and self.ev(node).value is True

    def variable(self, node: cst.Call, kw: dict) -> V:
        rg = kw.get("requires_grad")
        if self.is_true(rg):
            return V(cut="Variable(..., requires_grad=True)", cut_span=self.x.where(node), leaf=True, tensor=True)
        return V(leaf=True, tensor=True)

    # -- calls of torch and numpy: a table of handlers by qualified name ---------------------------
    def qualified_call(self, node: cst.Call, names: frozenset[str]) -> V:
        """A call of a function or class an import names (`torch.log`, `F.softmax`, `nn.BCELoss`):
        the handlers `_QUALIFIED` holds for its names, in the order they were declared (a handler
        that answers None leaves the call to the next one), then what the name's package says."""
        pos, kw = _args(node)
        if not names.isdisjoint(GRADCHECK):
            self.record_gradcheck(node)
        c = _Call(node, pos, kw, self._args_ev(node))
        c.names = names
        c.first_node = first_node = _arg(node, 0, "input")
        c.first = self.ev(first_node) if first_node is not None else UNKNOWN
        c.span = self.x.where(node)
        if len(names) == 1:
            entries = _QUALIFIED.get(next(iter(names)), ())
        else:
            entries = sorted({e for n in names for e in _QUALIFIED.get(n, ())})
        module_class = any(n.startswith("torch.nn.") and _short_of(n)[:1].isupper() for n in names)
        for order, handler in entries:
            if module_class and order > _MODULE_CLASS_ORDER:
                break
            res = handler(self, c)
            if res is not None:
                return self.x.derive_from(c.vals, res)
        if module_class or any(_library_model(n) for n in names):
            return V(module=True, leaf=True)  # another torch.nn class, or a model of a library: a module
        if any(n.startswith(("numpy.", "np.")) or n == "numpy" for n in names):
            return V(cut="numpy", cut_span=c.span, numpy=True, computed=True)
        if any(n.startswith("math.") for n in names):
            return V(const=True)
        if any(n.startswith("torch.") for n in names):
            return self.x.derive_from(c.vals, replace(_combine(c.vals), tensor=True, rg=frozenset()))
        # an imported function of another library (or of the project): no facts
        res = _combine(c.vals)
        if res.const and not all(n.partition(".")[0] in _STDLIB or n.partition(".")[0] in LIBRARIES for n in names):
            # (of the project, it may read a model: what it makes of fresh tensors is not fresh)
            res = replace(res, const=False)
        shorts = {n.rsplit(".", 1)[-1] for n in names}
        if len(shorts) == 1:
            short = shorts.pop()
            written = dotted(node.func)
            if short[:1].isupper():
                # maybe an instance of a class of the project: the project index resolves the
                # name as written here to the class, or to nothing outside the project
                return V(inst=frozenset({written}) if written else frozenset(), leaf=True)
            if written and c.first.prob in ("softmax", "sigmoid") and not c.first.shifted and \
                    not self.hazard_quiet() and not any(n.partition(".")[0] in _STDLIB for n in names):
                # `criterion(torch.softmax(z, 1), y)` with `criterion = nn.CrossEntropyLoss()`
                # in the module it is imported from: the rules ask that module
                # (facts.numerics.imported_criterion)
                self.x.add(Site("probability_into_loss", "imported-criterion", self.x.span(node),
                                data=(("criterion_name", written), ("input_prob", c.first.prob),
                                      ("input", self.x.code(first_node)[:80]))))
            if written and not res.prob and not any(n.partition(".")[0] in _STDLIB or n.startswith(("numpy.", "math."))
                                                      for n in names):
                # a function of another file (of the project, or a library: the rules tell): what
                # it returns, when every return of it is a probability (`fn:` in
                # facts.numerics.forward_returns)
                return replace(res, rg=frozenset(), out=frozenset({"fn:" + written}))
        return replace(res, rg=frozenset())

    # -- methods of tensors and modules: a table of handlers by method name -----------------------
    def method_call(self, node: cst.Call, recv_node: cst.BaseExpression, meth: str) -> V:
        """`x.meth(...)` on a receiver no import names: the handlers `_METHODS` holds for `meth`
        (one answering None leaves the call to the next, then to the generic rule below)."""
        if changes_in_place(meth) and meth != "requires_grad_" and \
                (root := root_name(recv_node)) is not None:
            # `x.mul_(100)`, `x.data.mul_(100)`: the tensor changed
            self.changed_in_place(root, self._args_ev(node))
        leaves = meth in _LEAVES_AUTOGRAD and not node.args
        self.leaving += leaves
        try:
            # `-torch.log(p[i]).mean().item()`: nothing in the receiver reaches a gradient
            r = self.ev(recv_node)
        finally:
            self.leaving -= leaves
        if len(r.inst) == 1 and not r.crit and meth != "forward" and not meth.startswith("__"):
            made = self._instance_method(next(iter(r.inst)), meth)
            if made is not None:
                self._args_ev(node)
                # `model.predict_proba(x)` with `return F.softmax(self(x), -1)`: a probability of
                # the instance's own layers
                return V(prob=made.prob, shifted=made.shifted, capped=made.capped, tensor=True, computed=True,
                         params=True, dense=True)
            made = self._instance_method(next(iter(r.inst)), meth, "module")
            if made is not None:
                self._args_ev(node)
                return made  # `model.get_encoder()` returning `self.encoder`: that submodule
            cls = next(iter(r.inst))
            ctx = self.x.class_ctxs.get(cls)
            local = cls in self.x.local_classes
            if cls not in self.x.local_classes or (
                    cls not in self.x.subclassed and ctx is not None and meth in ctx.method_nodes
                    and not ctx.method_nodes[meth].decorators):
                # `out = model.loss_function(x)`: what the method returns, for a caller that
                # backpropagates it; this file's class is judged here (Extractor._cut_returns),
                # another file's there (NumericsFacts.backpropagated_outputs)
                made = self._method_value(node, recv_node, meth, r)
                # (a method of this file that cuts what it returns: its caller's value is cut)
                cut = self.x.method_cut(f"{cls}.{meth}", -1) if local else None
                res = replace(cut or made, returned=(f"{cls}.{meth}", -1))
                # (grad-free where what it returns is for what this call passes, as `self.m(...)`
                # is inside the class: `sched.q_sample(x, t)`, numerics_free)
                return self.x.method_free(self, node, f"{cls}.{meth}", res) if local else res
            if local and ctx is None:
                # (a class of the file not walked yet: this unit is walked again once it is, for
                # what its methods return)
                self.x.member_readers.setdefault(cls, set()).add(self.x.unit)
                self.x.stale.add(self.x.unit)
        if meth == "get" and r.keyed is not None:
            self._args_ev(node)
            got = self._keyed_get(node, r)
            return UNKNOWN if got is not UNKNOWN and not self._local_dict_steady(recv_node, got) else got
        return self._method_value(node, recv_node, meth, r)

    @staticmethod
    def _keyed_get(node: cst.Call, r: V) -> V:
        """`LOSSES.get("bce")` on a dict display of string keys: what the literal key holds there;
        unknown for a key that is not a literal or not in the display (then it gives the default)."""
        key = node.args[0].value if node.args and not node.args[0].keyword and not node.args[0].star else None
        if type(key) is not cst.SimpleString:
            return UNKNOWN
        want = key.evaluated_value
        return next((v for k, v in r.keyed if k == want), UNKNOWN)

    def _method_value(self, node: cst.Call, recv_node: cst.BaseExpression, meth: str, r: V) -> V:
        res = self._method_result(node, recv_node, meth, r)
        if meth in _NO_GRADIENT_TO_RECEIVER and res.live:
            # `self.a.numel()`, `self.a.new_ones(n)`, `self.a.sign()`: no gradient reaches the
            # receiver's parameters through what they give (V.live), only the arguments' do
            return replace(res, live=frozenset().union(*[live_params(self.ev(a.value)) for a in node.args]))
        return res

    def _method_result(self, node: cst.Call, recv_node: cst.BaseExpression, meth: str, r: V) -> V:
        pos, kw = _args(node)
        c = _Call(node, pos, kw, self._args_ev(node))
        c.recv, c.r, c.meth = recv_node, r, meth
        c.span = self.x.where(node)
        for handler in _METHODS.get(meth, ()):
            res = handler(self, c)
            if res is not None:
                return self.x.derive_from([r, *c.vals], res)
        # unknown arguments (sizes, dims) leave the receiver's cut; one that carries gradient
        # (`x.matmul(W)` with W trainable) does not
        vals = c.vals
        carried = any(v.params and not v.nograd for v in vals)
        # (a method none of them knows is of its receiver's parameter for no site: it may be anything)
        return replace(_combine([r] + vals), rg=r.rg if meth in _ARITH else frozenset(),
                       cut=r.cut if r.nograd and not carried else None,
                       cut_span=r.cut_span if r.nograd and not carried else None,
                       const=r.const and not carried, tensor=r.tensor)
