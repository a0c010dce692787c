"""The project call graph over the numerics facts: who calls a function or method, what every call
passes for a parameter, and which functions run only under no_grad.

Calls are looked for in the files whose text names the function (the project index's word scan),
so the answers do not depend on which files are in the run. facts.numerics (the sites' queries)
and facts.training (the loop facts' callers) ask these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from gradlint.facts.project import MAX_DEPTH, Module, ProjectIndex, Scope

if TYPE_CHECKING:
    from gradlint.facts.numerics import Call, NumClass

# What callers the project cannot show pass a parameter (module, function, parameter, position):
# a shape of Call.args, or None when nothing is known
Unseen = Callable[[ProjectIndex, str, str, str, int], "str | None"]


# Files that name a function (a class, for `__init__`) read to find its callers, at most: past it
# the parameters stay unknown (a class named `Trainer` is named in 151 files of the corpus, each of
# which a check of one file would have to parse).
MAX_CALLER_MODULES = 64
# Calls that pass a parameter on to another function (`param:` shapes) followed, at most.
MAX_PASSED_ON = 3


def passed_everywhere(index: ProjectIndex, module: str, function: str, param: str, at: int,
                       default: str | None = None, unknown: str | None = None, _depth: int = 0,
                       unseen: Unseen | None = None) -> str | None:
    """What every call in the project passes for parameter `param` (position `at` after self, -1
    for keyword-only) of `function` of `module`: a shape of Call.args ('crit:bce', 'inst:' and the
    class's qualified name), `default` for a call that passes nothing, or for no call at all;
    None when a call passes another value, or when no call is known (`unknown` when the calls
    cannot all be known). A call that passes its own function's parameter on (`param:input@0`:
    `def vSymEig(input): return _eigen(input)`) passes what every call of that function passes
    for it, a few calls deep. `unseen(index, module, function, param, at)`: what callers that
    cannot be known pass, where a convention says (a loss's prediction: facts.losses), asked of
    this function and of those that pass the parameter on to it."""
    calls = project_calls(index, module, function)
    if calls is None:
        got = unseen(index, module, function, param, at) if unseen is not None else None
        return got if got is not None else unknown
    if not calls:
        return default
    joined: str | None = None
    for home, args in calls:
        shape = args.get(param) or (args.get(str(at)) if at >= 0 else None)
        if not shape:
            passes = "*" in args or param in args.get("=", "").split(",") or 0 <= at < int(args.get("#", "0"))
            if default is None or passes:
                return None
            shape = default
        if shape.startswith("param:"):
            # the caller's own parameter, passed on: what its callers pass for it
            name, _, position = shape[6:].rpartition("@")
            caller = args.get("^")
            if home == module and caller == function and name == param:
                continue  # a recursion passing the parameter back to itself: the other calls decide
            if _depth >= MAX_PASSED_ON or not caller or not position.lstrip("-").isdigit():
                return None
            shape = passed_everywhere(index, home, caller, name, int(position), _depth=_depth + 1, unseen=unseen)
            if shape is None:
                return None
        elif shape.startswith(("inst:", "out:", "fn:")):
            head, _, cls = shape.partition(":")
            cls, at_, elem = cls.partition("@")
            quals = index.resolve(home, cls)
            if len(quals) != 1:
                return None
            shape = f"{head}:{quals[0]}{at_}{elem}"
        if joined is None:
            joined = shape
        elif joined != shape:
            return None
    return joined


def project_calls(index: ProjectIndex, module: str, function: str) -> list[tuple[str, dict[str, str]]] | None:
    """The calls of `function` ('f', 'C.m', 'C.__init__': the calls of the class) of `module` in
    the whole project, each as (the calling module, what it passes: Call.args); None when not all
    of them can be known. Callers are looked for in the files whose text holds the function's name
    (the class's name for `__init__`), as `only_nograd_reachable` looks; memoised per run."""
    memo = index.memos.setdefault("calls_of", {})
    key = (module, function)
    if key not in memo:
        memo[key] = None  # (a function passed to its own caller: a cycle of searches knows nothing)
        memo[key] = _find_calls(index, module, function)
    return memo[key]


def _find_calls(index: ProjectIndex, module: str, function: str) -> list[tuple[str, dict[str, str]]] | None:
    parts = function.split(".")
    if not function or "<locals>" in parts or len(parts) > 2:
        return None
    target = f"{module}.{function}"
    owner = f"{module}.{parts[0]}" if len(parts) == 2 else None
    short = parts[-1]
    if owner is not None:
        if short == "forward" or (short.startswith("__") and short.endswith("__") and short != "__init__"):
            return None  # the interpreter or nn.Module's __call__ calls it, with what we cannot see
        if short != "__init__" and not _bases_known(index, owner, short):
            return None  # it may override a library's method, which the library calls
    word = parts[0] if short == "__init__" else short
    mentions = index.mentioning(word)
    if len(mentions) > MAX_CALLER_MODULES:
        return None  # a common name: reading every file that holds it costs more than it may give
    out: list[tuple[str, dict[str, str]]] = []
    names = sorted({module, *mentions}, key=lambda n: (not index.known(n), n))
    through: set[tuple[str, str, str]] = set()
    for name in names:
        mod = index.calling(name)
        facts = mod.facts.numerics if mod is not None else None
        if facts is None:
            return None  # a file that names it and was not read
        passes = word in facts.references
        if passes and short == "__init__" and _other_class(index, mod.name, word, owner):
            passes = False  # the name read there is a class of its own (`type(self) == Net`)
        if passes and (owner is not None or word not in facts.passed_functions):
            return None  # it reads it as a value, not only as what a call is given
        if owner is not None and any(f"{mod.name}.{c.name}" != owner and _derives(index, mod.name, c, owner)
                                     for c in facts.classes):
            return None  # a subclass: its own calls and overrides are not followed
        for fn in facts.functions:
            for call in fn.calls:
                if passes and any(v.startswith("fn:") for _k, v in call.args):
                    # `fit(model, data, deviance)`: where fit calls its parameter, it calls this
                    found = _passed_calls(index, mod, call, target, through)
                    if found is None:
                        return None
                    out.extend(found)
                if short == "__init__":
                    how = _call_of(index, mod, fn.name, call.callee, word, owner, None)
                    if how is None and call.callee.endswith(word + ".__init__") and (
                            f"{owner}.__init__" in index.resolve(mod.name, call.callee)):
                        how = "unknown"  # `Trainer.__init__(self, ...)`: the arguments shift by one
                elif owner is not None and call.args and call.callee.rpartition(".")[2] == short and (
                        receiver := dict(call.args).get("@")):
                    # `trainer.m(...)`, `self.trainer.m(...)`, `Trainer(cfg).m(...)`: the front-end
                    # knew the receiver's class
                    how = _receiver_call(index, mod, receiver, owner)
                else:
                    how = _call_of(index, mod, fn.name, call.callee, short, target, owner)
                    if how == "call" and owner is not None and call.callee.partition(".")[0] not in (
                            "self", "cls", "super()"):
                        how = "unknown"  # `C.m(obj, ...)`: the arguments shift by one
                if how is None:
                    continue
                if how == "unknown":
                    return None
                out.append((mod.name, {**dict(call.args), "^": fn.name}))  # "^": the calling function
    return out


def _other_class(index: ProjectIndex, module: str, word: str, owner: str) -> bool:
    """Whether `word` in `module` is a project class other than `owner` wherever it is read there:
    the module's own class of that name, or one it imports (resolved to that alone)."""
    found = index.resolve(module, word)
    return bool(found) and owner not in found and all(index.numclass(q) is not None for q in found)


def _passed_calls(index: ProjectIndex, mod: Module, call: Call, target: str,
                  seen: set[tuple[str, str, str]]) -> list[tuple[str, dict[str, str]]] | None:
    """The calls of the function `target` that `call` (in `mod`) makes by passing it to a function
    of the project (`fit(model, data, deviance)` with `def fit(model, data, loss_fn): ...
    loss_fn(model(x), y)`), each as project_calls gives one, with the callee's calls of its
    parameter standing for it: every read of the parameter there is a call of it ('&' in
    Call.args), and every call of the callee in the project passes `target`. None when that is
    not known (the callee stores the parameter or passes it on, is a method or a class, or a
    caller passes another value); [] for an argument that is another function, and for a
    callee already counted (`seen`)."""
    found: list[tuple[str, dict[str, str]]] = []
    for key, shape in call.args:
        if not shape.startswith("fn:") or target not in index.resolve(mod.name, shape[3:]):
            continue
        quals = index.resolve(mod.name, call.callee)
        if len(quals) != 1:
            return None
        home, _, function = quals[0].rpartition(".")
        callee = index.calling(home) if home else None
        facts = callee.facts.numerics if callee is not None else None
        record = next((f for f in facts.functions if f.name == function), None) if facts is not None else None
        if record is None:
            return None  # a class, a method or a file not read: what it does with the function is not known
        calls = []
        for made in record.calls:
            param, _, at = dict(made.args).get("&", "").partition("@")
            if param and key in (param, at):
                calls.append(made)
        if not calls:
            return None  # the parameter stored, passed on, or called without arguments we know of
        param, _, at = dict(calls[0].args)["&"].partition("@")
        if (home, function, param) in seen:
            continue
        seen.add((home, function, param))
        if passed_everywhere(index, home, function, param, int(at)) != "fn:" + target:
            return None  # a caller passes another function, or one not known
        found.extend((home, {**{k: v for k, v in made.args if k != "&"}, "^": function}) for made in calls)
    return found


def _receiver_call(index: ProjectIndex, mod: Module, receiver: str, owner: str) -> str | None:
    """`obj.m(...)` with `obj` an instance of `receiver` (as written in `mod`): a call of `owner.m`
    when it is that class, unknown when one derives from the other, None for an unrelated class."""
    quals = index.resolve(mod.name, receiver)
    if not quals:
        return "unknown"
    if quals == (owner,):
        return "call"
    return "unknown" if any(_related(index, q, owner) for q in quals) else None


# Lightning's LightningModule, under each name it is imported by, and the methods of it that
# Lightning itself calls (its hooks; every `on_*` too): another method of a subclass is called
# only by the project's own code (`self.loss(logits, y)` in training_step).
_LIGHTNING_MODULES = frozenset(f"{package}{where}.LightningModule" for package in ("pytorch_lightning", "lightning.pytorch")
                               for where in ("", ".core", ".core.module", ".core.lightning")) | {"lightning.LightningModule"}
_LIGHTNING_HOOKS = frozenset({
    "training_step", "validation_step", "test_step", "predict_step", "forward", "configure_optimizers",
    "configure_callbacks", "configure_model", "configure_sharded_model", "configure_gradient_clipping",
    "setup", "teardown", "prepare_data", "train_dataloader", "val_dataloader", "test_dataloader",
    "predict_dataloader", "backward", "manual_backward", "optimizer_step", "optimizer_zero_grad",
    "lr_scheduler_step", "clip_gradients", "transfer_batch_to_device", "state_dict", "load_state_dict",
    "training_epoch_end", "validation_epoch_end", "test_epoch_end", "training_step_end",
    "validation_step_end", "test_step_end", "tbptt_split_batch", "freeze", "unfreeze", "to_torchscript",
    "to_onnx", "log", "log_dict", "print", "all_gather", "toggle_optimizer", "untoggle_optimizer",
    "lr_schedulers", "optimizers", "save_hyperparameters"})


def _bases_known(index: ProjectIndex, qualified: str, method: str = "") -> bool:
    """Whether every base of the project class `qualified` is `object`, `abc.ABC`,
    `torch.nn.Module` or a project class whose own bases are known (no library class to call its
    methods); with `method`, a LightningModule counts as known when that method is none of its
    hooks."""
    todo, seen = [qualified], {qualified}
    while todo:
        q = todo.pop()
        rec = index.numclass(q)
        if rec is None:
            return False
        home = q.rpartition(".")[0]
        for base in rec.bases:
            if base in ("object", "abc.ABC", "torch.nn.Module", "torch.nn.modules.module.Module"):
                continue
            # (bases are recorded qualified through the file's imports: `pl.LightningModule` as
            # `pytorch_lightning.LightningModule`, source.numerics.Extractor.base_names)
            if method and method not in _LIGHTNING_HOOKS and not method.startswith("on_") and base in _LIGHTNING_MODULES:
                continue
            found = index.resolve(home, base)
            if len(found) != 1:
                return False
            if found[0] not in seen:
                if len(seen) > MAX_DEPTH:
                    return False
                seen.add(found[0])
                todo.append(found[0])
    return True


# -- the project call graph: code that can run with grad ---------------------------------------

# Methods a framework calls (autograd, Lightning, trainer loops) and the interpreter's dunders:
# they can run with grad whatever the project's own calls of them are.
ENTRY_POINTS = frozenset({"forward", "__call__", "training_step", "train_step", "backward", "step",
                          "closure", "compute_loss", "loss"})


def only_nograd_reachable(scope: Scope | None, function: str) -> bool:
    """True when the function `function` (qualified within `scope`'s module: 'f', 'C.m') runs only
    under no_grad/inference_mode: it has at least one caller in the project, and every call of it
    is made under no_grad or from a function that is itself only no-grad reachable.

    Not proven (False), so the code counts as able to run with grad: a function with no caller in
    the project (its users call it), module-level code, nested functions, framework entry points
    and dunders (ENTRY_POINTS), a function read as a value anywhere (`fn = helper`: it may be
    called from anywhere), a method called through a receiver that is not `self`/`cls`/`super()`
    (`pipe.prepare(...)`: the receiver's class is unknown), a file that names the function but
    whose code was not read (over the parse budget, refused by Python or libcst, or a module the
    index cannot load by its name; a file without torch in it is read for its calls:
    ProjectIndex.calling), recursion, and chains of callers deeper than MAX_DEPTH. Callers are looked for in every
    project file whose text holds the function's name (ProjectIndex.mentioning), so the answer is
    the same whether the file is checked alone or with its project."""
    if scope is None or not scope.module or not function or function == "<module>":
        return False
    return _only_nograd(scope.index, scope.module, function, frozenset())


def _only_nograd(index: ProjectIndex, module: str, function: str,
                 visiting: frozenset[tuple[str, str]]) -> bool:
    memo = index.memos.setdefault("only_nograd", {})
    key = (module, function)
    if key in memo:
        return memo[key]
    if key in visiting or len(visiting) > MAX_DEPTH:
        # recursion (or a chain too long to follow): not proven. A function on a cycle of calls
        # with grad is unprovable whichever of its members a query starts from, so the memo holds.
        return False
    result = _callers_nograd(index, module, function, visiting | {key})
    memo[key] = result
    return result


def _callers_nograd(index: ProjectIndex, module: str, function: str,
                    visiting: frozenset[tuple[str, str]]) -> bool:
    parts = function.split(".")
    short = parts[-1]
    if "<locals>" in parts or short in ENTRY_POINTS or (short.startswith("__") and short.endswith("__")):
        return False
    target = f"{module}.{function}"
    owner = f"{module}.{'.'.join(parts[:-1])}" if len(parts) > 1 else None
    called = False
    # Modules already summarised first: a call with grad there settles the question before any
    # other module is read. The order is made once per name and run (an order made when fewer
    # modules were known only costs an early answer, never changes one).
    orders = index.memos.setdefault("mention_order", {})
    names = orders.get(short)
    if names is None:
        names = orders[short] = sorted(index.mentioning(short, whole=True), key=lambda n: (not index.known(n), n))
    if module not in names:
        names = [module, *names]
    calls = index.memos.setdefault("calls_named", {})
    for name in names:
        got = calls.get((name, short))
        if got is None:
            got = calls[(name, short)] = _calls_named(index, name, short)
        if got is False:
            return False  # a file that names the function and whose code was not read, or reads it as a value
        mod, found = got
        for fn, call in found:
            how = _call_of(index, mod, fn.name, call.callee, short, target, owner)
            if how is None:
                continue
            if how == "unknown":
                return False
            called = True
            if not call.nograd and (fn.name == "<module>" or not _only_nograd(index, mod.name, fn.name, visiting)):
                return False
    return called


def _calls_named(index: ProjectIndex, name: str, short: str):
    """The calls of module `name` that may call a function named `short` (the callee's last part
    is that name, or its head an import of it), with the function making each: (module, [(fn,
    call)]); False when the module's code was not read or it reads the name as a value. Kept per
    run (ProjectIndex.memos): a project of hundreds of files that all define and mention `f` asked
    each file's question of every other file, call by call (800 files: 9 million calls, 44 s)."""
    mod = index.calling(name)
    facts = mod.facts.numerics if mod is not None else None
    if facts is None or short in facts.references:
        return False
    aliases = {head for head, targets in mod.imports.items() if any(t.rpartition(".")[2] == short for t in targets)}
    found = [(fn, call) for fn in facts.functions for call in fn.calls
             if call.callee.rpartition(".")[2] == short or call.callee.partition(".")[0] in aliases]
    return mod, found


def _call_of(index: ProjectIndex, mod: Module, caller: str, callee: str, short: str, target: str,
             owner: str | None) -> str | None:
    """Whether the call `callee` (as written in function `caller` of module `mod`) calls `target`:
    'call', None (another function), or 'unknown' (a receiver whose class is unknown)."""
    head, _, rest = callee.partition(".")
    if callee.rpartition(".")[2] != short:
        # `from m import helper as h; h(x)`: the file names the function only in its import
        if head in mod.imports and any(t.rpartition(".")[2] == short for t in mod.imports[head]):
            return "call" if target in index.resolve(mod.name, callee) else None
        return None
    if not rest:
        return "call" if target in index.resolve(mod.name, callee) else None
    if head in ("self", "cls", "super()"):
        if owner is None:
            return None  # a method, not the module function of that name
        if "." in rest:
            return "unknown"  # self.encoder.m(): an object held by self
        cls = _class_of(caller)
        if cls is None:
            return "unknown"
        return "call" if _related(index, f"{mod.name}.{cls}", owner) else None
    resolved = index.resolve(mod.name, callee)
    if target in resolved:
        return "call"
    if resolved or head in mod.imports or head in mod.defined:
        return None  # another definition of the project, or a library's function
    return "unknown" if owner is not None else None


def _class_of(function: str) -> str | None:
    """The class whose `self` a function sees: 'C' for 'C.m' and for 'C.m.<locals>.inner'; None
    for a class defined inside a function (not resolvable) or a plain function."""
    parts = function.split(".")
    while len(parts) >= 3 and parts[-2] == "<locals>":
        parts = parts[:-2]
    cls = parts[:-1]
    if not cls or "<locals>" in cls:
        return None
    return ".".join(cls)


def _related(index: ProjectIndex, a: str, b: str) -> bool:
    """Whether `self.m()` in class `a` may run `b.m`: the same class, or one derives from the other
    (through project classes; a mixin that calls a method only a sibling base defines is missed)."""
    return a == b or b in _ancestors(index, a) or a in _ancestors(index, b)


def _derives(index: ProjectIndex, home: str, rec: NumClass, owner: str) -> bool:
    """Whether the class `rec` of module `home` derives from the project class `owner`, read from
    the record itself (the facts a search for callers read: a file the sniff skipped has no
    class records in the index)."""
    return any(b == owner or owner in _ancestors(index, b) for base in rec.bases for b in _base_classes(index, home, base))


def _base_classes(index: ProjectIndex, home: str, base: str) -> tuple[str, ...]:
    """The project classes a base as a class record holds it stands for: NumClass.bases are
    qualified where the base was imported (`model.WideDeep`), which a name of `home` must not
    shadow again (`model = Regressor(8)` at its top level), else as written there."""
    if "." in base and index.numclass(base) is not None:
        return (base,)
    return index.resolve(home, base)


def _ancestors(index: ProjectIndex, qualified: str) -> frozenset[str]:
    memo = index.memos.setdefault("ancestors", {})
    if qualified in memo:
        return memo[qualified]
    memo[qualified] = frozenset()  # a cycle of bases ends here
    out: set[str] = set()
    todo, seen = [qualified], {qualified}
    while todo and len(seen) <= 4 * MAX_DEPTH:
        q = todo.pop()
        rec = index.numclass(q)
        if rec is None:
            continue
        home = q.rpartition(".")[0]
        for base in rec.bases:
            for b in _base_classes(index, home, base):
                if b not in seen:
                    seen.add(b)
                    out.add(b)
                    todo.append(b)
    memo[qualified] = frozenset(out)
    return memo[qualified]
