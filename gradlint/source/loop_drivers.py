"""What training frameworks do with a file's code: the functions they call once per batch (the
body of a training loop the file does not write), Lightning's manual and automatic classes,
ready-made trainers, the models that Fabric's `setup` and accelerate's `prepare` hand back,
whether a Fabric's backward scales the loss, and which `with` blocks are accelerate's
`accumulate()`.

Ignite's `Engine(update)` calls `update(engine, batch)` for every batch, and Lightning calls a
LightningModule's `training_step` for every batch; under manual optimisation
(`self.automatic_optimization = False`) neither framework clears the gradients (Lightning's
manual loop runs only `training_step`; Ignite runs only the process function). Such a function
is an iteration of a loop, which the GL2xx rules read as they read a written loop's body.
"""

from __future__ import annotations

import libcst as cst

from gradlint.facts.training import Function, in_bases
from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.walk import text as _text
from gradlint.source.engine.walk import walk
from gradlint.source.loop_calls import CLEARING
from gradlint.source.names import dotted, with_items

IGNITE_ENGINES = frozenset({"ignite.engine.Engine", "ignite.engine.engine.Engine",
                            "ignite.engine.DeterministicEngine", "ignite.engine.deterministic.DeterministicEngine"})
# Ignite's ready-made trainers: their update function runs backward and step with no clipping
# and no way to add one before the step (a handler runs after it).
IGNITE_TRAINERS = frozenset({"ignite.engine.create_supervised_trainer",
                             "ignite.contrib.engines.create_supervised_tbptt_trainer",
                             "ignite.contrib.engines.tbptt.create_supervised_tbptt_trainer"})
# Lightning Fabric: its `setup` hands back the model and optimizers it is given, wrapped
FABRICS = frozenset({"lightning.Fabric", "lightning.fabric.Fabric", "lightning.fabric.fabric.Fabric", "lightning_fabric.Fabric",
                     "lightning_fabric.fabric.Fabric"})

# Fabric's strategies whose precision is its plain MixedPrecision plugin (DeepSpeed, FSDP, XLA and
# the model-parallel ones bring precision plugins of their own)
_FABRIC_PLAIN_STRATEGIES = frozenset({"auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "dp",
                                      "ddp_find_unused_parameters_true", "single_device"})


def fabric_fp16(call: cst.Call) -> bool:
    """A Lightning `Fabric(...)` whose `fabric.backward(loss)` multiplies the loss by a GradScaler's
    scale: `precision="16-mixed"` (or its aliases "16", 16) written so, on an accelerator other than
    the CPU (Lightning 2.6.6 turns 16-mixed into bf16-mixed, with no scaler, for
    `accelerator="cpu"`; on a GPU, the default "auto" included, MixedPrecision holds a
    `torch.amp.GradScaler`), with no plugins, a plain strategy, and no `**kwargs` that may say
    otherwise."""
    if any(a.star for a in call.args):
        return False
    kw = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    precision = kw.get("precision")
    if type(precision) is cst.SimpleString:
        fp16 = precision.evaluated_value in ("16-mixed", "16")
    else:
        fp16 = type(precision) is cst.Integer and precision.value == "16"
    if not fp16 or "plugins" in kw:
        return False
    accelerator, strategy = kw.get("accelerator"), kw.get("strategy")
    if accelerator is not None and not (type(accelerator) is cst.SimpleString
                                        and accelerator.evaluated_value in ("auto", "gpu", "cuda", "mps")):
        return False
    return strategy is None or (type(strategy) is cst.SimpleString
                                and strategy.evaluated_value in _FABRIC_PLAIN_STRATEGIES)


# What the facts say drives a function: the words a message uses.
IGNITE = "ignite"
LIGHTNING_MANUAL = "lightning-manual"

_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)

LIGHTNING_MODULES = frozenset({"pytorch_lightning.LightningModule", "lightning.LightningModule",
                               "lightning.pytorch.LightningModule", "lightning.pytorch.core.LightningModule",
                               "pytorch_lightning.core.LightningModule"})


def manual_classes(src) -> tuple[str, ...]:
    """The classes of the file whose body sets `self.automatic_optimization = False`."""
    if "automatic_optimization" not in src.text:
        return ()
    return tuple(node.name.value for node in walk(src.module, stop=())
                 if type(node) is cst.ClassDef and _sets_manual(node))


def lightning_automatic(src, qualify) -> tuple[str, ...]:
    """The LightningModule subclasses of the file (directly, or through a base class of the
    file: `class LitRNN(BaseModule)` with `class BaseModule(pl.LightningModule)`) under
    automatic optimisation: none of them, nor a base of the file, sets it off."""
    classes = {node.name.value: node for node in walk(src.module, stop=()) if type(node) is cst.ClassDef}

    def lineage(node: cst.ClassDef, seen: set) -> list[cst.ClassDef] | None:
        """The classes from `node` up to a LightningModule base (the file's own), or None when
        it derives from none."""
        for b in node.bases:
            if not qualify(b.value).isdisjoint(LIGHTNING_MODULES):
                return [node]
            base = classes.get(_text(b.value))
            if base is not None and base.name.value not in seen:
                seen.add(base.name.value)
                up = lineage(base, seen)
                if up is not None:
                    return [node, *up]
        return None

    out = []
    for name, node in classes.items():
        chain = lineage(node, {name})
        # (a class's body is walked only for a LightningModule's)
        if chain is not None and not any(_sets_manual(c) for c in chain):
            out.append(name)
    return tuple(out)


def _sets_manual(node: cst.ClassDef) -> bool:
    """The class sets Lightning's manual optimisation: `self.automatic_optimization = False` in a
    method, `automatic_optimization = False` in its body, or a property `automatic_optimization`
    that returns False (either replaces LightningModule's property: measured, Lightning 2.6.6 runs
    such a module's `training_step` under manual optimisation)."""
    for a in walk(node, stop=()):
        if type(a) is cst.Assign and _text(a.value) == "False" and any(
                _text(t.target) == "self.automatic_optimization" for t in a.targets):
            return True
    for st in node.body.body:
        if type(st) is cst.SimpleStatementLine and any(
                type(a) is cst.Assign and _text(a.value) == "False"
                and any(_text(t.target) == "automatic_optimization" for t in a.targets) for a in st.body):
            return True
        if type(st) is cst.FunctionDef and st.name.value == "automatic_optimization" \
                and any(_text(d.decorator) == "property" for d in st.decorators):
            returns = [r for r in walk(st.body, stop=_SCOPES) if type(r) is cst.Return]
            if returns and all(r.value is not None and _text(r.value) == "False" for r in returns):
                return True
    return False


def driven(src, functions: tuple[Function, ...], scope_nodes: dict, qualify, manual_classes: tuple[str, ...],
           classes: dict[str, tuple[str, ...]]) -> tuple[tuple[int, str], ...]:
    """(function id, what drives it) for each function of the file a framework calls per batch.
    `scope_nodes`: function id -> its FunctionDef (None for the module)."""
    out: list[tuple[int, str]] = []
    if manual_classes:
        manual = set(manual_classes)
        for f in functions:
            # a subclass of the file's manual module inherits its setting
            if f.cls and f.name == "training_step" and in_bases(f.cls, classes, lambda c: True if c in manual else None):
                out.append((f.id, LIGHTNING_MANUAL))
    if "ignite" in src.text and "Engine" in src.text:
        seen = {fid for fid, _ in out}
        for fid, _ in _ignite_functions(src, functions, scope_nodes, qualify):
            if fid is not None and fid not in seen:
                seen.add(fid)
                out.append((fid, IGNITE))
    return tuple(out)


def drives_elsewhere(src, functions: tuple[Function, ...], scope_nodes: dict, qualify) -> tuple[tuple[str, str], ...]:
    """(name as written, what drives it) for each function a framework of this file calls per
    batch that the file does not define: `Engine(update)` with `from steps import update`, or
    `Engine(steps.update)`. The project index says which function of which module each names
    (the rules of that module read it as `driven`)."""
    if "ignite" not in src.text or "Engine" not in src.text:
        return ()
    out = [(text, IGNITE) for fid, text in _ignite_functions(src, functions, scope_nodes, qualify)
           if fid is None and text]
    return tuple(dict.fromkeys(out))




def lambda_clears(src, scope_nodes: dict) -> tuple[tuple[int, str], ...]:
    """(function id, what it clears) for each lambda of the file whose call clears gradients:
    `lambda engine: optimizer.zero_grad()` registered with `trainer.add_event_handler(...)` runs
    between the engine's calls of its process function. What it clears is the receiver as
    written (`optimizer`), "" when not a plain name or attribute (it may clear anything). The
    front-end reads no lambda's body (it runs later, if ever), so this is where such a clear is seen."""
    if "lambda" not in src.text or CLEARING.search(src.text) is None:
        return ()
    out: list[tuple[int, str]] = []
    for fid, node in scope_nodes.items():
        body = src.module if node is None else node.body
        for n in walk(body, stop=(cst.FunctionDef, cst.ClassDef)):
            if type(n) is not cst.Lambda:
                continue
            for c in walk(n.body, stop=(cst.Lambda,)):
                if type(c) is cst.Call and type(c.func) is cst.Attribute and CLEARING.search(c.func.attr.value):
                    out.append((fid, dotted(c.func.value) or ""))
    return tuple(dict.fromkeys(out))


def _ignite_functions(src, functions: tuple[Function, ...], scope_nodes: dict, qualify):
    """(function id, name) for each process function handed to an Ignite Engine: the id of a
    function of the file (a name of a function defined in the calling scope or one around it,
    `def _update(engine, batch)` inside `create_trainer()`, or `self.method` of the calling
    method's class), else None with the name as written when it may name another module's
    function (`Engine(update)` with `update` imported, `Engine(steps.update)`, `lambda e, b:
    update(b)`): not a parameter of the calling function, which may hold anything."""
    by_id = {f.id: f for f in functions}
    for fid, node in scope_nodes.items():
        f = by_id.get(fid)
        if f is None:
            continue
        body = src.module if node is None else node.body
        for n in walk(body, stop=_SCOPES):
            if type(n) is not cst.Call or qualify(n.func).isdisjoint(IGNITE_ENGINES):
                continue
            given = _arg(n, 0, "process_function")
            target = _resolve(given, f, by_id, functions, scope_nodes) if given is not None else None
            if target is not None:
                yield target, ""
            elif given is not None:
                named = given.body.func if type(given) is cst.Lambda and type(given.body) is cst.Call else given
                text = dotted(named) or ""
                if text and not text.startswith("self.") and text.split(".")[0] not in f.params:
                    yield None, text


def _resolve(given: cst.BaseExpression, caller: Function, by_id: dict[int, Function],
             functions: tuple[Function, ...], scope_nodes: dict | None = None) -> int | None:
    """The function of the file `given` (an Engine's process function) names: a function of the
    calling scope or one around it, `self.method`, the function a lambda calls with what it is
    given (`lambda engine, batch: step(batch)`), or the nested function a factory returns
    (`Engine(get_step(model, optimizer))` with `def get_step(...): def step(engine, batch): ...;
    return step`)."""
    if type(given) is cst.Lambda:
        body = given.body
        return _resolve(body.func, caller, by_id, functions) if type(body) is cst.Call else None
    if type(given) is cst.Call and scope_nodes is not None:
        factory = _resolve(given.func, caller, by_id, functions)
        node = scope_nodes.get(factory) if factory is not None else None
        if node is None:
            return None
        returns = [r for r in walk(node.body, stop=_SCOPES) if type(r) is cst.Return]
        made = {_resolve_in(r.value, factory, functions) if type(r.value) is cst.Name else None for r in returns}
        return made.pop() if len(made) == 1 else None
    if type(given) is cst.Name:
        scope: int | None = caller.id
        while scope is not None:
            hit = next((g.id for g in functions if g.name == given.value and g.cls is None and g.parent == scope), None)
            if hit is not None:
                return hit
            parent = by_id.get(scope)
            scope = parent.parent if parent is not None else None
        return None
    if (type(given) is cst.Attribute and type(given.value) is cst.Name and given.value.value == "self"
            and caller.cls):
        return next((g.id for g in functions if g.cls == caller.cls and g.name == given.attr.value), None)
    return None


def _resolve_in(name: cst.Name, scope: int, functions: tuple[Function, ...]) -> int | None:
    """The function named `name` defined directly in function `scope`."""
    return next((g.id for g in functions if g.name == name.value and g.cls is None and g.parent == scope), None)


def handed_back(node: cst.Assign, call: cst.Call, target: str, sets_up: bool) -> str:
    """The argument whose place `target` takes in what the call returns, when that is the
    argument wrapped, holding the same parameters (Assign.wraps), else "": the same name in the
    same place (`model, optimizer = fabric.setup(model, optimizer)`, `model, opt, loader =
    accelerator.prepare(model, opt, loader)`, `model, optimizer = amp.initialize(model,
    optimizer)`), or any name when `sets_up` (the call is Fabric's `setup` or accelerate's
    `prepare`, which hand back their arguments in order: `model, optimizer = fabric.setup(net, opt)`)."""
    for t in node.targets:
        if type(t.target) not in (cst.Tuple, cst.List):
            continue
        for i, el in enumerate(t.target.elements):
            if i < len(call.args) and dotted(el.value) == target:
                arg = call.args[i]
                if arg.keyword is not None or arg.star or any(a.star for a in call.args[:i]):
                    return ""
                given = dotted(arg.value) or ""
                return given if given == target or sets_up else ""
    return ""


def accumulates(stmt: cst.With) -> str:
    """X of the first `X.accumulate(...)` a `with` enters, as written (`with
    accelerator.accumulate(model):`, in which accelerate's prepared optimizer steps and clears
    only on the micro-batches it syncs); "" when it enters none."""
    for expr in with_items(stmt):
        if type(expr) is cst.Call and type(expr.func) is cst.Attribute and expr.func.attr.value == "accumulate":
            receiver = dotted(expr.func.value)
            if receiver:
                return receiver
    return ""
