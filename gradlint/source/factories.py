"""Models a file builds outside its classes: a model class of the file built with a config object
(`GPT(GPTConfig(n_layer=48))` returned by a factory, bound at module level or in the
`if __name__ == "__main__":` block) is a network of its own, named after the function or the
variable, and so is an `nn.Sequential` a function returns or the module binds. So is what an
entry point returns: a function callable with no arguments (`vgg16(*, weights=None, **kwargs)`)
that builds a model class of the file, directly or through other functions of the file
(`_vgg("D", False, weights, **kwargs)` -> `VGG(make_layers(cfgs[cfg]), **kwargs)`), run as a user
calls it: its defaults, empty `*args`/`**kwargs` (and the calls it makes bind their splats to
what is left of their known arguments, as every call with known arguments does). So, last, is
each part of a module without forward, as the module builds it (`MLPActorCritic.v`:
`container_parts`).

A model class's own network is built with its parameters' defaults (models.extract); built with a
config made by a call, the same class may be much deeper, which only its builder says. Such a
network is kept only when it differs from the class's own (a config with its defaults adds
nothing). The rules report each layer once (`flagged_chains` groups chains by the place of their
first layer, and the other rules key by position), so a layer flagged in both stays one finding.
"""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from typing import Any, TYPE_CHECKING

import libcst as cst

from gradlint.model.ir import ConfigArg, Network, Opaque, Residual
from gradlint.model.ir import walk as ir_walk
from gradlint.source.budget import MAX_DEPTH, Exhausted
from gradlint.source.engine.values import Ctor
from gradlint.source.engine.walk import bound_once_at_top, children, main_block, mentions, suite, walk
from gradlint.source.init_walk import _InitInterpreter
from gradlint.source.lowering import Lowerer

if TYPE_CHECKING:
    from gradlint.source.models import FileModel

# Entry points modelled per file (torchvision's file with most of them, regnet.py, has 15).
MAX_ENTRIES = 16

# A call of a name or dotted name (`GPT(`, `cfgmod.GPTConfig(`), found from its parenthesis in the
# reversed text: there the pattern starts with a literal, which CPython's re finds by a fast scan,
# while `(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\s*\(` tries every position of the text (a
# tenth of the model extraction of timm's vision_transformer.py; 9x faster over the corpus, the
# same names). The run of name characters before `\s*(` is the name when it is a dotted name.
_CALLED_REVERSED = re.compile(r"\(\s*([\w.]+)")
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def _called(text: str) -> set[str]:
    """The names and dotted names called in `text` (`f(`, `a.b (`), not those after a `.` or a
    digit (`x[0].f(`, `1.f(`)."""
    names: set[str] = set()
    for run in set(_CALLED_REVERSED.findall(text[::-1])):
        name = run[::-1]
        if _DOTTED_NAME.fullmatch(name):
            names.add(name)
    return names


def _written(fm: FileModel) -> tuple[dict[str, str], str]:
    """The text of each top-level function, decorators included (CPython's lines; the last
    definition of a name, as fm.functions keeps), and that of the module's other statements
    (its assignments and expressions, the `__main__` block)."""
    written: dict[str, str] = {}
    rest: list[str] = []
    tree = getattr(getattr(fm.src, "positions", None), "tree", None)
    if tree is None:
        # no `ast` of the file (its positions were all resolved): libcst's own text
        for name, fn in fm.functions.items():
            written[name] = fm.src.code(fn)
        return written, "".join(fm.src.code(s) for s in fm.src.module.body if type(s) in (cst.SimpleStatementLine, cst.If))
    from gradlint.text import split_lines

    lines = split_lines(fm.src.text, keepends=True)
    for node in tree.body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])
        text = "".join(lines[first - 1:node.end_lineno or len(lines)])
        if type(node) is ast.FunctionDef or type(node) is ast.AsyncFunctionDef:
            written[node.name] = text
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.Expr, ast.If)):
            rest.append(text)
    return written, "".join(rest)


def _builds_with_config(fm: FileModel, text: str) -> bool:
    """Whether `text` calls a model class of the file and a class that may be a config: one of
    the file's other classes, or an imported class not of torch, typing or the standard library
    (whether it is a config is decided when it is bound: ConfigObjects.config_of_call)."""
    from gradlint.source.configs import _not_the_projects

    model = config = False
    imported = 0  # classes of other project files: a model or a config (`GPT(GPTConfig(...))`)
    for name in _called(text):
        last = name.rsplit(".", 1)[-1]
        if not last[:1].isupper():
            continue
        local = fm.classes.get(name)
        if local is not None:
            if local.is_module:
                model = True
            else:
                config = True
            continue
        quals = fm.imports.qualify_dotted(name)
        if fm.configs is not None and quals and not any(_not_the_projects(q.split(".", 1)[0]) for q in quals):
            imported += 1
    return bool((model and (config or imported)) or (imported and (config or imported > 1)))


def _builders(fm: FileModel, written: dict[str, str]) -> set[str]:
    """The file's functions that build one of its model classes: calling it (`VGG(...)`), or
    calling a function of the file that does (`vgg16()` -> `_vgg(...)` -> `VGG(...)`)."""
    models = {n for n, info in fm.classes.items() if info.is_module}
    if not models:
        return set()
    calls = {name: {c.rsplit(".", 1)[-1] if c.startswith("self.") else c for c in _called(text)}
             for name, text in written.items() if name in fm.functions}
    found = {name for name, called in calls.items() if called & models}
    grew = True
    while grew:
        grew = False
        for name, called in calls.items():
            if name not in found and called & found:
                found.add(name)
                grew = True
    return found


def _as_built(fm: FileModel, fn: cst.FunctionDef, decisions: dict, seen: set) -> bool:
    """Whether an entry returns its model as the constructor built it, with the arguments the run
    saw: in `fn` and each function of the file whose result it returns (`return _vgg(...)`, `model
    = VGG(...); return model`), the model's name and the `*args`/`**kwargs` are used only to bind
    it, return it, splat them into a call or set an item (`kwargs["init_weights"] = False`, which
    the run follows), except in a branch the run did not take or could not decide (`if weights is
    not None: model.load_state_dict(...)`). Anything else (`model.apply(init)`, `for m in
    model.modules()`, `init(model)`, `kwargs.update(...)`, a helper given `kwargs`) changes what
    the constructor built, or may: the entry is not modelled."""
    if id(fn) in seen or len(seen) > MAX_DEPTH:
        return False
    seen.add(id(fn))
    ps = fn.params
    watched = {p.name.value for p in (ps.star_arg, ps.star_kwarg) if type(p) is cst.Param}
    own = list(walk(fn.body, stop=_SCOPES))  # the function's own nodes, not those of defs inside it
    returns = [n for n in own if type(n) is cst.Return]
    if not returns:
        return False
    callees: list[cst.BaseExpression] = []
    for ret in returns:
        value = ret.value
        if type(value) is cst.Name:
            watched.add(value.value)
            callees.extend(n.value for n in own if type(n) is cst.Assign
                           and any(type(t.target) is cst.Name and t.target.value == value.value for t in n.targets))
        elif value is not None:
            callees.append(value)
    for value in callees:
        if type(value) is cst.Call and type(value.func) is cst.Name and value.func.value in fm.functions:
            if not _as_built(fm, fm.functions[value.func.value], decisions, seen):
                return False
    return not _touched(fn.body, watched, decisions, True)


_MISSING: Any = object()
_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)


def _touched(node: cst.CSTNode, watched: set[str], decisions: dict, live: bool) -> bool:
    """Whether a watched name is used other than as `_as_built` allows, where the run went
    (`live`: not in a branch it skipped or could not decide)."""
    kind = type(node)
    if kind is cst.Name:
        return live and node.value in watched
    if kind in _SCOPES:  # (concrete classes: an exact test, no ABC lookup)
        return False
    if kind is cst.If:
        decided = decisions.get(id(node), _MISSING)
        # the test only reads; a branch counts when the run decided to take it
        return _touched(node.body, watched, decisions, live and decided is True) or (
            node.orelse is not None and _touched(node.orelse, watched, decisions, live and decided is False))
    if kind is cst.Assign:
        for t in node.targets:
            target = t.target
            if type(target) is cst.Name and target.value in watched:
                continue  # the model bound
            if type(target) is cst.Subscript and type(target.value) is cst.Name and target.value.value in watched:
                if any(_touched(el, watched, decisions, live) for el in target.slice):
                    return True
                continue  # `kwargs["x"] = v`: followed by the run
            if _touched(target, watched, decisions, live):
                return True
        return _touched(node.value, watched, decisions, live)
    if kind is cst.Return and type(node.value) is cst.Name:
        return False
    if kind is cst.Call and _apply_owner(node) in watched:
        # `model.apply(init)`, `for m in model.modules(): nn.init...(m.weight)`: the run follows
        # them (init_walk: Ctor.scoped_inits), and the network is the model as initialised again
        return any(_touched(a, watched, decisions, live) for a in node.args)
    if kind is cst.For and _loop_owner(node) in watched:
        return _touched(node.target, watched, decisions, live) or _touched(node.body, watched, decisions, live) or (
            node.orelse is not None and _touched(node.orelse, watched, decisions, live))
    if kind is cst.Arg and node.star in ("*", "**") and type(node.value) is cst.Name:
        return False
    return any(_touched(c, watched, decisions, live) for c in children(node))


def _apply_owner(call: cst.Call) -> str:
    """`name` of `name.apply(fn)` (one positional argument); "" for any other call."""
    func = call.func
    if (type(func) is cst.Attribute and func.attr.value == "apply" and type(func.value) is cst.Name
            and len(call.args) == 1 and not call.args[0].star and call.args[0].keyword is None):
        return func.value.value
    return ""


def _loop_owner(stmt: cst.For) -> str:
    """`name` of `for m in name.modules():` (or `named_modules`, `children`, `named_children`);
    "" for any other loop."""
    it = stmt.iter
    if (type(it) is cst.Call and not it.args and type(it.func) is cst.Attribute and type(it.func.value) is cst.Name
            and it.func.attr.value in ("modules", "named_modules", "children", "named_children")):
        return it.func.value.value
    return ""


def _callable_bare(fn: cst.FunctionDef) -> bool:
    """Whether `fn` can be called with no arguments (every parameter has a default; `*args` and
    `**kwargs` allowed): a user's entry point, such as `vgg16()` or `resnet50(weights=None)`."""
    ps = fn.params
    return not fn.asynchronous and all(p.default is not None for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params))


def factory_networks(fm: FileModel, classes: dict[str, Network]) -> list[Network]:
    """The networks of the file's factories (above); `classes`: the networks of its classes, by
    name, which a factory's network must differ from to be kept."""
    text = fm.src.text
    sequential = "Sequential" in text
    stacks = any(word in text for word in _STACK_WORDS)
    if not sequential and not stacks and not fm.configs and not any(not i.is_module for i in fm.classes.values()) and not (
            fm.functions and any(i.is_module for i in fm.classes.values())):
        return []
    written, rest = _written(fm)
    builders = _builders(fm, written)
    out: list[Network] = []
    # Functions that build with a config or return a Sequential, and the module's own models, come
    # first; entry points after them, at most MAX_ENTRIES (a file of hundreds of them would spend
    # the file's budget and time on networks built the same way)
    configured = [(name, fn, False) for name, fn in fm.functions.items()
                  if not (name in builders and _callable_bare(fn))]
    entries = [(name, fn, True) for name, fn in fm.functions.items() if name in builders and _callable_bare(fn)]
    later: list[tuple[str, Any, cst.CSTNode]] = []
    if sequential or stacks:
        later.extend(_module_sequentials(fm))
    if _builds_with_config(fm, rest) or _applies_at_module_level(fm):
        later.extend(_module_level(fm))
    kept_entries = 0
    for name, fn, entry in configured + [("", None, False)] + entries:
        if fn is None:
            for name, value, where in later:
                _keep(out, fm, name, value, where, False, classes)
            continue
        if entry and kept_entries >= MAX_ENTRIES:
            break
        if entry and not _as_built(fm, fn, {}, set()):
            # Refused before the run: with no branch decided, every `if` counts as skipped, so
            # a use outside them (`image_size = kwargs.pop(...)`) refuses the entry whatever the
            # run decides (torchvision's vit_b_16 ... cost a full construction each, for nothing).
            continue
        source = written.get(name, "")
        wanted_seq = sequential and "Sequential" in source
        if not wanted_seq and not entry and not _builds_with_config(fm, source):
            continue
        cuts = fm.cuts
        fm.meter.allow()
        try:  # RecursionError: a statement too deep for libcst's code generator
            if wanted_seq and not mentions(fn, "Sequential") and not _builds_with_config(fm, source):
                continue
            scope: dict = {}
            # an entry called as a user calls it, with no arguments: `**kwargs` is empty
            fm._bind_params(list(fn.params.params), fn.params, None, {}, scope, exact=entry)
            interp = _InitInterpreter(fm, scope, None)
            fm.running, fm.configs_to_externs = fn, True
            fm.decisions = {} if entry else None
            interp.block(fn.body)
            if entry and not _as_built(fm, fn, fm.decisions, set()):
                continue
        except (Exhausted, RecursionError):
            continue
        finally:
            fm.running, fm.decisions, fm.configs_to_externs = None, None, False
        if fm.cuts == cuts:
            # lowered now, each with its own piece of the file's budget: the first networks of a
            # file with hundreds of factories are kept when its total runs out
            kept_entries += _keep(out, fm, name, interp.returned, fn.name, entry, classes) and entry
    return out


def _keep(out: list[Network], fm: FileModel, name: str, value: Any, where: cst.CSTNode, entry: bool,
          classes: dict[str, Network]) -> bool:
    """Add the network of what a factory built (`value`) to `out`, when it is one (True then)."""
    fm.meter.allow()
    network = None
    try:
        if isinstance(value, Ctor) and value.kind == "torch" and value.cls == "Sequential" and value.items:
            network = _sequential(fm, name, value, where)
        elif isinstance(value, Ctor) and value.kind == "local" and value.instance is not None and \
                (value.instance.configured or entry or value.scoped_inits):
            network = _configured(fm, name, value, where, classes.get(value.cls))
        elif isinstance(value, Ctor) and value.kind == "torch" and value.cls in _STACKS:
            # `encoder = nn.TransformerEncoder(layer, num_layers=24)` at module level
            network = Network(name=name, path=fm.src.path, nodes=Lowerer(fm).module_nodes(value),
                              origin=fm.src.span(where))
        elif _other_files_model(fm, value):
            # a model class of another file built with a config: its IR is that class re-run in
            # its file with the config's values, when the project index inlines the placeholder
            network = Network(name=name, path=fm.src.path, nodes=Lowerer(fm).module_nodes(value),
                              origin=fm.src.span(where))
    except (Exhausted, RecursionError):
        network = None
    if network is not None:
        out.append(network)
    return network is not None


def _other_files_model(fm: FileModel, value: Any) -> bool:
    """A module class of another project file called with a config object among its arguments
    (ir.ConfigArg); a class that is no module (`Accelerator(ParallelismConfig(...))`) is not."""
    if not isinstance(value, Ctor) or value.kind != "unknown" or value.extern is None or len(value.extern) != 2:
        return False
    args = value.extern[1]
    if args is None or not any(a and isinstance(a[0], ConfigArg) for _k, a in args):
        return False
    return fm.configs is not None and fm.configs.is_module_class(value.extern[0], fm.imports.qualify_dotted(value.extern[0]))


# torch's stacks of transformer layers, built at module level from a layer bound there
_STACKS = frozenset({"TransformerEncoder", "TransformerDecoder", "Transformer"})
_STACK_WORDS = ("TransformerEncoder(", "TransformerDecoder(", "Transformer(")


def _module_sequentials(fm: FileModel) -> list[tuple[str, Any, cst.CSTNode]]:
    """`model = nn.Sequential(...)` at module level (its arguments read without the module's
    other bindings, except the lists it unpacks: `nn.Sequential(*layers)` after a loop that builds
    `layers`, `_layer_lists`), and torch's transformer stacks (`encoder = nn.TransformerEncoder(
    layer, num_layers=24)`, with the layer a name bound once at module level to its constructor)."""
    found: list[tuple[str, Any, cst.CSTNode]] = []
    listed = _layer_lists(fm)
    layers = _stack_layers(fm)
    for stmt in fm.src.module.body:
        if type(stmt) is cst.SimpleStatementLine:
            for small in stmt.body:
                cuts = fm.cuts
                fm.meter.allow()
                try:
                    if (type(small) is cst.Assign and len(small.targets) == 1 and type(small.targets[0].target) is cst.Name
                            and type(small.value) is cst.Call and mentions(small.value, "Sequential")):
                        value = fm.eval(small.value, listed.get(id(small), {}))
                    elif (type(small) is cst.Assign and len(small.targets) == 1 and type(small.targets[0].target) is cst.Name
                            and type(small.value) is cst.Call and _stack_call(fm, small.value)):
                        value = fm.eval(small.value, layers)
                    else:
                        continue
                    if fm.cuts == cuts:
                        found.append((small.targets[0].target.value, value, small))
                except (Exhausted, RecursionError):
                    continue
    return found


def _stack_call(fm: FileModel, call: cst.Call) -> bool:
    return any(q.startswith("torch.nn.") and q.rsplit(".", 1)[-1] in _STACKS for q in fm.imports.qualify(call.func))


def _stack_layers(fm: FileModel) -> dict[str, Any]:
    """Names bound once at module level to a torch transformer layer (`layer =
    nn.TransformerEncoderLayer(d_model=512, nhead=8)`): what a stack built from them reads."""
    once = bound_once_at_top(fm.src.module)
    out: dict[str, Any] = {}
    for stmt in fm.src.module.body:
        if type(stmt) is not cst.SimpleStatementLine:
            continue
        for small in stmt.body:
            if type(small) is cst.Assign and len(small.targets) == 1 and type(small.targets[0].target) is cst.Name \
                    and small.targets[0].target.value in once and type(small.value) is cst.Call and any(
                        q in ("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerDecoderLayer")
                        for q in fm.imports.qualify(small.value.func)):
                try:
                    out[small.targets[0].target.value] = fm.eval(small.value, {})
                except (Exhausted, RecursionError):
                    continue
    return out


def _unpacked(call: cst.Call) -> set[str]:
    """The names a call unpacks (`nn.Sequential(*layers, head)`: layers)."""
    return {a.value.value for a in call.args if a.star == "*" and type(a.value) is cst.Name}


def _builds_only(stmt: cst.CSTNode, names: set[str]) -> bool:
    """Whether a module-level loop (or if) only builds the lists `names` (`for i in range(n):
    layers += [nn.Linear(d, d), nn.Tanh()]`, `layers.append(...)`): every simple statement in it
    binds or extends one of them, and nothing in it trains (no training loop is run)."""
    if type(stmt) is cst.SimpleStatementLine:
        for small in stmt.body:
            if isinstance(small, cst.AugAssign | cst.Assign | cst.AnnAssign):
                targets = [small.target] if type(small) is not cst.Assign else [t.target for t in small.targets]
                if not all(type(t) is cst.Name and t.value in names for t in targets):
                    return False
            elif type(small) is cst.Expr and type(small.value) is cst.Call:
                func = small.value.func
                if not (type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value in names
                        and func.attr.value in ("append", "extend", "insert")):
                    return False
            elif type(small) is not cst.Pass:
                return False
        return True
    if isinstance(stmt, cst.For | cst.If):
        bodies = [stmt.body] + ([stmt.orelse.body] if getattr(stmt, "orelse", None) is not None
                                and type(stmt.orelse) is not cst.If else [])
        if type(stmt) is cst.If and type(stmt.orelse) is cst.If:
            bodies.append(cst.IndentedBlock(body=[stmt.orelse]))
        return all(_builds_only(s, names) for body in bodies for s in suite(body))
    return False


def _layer_lists(fm: FileModel) -> dict[int, dict]:
    """For each module-level `x = nn.Sequential(*layers, ...)`, the environment its unpacked lists
    are read in: the module's simple assignments above it, and the loops above it that only build
    those lists, run by the `__init__` interpreter (a list stays unknown when any of it is)."""
    stmts = fm.src.module.body
    wanted: dict[int, set[str]] = {}
    for stmt in stmts:
        if type(stmt) is cst.SimpleStatementLine:
            for small in stmt.body:
                if type(small) is cst.Assign and type(small.value) is cst.Call and \
                        mentions(small.value, "Sequential") and _unpacked(small.value):
                    wanted[id(small)] = _unpacked(small.value)
    if not wanted:
        return {}
    names = set().union(*wanted.values())
    out: dict[int, dict] = {}
    interp = _InitInterpreter(fm, {}, None)
    for stmt in stmts:
        cuts = fm.cuts
        fm.meter.allow()
        if type(stmt) is cst.SimpleStatementLine:
            for small in stmt.body:
                if id(small) in wanted:
                    out[id(small)] = {n: interp.env[n] for n in wanted[id(small)] if n in interp.env}
            run = all(type(s) in (cst.Assign, cst.AnnAssign, cst.AugAssign) for s in stmt.body) or \
                _builds_only(stmt, names)
        else:
            run = isinstance(stmt, cst.For | cst.If) and _builds_only(stmt, names)
        if not run:
            if not isinstance(stmt, cst.FunctionDef | cst.ClassDef):
                # a statement not run that may change a list (a loop that also trains): unknown
                for n in names:
                    if n in interp.env and mentions(stmt, n):
                        del interp.env[n]
            continue
        try:
            interp.statement(stmt)
        except (Exhausted, RecursionError):
            return out
        if fm.cuts != cuts:
            return out
    return out


def _module_level(fm: FileModel) -> list[tuple[str, Any, cst.CSTNode]]:
    """The models the module binds: its top-level assignments of a call, in order, with those of
    its top-level `if` statements (decided by the module's constants) and of the `__main__` block
    (run as a function body: what it binds last is its model)."""
    found: list[tuple[str, Any, cst.CSTNode]] = []
    interp = _InitInterpreter(fm, {}, None)
    fm.configs_to_externs = True
    try:
        _run_module(fm, interp, found)
    finally:
        fm.configs_to_externs = False
    return found


def _run_module(fm: FileModel, interp: _InitInterpreter, found: list) -> None:
    applied: list = []
    for stmt in fm.src.module.body:
        cuts = fm.cuts
        fm.meter.allow()
        try:
            if type(stmt) is cst.SimpleStatementLine:
                if not all(type(s) in (cst.Assign, cst.AnnAssign, cst.Expr) for s in stmt.body):
                    continue
                before = dict(interp.env)
                interp.statement(stmt)
                where: cst.CSTNode = stmt
            elif main_block(stmt):
                before = dict(interp.env)
                interp.block(stmt.body)
                where = stmt
            elif type(stmt) is cst.For and _loop_owner(stmt):
                # `for m in net.modules(): nn.init.zeros_(m.weight)`: initialises a model of the
                # module again (init_walk scopes it to that model)
                before = dict(interp.env)
                interp.statement(stmt)
                where = stmt
            elif type(stmt) is cst.If:
                # `if init_from == "scratch": model = GPT(GPTConfig(**model_args))` (nanoGPT's
                # train.py): decided by the module's own constants, or its branches left open
                before = dict(interp.env)
                interp.statement(stmt)
                where = stmt
            else:
                continue
        except (Exhausted, RecursionError):
            interp.env = {}
            continue
        if fm.cuts != cuts:
            interp.env = {}
            continue
        for name, value in interp.env.items():
            if "." in name or before.get(name) is value:
                continue
            if (type(value) is Ctor and value.kind == "local" and value.instance is not None
                    and value.instance.configured) or _other_files_model(fm, value):
                found.append((name, value, where))
            elif type(value) is Ctor and value.kind == "local" and value.instance is not None:
                applied.append((name, value, where))
    # A model of the file built with its defaults is the class's own network, unless a later
    # statement initialised it again (`netG.apply(weights_init)`: DCGAN's main.py).
    found.extend(x for x in applied if x[1].scoped_inits)


def _applies_at_module_level(fm: FileModel) -> bool:
    """Whether a top-level statement, or one of the `__main__` block, is `name.apply(fn)` or a loop
    over `name.modules()` (a model of the module initialised again)."""
    body = fm.src.module.body
    stmts = [*body, *(s for m in body if main_block(m) for s in suite(m.body))]
    for stmt in stmts:
        if type(stmt) is cst.For and _loop_owner(stmt):
            return True
        if type(stmt) is cst.SimpleStatementLine:
            for small in stmt.body:
                if type(small) is cst.Expr and type(small.value) is cst.Call and _apply_owner(small.value):
                    return True
    return False


def _sequential(fm: FileModel, name: str, value: Ctor, where: cst.CSTNode) -> Network:
    low = Lowerer(fm)
    value.path = ""
    low.seen.add(id(value))
    for i, item in enumerate(value.items):
        low._assign(item, str(i), [])
    nodes = low.module_nodes(value)
    return Network(name=name, path=fm.src.path, nodes=tuple(nodes), origin=fm.src.span(where),
                   params=tuple(low.params), recurrents=tuple(low.recurrents))


def _configured(fm: FileModel, name: str, value: Ctor, where: cst.CSTNode, own: Network | None) -> Network | None:
    """A model class of the file as a factory built it with a config: None when forward cannot
    be followed, or when it is the class's own network."""
    cuts = fm.cuts
    inst = value.instance
    if inst.cls.name in fm.spent_forwards:
        # its forward ran out of its budget under another factory of this file: the others build
        # it alike (swin_t, swin_s, swin_b: a tenth of torchvision's extraction time for nothing)
        return None
    low = Lowerer(fm)
    # the builder's own `model.apply(init)` after the constructor (Ctor.scoped_inits) comes later
    # in program order than the class's own initialisation, and the lowering keeps the last one
    low.assign_paths(inst.attrs, "", value.scoped_inits + inst.type_inits)
    paths, known, note = low.forward_paths(inst, "")
    if fm.meter.exhausted:
        fm.spent_forwards.add(inst.cls.name)
    if fm.cuts != cuts or fm.meter.exhausted or not known or not paths or "__budget__" in inst.attrs:
        return None
    nodes, variants = tuple(paths[0]), tuple(tuple(p) for p in paths[1:])
    params = tuple(low.params)
    if own is not None and own.forward_known and (own.nodes, own.variants, own.params) == (nodes, variants, params):
        return None
    return Network(name=name, path=fm.src.path, nodes=nodes, origin=fm.src.span(where), params=params,
                   recurrents=tuple(low.recurrents), forward_known=True, variants=variants, note=note)


def container_parts(fm: FileModel, containers: list, by_name: dict) -> list[Network]:
    """The parts of modules that have no forward (an actor-critic holding `self.pi` and `self.v`,
    a GAN holding `self.G` and `self.D`, a policy's `self.body = nn.Sequential(...)` run by its
    `get_value`), each as the network it is with the arguments the container
    builds it with (`MLPCritic(obs_dim, critic_sizes, critic_activation)` with the container's
    defaults): named `Container.attr`, kept only when the part's class alone is not fully known
    (its own network has an opaque node, a block of another file included) and the part here
    is another network (other layers, other arguments to a block of another file). A chain both
    hold is reported once (rules/architecture/common.flagged_chains). Parts of classes of this
    file only. Unlike `_configured` (a class built by a factory, lowered on its own), a part is
    lowered by the container's Lowerer: under the container's path, with the initialisations the
    container applies to it (`self.apply(init)` dispatched by type)."""
    src = fm.src
    out: list[Network] = []
    for info, inst, low in containers:
        for attr, value in list(inst.attrs.items()):
            if type(value) is Ctor and value.kind == "torch" and value.cls == "Sequential" and value.items:
                # an nn.Sequential the container builds (`self.body`, which its `get_value` runs):
                # a network of its own, as torch runs it
                fm.meter.allow()
                cuts = fm.cuts
                nodes = low.module_nodes(value)
                if fm.cuts == cuts and not fm.meter.exhausted:
                    out.append(Network(name=f"{info.name}.{attr}", path=src.path, nodes=tuple(nodes),
                                       origin=src.span(info.node.name),
                                       params=tuple(p for p in low.params if p.name.startswith(attr + ".")),
                                       forward_known=True))
                continue
            part = getattr(value, "instance", None) if type(value) is Ctor else None
            if part is None or part.cls.name not in fm.classes or fm._find_method(part.cls, "forward") is None:
                continue
            alone = by_name.get(part.cls.name)
            if alone is None or not alone.forward_known or not _has_opaque(alone.nodes):
                continue
            fm.meter.allow()
            cuts = fm.cuts
            paths, known, _note = low.forward_paths(part, attr)
            if not known or not paths or fm.cuts != cuts or fm.meter.exhausted:
                continue
            if _unnamed(paths[0]) == _unnamed(alone.nodes):
                continue
            out.append(Network(name=f"{info.name}.{attr}", path=src.path, nodes=tuple(paths[0]),
                               origin=src.span(info.node.name), params=tuple(p for p in low.params
                                                                            if p.name.startswith(attr + ".")),
                               forward_known=True, variants=tuple(tuple(p) for p in paths[1:])))
    return out


def _unnamed(nodes) -> tuple:
    """Nodes without their module paths: a part and its class alone compare by what they hold."""
    out = []
    for n in nodes:
        if isinstance(n, Residual):
            n = replace(n, name="", body=_unnamed(n.body),
                                    branches=tuple(_unnamed(b) for b in n.branches))
        elif hasattr(n, "name"):
            n = replace(n, name="")
        out.append(n)
    return tuple(out)


def _has_opaque(nodes) -> bool:
    return any(isinstance(n, Opaque) for n in ir_walk(nodes))
