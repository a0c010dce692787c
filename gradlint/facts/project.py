"""The project index: modules by qualified name, and names resolved to the class that defines them.

A rule in `train.py` that asks what `Discriminator` is gets the class that `train.py`'s own imports
name (`models.gan.Discriminator`), never every class of that bare name in the run. The files on the
command line are added with their facts; any other module of the project is summarised when a
lookup first reaches it (`ModuleLoader`, given by the runner: it finds the file and extracts it,
through the cache), so a file's findings do not depend on which other files are in the run.
A module no project file holds may come from an installed library (`ModuleLoader.load_library`,
when the loader offers it): its names resolve like the project's, and its models are read only
when a class of it is asked for (`networks`, `class_summaries`). Library modules carry no
training or numerics facts: nothing in them is reported, and the rules that follow a project's
own functions and classes (GL2xx, GL3xx) see them as before, unknown.

Pure data and dictionary lookups: no parser is imported here.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterable, Protocol

from gradlint.facts.files import ClassSummary, FileFacts

if TYPE_CHECKING:
    from gradlint.facts.numerics import NumClass
    from gradlint.model.ir import Network

# A chain of re-exports or base classes longer than this is given up on (unknown, never a finding).
MAX_DEPTH = 16
# States _global may visit for one name asked from outside (resolve): past it, the rest is cut
# short (nothing found). A name found nowhere is searched through every `*` import; when modules
# cannot be loaded any more (MAX_LOADED), each package's submodule names are searched through
# its `*` imports too, and the names grew without end (timm.models.beit.beit.beit...: 12
# million states in 70 s, 6 GB).
MAX_GLOBAL_STEPS = 5000
# _global's placeholder for a state being computed (a cycle of imports back to it gives nothing)
_IN_PROGRESS: tuple = ("\0in progress",)
# Modules summarised on demand for one checked file's rules, at most: a bound on the work one
# lookup can start (the file's, not the run's: see ProjectIndex.start_file).
MAX_LOADED = 4096

_NOTHING: frozenset[str] = frozenset()


class ModuleLoader(Protocol):
    """Finds and summarises project modules that are not among the checked files."""

    def load(self, module: str) -> tuple[FileFacts, bool] | None:
        """The facts of module `module` and whether it is a package (`__init__.py`); None when the
        project holds no such module (a library, a typo)."""

    def modules_mentioning(self, word: str, whole: bool = False) -> Iterable[str]:
        """Qualified names of the project's modules whose text contains `word` (a cheap scan);
        `whole`: not as part of a longer identifier (holds_word)."""

    # Optional (looked up with getattr): the calls of a file the extraction read no further than
    # its names (no torch in it), for the searches for a function's callers.
    #   load_calls(facts, module) -> facts with its numerics and training-loop facts | None
    # Optional (looked up with getattr): where a project module's absolute imports look first, as
    # a name; and the name the run gives the checked file another name reaches (one module).
    #   home_of(module) -> str
    #   alias(module) -> str | None
    # Optional (looked up with getattr): installed libraries.
    #   load_library(module) -> (facts with the module's symbols only, is a package) | None
    #   library_facts(module) -> the module's facts with its networks and class summaries | None


@dataclass
class Module:
    name: str
    facts: FileFacts
    is_package: bool
    imports: dict[str, tuple[str, ...]] = field(default_factory=dict)
    defined: frozenset[str] = frozenset()
    star: tuple[str, ...] = ()
    # read from an installed library: `facts` holds its symbols until its models are asked for
    library: bool = False
    models_read: bool = False
    # where its absolute imports look first, as a name (a script's folder, the folder above its
    # packages: gradlint.source.index.module_place), as Python's path does; '' for none
    home: str = ""

    @property
    def package(self) -> str:
        """The package relative imports of this module start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


# Folders above a namespace module tried as the folder of the script that runs it, at most.
MAX_CLIMB = 8


def _homes(module: Module) -> list[str]:
    """Where module's absolute imports look before the import roots, nearest first: its home; for
    a script or a module of a namespace package (no `__init__.py`: its home is its own folder),
    the folders above too, since the script that runs it may lie in any of them
    (ex/cifar/models/blocks.py's `from models.layers import act` is ex/cifar/models/layers.py
    when ex/cifar/train.py runs)."""
    if not module.home:
        return []
    if module.home != module.package or module.is_package:
        return [module.home]
    parts = module.home.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), max(len(parts) - 1 - MAX_CLIMB, 0), -1)]


def _named_from_home(module: Module) -> bool:
    """Whether the module's name begins with its home (a script, a namespace package's module, a
    package named apart from another of its name): its home must come first, as Python's path
    puts it. A package named from its own top (`timm.layers` under bench/corpus/src/timm/) finds
    its modules by that name; trying its home first cost every import of the corpus's packages
    lookups of names nothing holds (and the result cache a dependency on each)."""
    return bool(module.home) and module.name.startswith(module.home + ".")


def absolute(module: Module, target: str) -> str:
    """'.gan.Discriminator' imported by module `pkg.train` -> 'pkg.gan.Discriminator'."""
    if not target.startswith("."):
        return target
    level = len(target) - len(target.lstrip("."))
    base = module.package.split(".") if module.package else []
    if level > 1:
        base = base[: max(len(base) - (level - 1), 0)]
    rest = target[level:]
    return ".".join([*base, rest] if rest else base)


class ProjectIndex:
    """Modules of the project by qualified name; resolution of names used in one of them."""

    def __init__(self, loader: ModuleLoader | None = None) -> None:
        self.loader = loader
        self.modules: dict[str, Module] = {}
        self.by_path: dict[str, str] = {}
        self._absent: set[str] = set()
        self._loaded = 0
        self._resolved: dict[tuple[str, str], tuple[str, ...]] = {}
        # _global's answers by (name, depth): re-exports through `*` imports and conditional
        # imports branch at every step, and without this a name of timm was tried ~200 000 times
        # (36 s of a run); keyed by depth too, since a deeper start may be cut by MAX_DEPTH.
        self._globals: dict[tuple[str, int], tuple[str, ...]] = {}
        # _global's answers that no depth limit or cycle guard cut short: the same at any depth.
        # Keyed by depth alone, a name found nowhere was searched again through every `*` import
        # at every depth it was reached at (timm.models/__init__'s hundred `from .x import *`,
        # each with its own: minutes and gigabytes for one name).
        self._complete: dict[str, tuple[str, ...]] = {}
        self._cuts = 0  # answers cut short so far (depth limit, a cycle back to a state in progress)
        self._budget = MAX_GLOBAL_STEPS  # _global states left to the name being resolved
        self._gradchecked: frozenset[str] | None = None
        self._mentions: dict[tuple[str, bool], tuple[str, ...]] = {}
        # What the lookups read, in order, for the result cache (a file's findings depend on the
        # modules its rules reached): a module name for each module() call, hit or miss;
        # ("w", word) for each mentioning(); (start, end) for an answer taken from a memo,
        # standing for what computing it read (log[start:end]). Memos are shared by all files,
        # so the second file that asks still depends on what the first one's lookup read.
        self.log: list = []
        self._spans: dict[tuple, tuple[int, int]] = {}
        self._file_start = 0
        # answers of the queries other facts modules make on the whole project, by query name
        self.memos: dict[str, dict] = _Memos(self)
        self._lowered: dict[tuple, "Network | None"] = {}  # lower()'s answers
        self._calling: dict[str, Module] = {}  # calling()'s modules read on demand
        self._calling_loops: dict[str, Module] = {}  # and those whose loop facts were skipped
        # A budget (MAX_LOADED, the loader's library budget) kept a module from being read for the
        # current file: the memos may hold answers it cut, which another file, with a budget of
        # its own, must not be given (start_file forgets them).
        self._cut_short = False

    # -- modules ---------------------------------------------------------------------------------
    def add(self, name: str, facts: FileFacts, is_package: bool = False, home: str | None = None) -> Module:
        """Add a checked file as module `name` (the first file of a name wins). `home`: where its
        absolute imports look first (gradlint.source.index.module_place), else the loader's
        `home_of` tells."""
        self.by_path.setdefault(facts.path, name)
        if name in self.modules:
            return self.modules[name]
        sym = facts.symbols
        imports = {local: targets for local, targets in sym.imports} if sym else {}
        classes = {c.name for c in facts.classes}
        if facts.numerics is not None:
            classes |= {c.name for c in facts.numerics.classes}
        # Classes the extractors saw include nested ones (`class K: class Inner`), which the
        # file's own code names bare.
        defined = frozenset(classes | ((set(sym.classes) | set(sym.defined)) if sym else set()))
        mod = Module(name, facts, is_package, imports, defined, sym.star if sym else ())
        if home is None:
            home_of = getattr(self.loader, "home_of", None)
            home = home_of(name) if home_of is not None else ""
        mod.home = home
        self.modules[name] = mod
        self._absent.discard(name)
        return mod

    def known(self, name: str) -> bool:
        """Whether module `name` is in the index already, or a checked file of the run that is
        (its facts may still be on their way: the loader's `pending`)."""
        return name in self.modules or name in getattr(self.loader, "pending", ())

    def module(self, name: str) -> Module | None:
        """Module `name`, summarised now when the run has not seen it yet."""
        log = self.log
        if not log or log[-1] is not name:
            log.append(name)
        found = self.modules.get(name)
        if found is not None or not name or name in self._absent:
            return found
        # a checked file the run did not add (its result came from the cache): as if added
        checked = getattr(self.loader, "load_checked", None)
        got = checked(name) if checked is not None else None
        if got is not None:
            return self.add(name, got[0], got[1])
        alias = getattr(self.loader, "alias", None)
        same = alias(name) if alias is not None else None
        if same is not None:
            # a checked file reached by its home's name: the module the run named it
            found = self.module(same)
            if found is not None:
                self.modules[name] = found
                return found
        if self.loader is None:
            return None
        if self._loaded >= MAX_LOADED:
            self._cut_short = True
            return None
        self._loaded += 1
        got = self.loader.load(name)
        library = False
        if got is None:
            # not the project's: an installed library's, read without importing it
            load_library = getattr(self.loader, "load_library", None)
            cut = getattr(self.loader, "cut", 0)
            got = load_library(name) if load_library is not None else None
            library = got is not None
            if got is None and getattr(self.loader, "cut", 0) != cut:
                self._cut_short = True  # past a budget: not absent for a file with budget left
                return None
        if got is None:
            self._absent.add(name)
            return None
        mod = self.add(name, got[0], got[1], "" if library else None)
        mod.library = library
        return mod

    def calling(self, name: str, loops: bool = False) -> Module | None:
        """Module `name` as a search for a function's callers reads it: the module, or, when its
        file was read no further than its names (no torch in its text: a `main.py` that imports
        the project's trainer and models), a copy whose facts hold its calls, read now through
        the loader (`load_calls`: the same extractors, cached) and kept for the run. Only the
        callers' searches see them: what the module defines and what other queries read of it
        stay those of an unparsed file, so no answer depends on whether a search came first.
        Unknown (the module as it is, without numerics) when the loader cannot read it.
        `loops`: a search of the training-loop facts, for which a module whose loop facts were
        skipped (no backward, no clip: a `main.py` that builds a config and calls the project's
        trainer) has them read now too."""
        mod = self.module(name)
        if mod is None or mod.library:
            return mod
        names_only = _names_only(mod.facts)
        skipped = loops and not names_only and getattr(mod.facts.training, "skipped", False) and \
            mod.facts.source is not None
        if not names_only and not skipped:
            return mod
        memo = self._calling_loops if skipped else self._calling
        found = memo.get(name)
        if found is None:
            read = getattr(self.loader, "load_calls", None)
            calls = read(mod.facts, name) if read is not None else None
            found = mod
            if calls is not None and calls.numerics is not None:
                found = replace(mod, facts=replace(mod.facts, training=calls.training) if skipped else
                                replace(mod.facts, numerics=calls.numerics, training=calls.training))
            memo[name] = found
        return found

    def _with_models(self, mod: Module) -> Module:
        """`mod`, with its networks and class summaries read now when it is a library module
        whose models were not read yet (only its names were, to resolve re-exports)."""
        if mod.library and not mod.models_read:
            mod.models_read = True
            read = getattr(self.loader, "library_facts", None)
            facts = read(mod.name) if read is not None else None
            if facts is not None:
                # only what models a network: a library's loops and numerics are not the user's
                mod.facts = FileFacts(path=facts.path, kind=facts.kind, networks=facts.networks,
                                      classes=facts.classes, symbols=mod.facts.symbols)
        return mod

    def module_of(self, facts: FileFacts) -> str:
        return self.by_path.get(facts.path, "")

    def scope(self, facts: FileFacts) -> "Scope":
        return Scope(self, self.module_of(facts))

    # -- resolution --------------------------------------------------------------------------------
    def resolve(self, module: str, text: str, _depth: int = 0) -> tuple[str, ...]:
        """The qualified names of the definitions `text` (a name or dotted name as written in
        `module`, or an import target such as 'models.gan.D' or '.gan.D') stands for; empty when
        it is not defined in the project. A conditional import gives several."""
        key = (module, text)
        if key in self._resolved:
            self._replay(("r", key))
            return self._resolved[key]
        self._resolved[key] = ()  # a cycle of re-exports resolves to nothing
        start = len(self.log)
        if _depth == 0:
            self._budget = MAX_GLOBAL_STEPS
        found = self._resolve(module, text, _depth)
        self._resolved[key] = found
        self._spans[("r", key)] = (start, len(self.log))
        return found

    def _resolve(self, module: str, text: str, depth: int) -> tuple[str, ...]:
        if depth > MAX_DEPTH:
            self._cuts += 1
        if not text or depth > MAX_DEPTH:
            return ()
        here = self.module(module) if module else None
        if here is None:
            return self._global(text, depth)
        if text.startswith("."):
            return self._global(absolute(here, text), depth)
        head, dot, rest = text.partition(".")
        if head in here.defined:  # a definition shadows an import of the same name
            return (f"{here.name}.{text}",)
        if head in here.imports:
            out: list[str] = []
            for target in here.imports[head]:
                out.extend(self._target(here, target + dot + rest, depth))
            return tuple(dict.fromkeys(out))
        return self._global(text, depth)

    def _target(self, here: Module, target: str, depth: int) -> tuple[str, ...]:
        """An import target of module `here`: relative to it, absolute, or (a script's
        `from utils import x`) a sibling module of its folder."""
        if target.startswith("."):
            return self._global(absolute(here, target), depth + 1)
        homes = _homes(here)
        first = _named_from_home(here)
        if first and (found := self._in_homes(homes, target, depth)):
            # the module's home (a script's folder, the folder above a package) is first on
            # Python's path when it runs
            return found
        found = self._global(target, depth + 1)
        if homes and not first and (not found or (not here.library and self._in_library(found))) and \
                (got := self._in_homes(homes, target, depth)):
            # a package named from its own top (as Python imports it): its name alone finds its
            # own modules, and its home is tried only for what that name does not reach (a
            # package below another folder whose modules the run does not check)
            return got
        if here.package and target.partition(".")[0] != here.name.partition(".")[0] and (
                not found or (not here.library and self._in_library(found))):
            # a script's sibling comes first on Python's path, before any installed library; an
            # import of the module's own top package (`import timm.layers` in timm/models/beit.py)
            # is that package, never a sibling `timm.models.timm` (tried, it grew a new name at
            # every `*` import it passed: timm.models.beit.beit.beit...)
            found = self._global(f"{here.package}.{target}", depth + 1) or found
        return found

    def _in_homes(self, homes: list[str], target: str, depth: int) -> tuple[str, ...]:
        """What the absolute import `target` is below the first of `homes` that holds it."""
        for home in homes:
            found = self._global(f"{home}.{target}", depth + 1)
            if found:
                return found
        return ()

    def _in_library(self, found: tuple[str, ...]) -> bool:
        """Whether a definition of `found` lies in a module read from an installed library."""
        for q in found:
            parts = q.split(".")
            for i in range(len(parts) - 1, 0, -1):
                name = ".".join(parts[:i])
                mod = self.modules.get(name)
                if mod is not None:
                    self.log.append(name)
                    if mod.library:
                        return True
                    break
        return False

    def _global(self, qualified: str, depth: int) -> tuple[str, ...]:
        """Resolve a fully qualified name: the longest prefix that is a module of the project,
        then the name in it (defined there, imported there, or reached by a `*` import)."""
        if depth > MAX_DEPTH or self._budget <= 0:
            self._cuts += 1
            return ()
        self._budget -= 1
        found = self._complete.get(qualified)
        if found is not None:
            self._replay(("c", qualified))
            return found
        key = (qualified, depth)
        found = self._globals.get(key)
        if found is None:
            self._globals[key] = _IN_PROGRESS  # a cycle back to this state resolves to nothing
            start, cuts = len(self.log), self._cuts
            found = self._global_uncached(qualified, depth)
            if self._budget <= 0:
                # cut short by the budget of the name being resolved: no answer to keep
                del self._globals[key]
                return found
            self._globals[key] = found
            self._spans[("g", key)] = (start, len(self.log))
            if self._cuts == cuts:
                self._complete[qualified] = found
                self._spans[("c", qualified)] = (start, len(self.log))
        elif found is _IN_PROGRESS:
            self._cuts += 1
            return ()
        else:
            self._replay(("g", key))
        return found

    def _global_uncached(self, qualified: str, depth: int) -> tuple[str, ...]:
        parts = qualified.split(".")
        for i in range(len(parts) - 1, 0, -1):
            mod = self.module(".".join(parts[:i]))
            if mod is None:
                continue
            name, tail = parts[i], ".".join(parts[i + 1:])
            suffix = "." + tail if tail else ""
            if name in mod.defined:
                return (f"{mod.name}.{name}{suffix}",)
            if name in mod.imports:
                out: list[str] = []
                for target in mod.imports[name]:
                    out.extend(self._target(mod, target + suffix, depth))
                return tuple(dict.fromkeys(out))
            for star in mod.star:
                homes = _homes(mod) if not star.startswith(".") else []
                first = _named_from_home(mod)
                found = self._in_homes(homes, f"{star}.{name}{suffix}", depth) if first else ()
                if not found:
                    found = self._global(f"{absolute(mod, star)}.{name}{suffix}", depth + 1)
                if not found and not first:
                    found = self._in_homes(homes, f"{star}.{name}{suffix}", depth)
                if found:
                    return found
            return ()
        return ()

    # -- what a definition is ----------------------------------------------------------------------
    def _split(self, qualified: str) -> tuple[Module | None, str]:
        mod, _, name = qualified.rpartition(".")
        return self.module(mod), name

    def class_summaries(self, qualified: str) -> list[ClassSummary]:
        mod, name = self._split(qualified)
        return [c for c in self._with_models(mod).facts.classes if c.name == name] if mod else []

    def networks(self, qualified: str) -> list["Network"]:
        mod, name = self._split(qualified)
        return [n for n in self._with_models(mod).facts.networks if n.name == name] if mod else []

    def lower(self, qualified: str, args: tuple, function: bool = False) -> "Network | None":
        """The IR of class `qualified` built with the arguments of a call in another file
        (ir.Extern.args), through the loader (which re-runs the class's file); once per run.
        `function`: `qualified` is a top-level function, and the IR is that of the module it
        returns for these arguments (None when it returns no module)."""
        try:
            key = (qualified, args, function)
            hash(key)
        except TypeError:
            return None
        if key not in self._lowered:
            start = len(self.log)
            mod, name = self._split(qualified)
            run = getattr(self.loader, "lower", None)
            if mod is None or not run:
                self._lowered[key] = None
            elif function:
                self._lowered[key] = run(mod.name, mod.facts.path, name, args, function=True)
            else:
                self._lowered[key] = run(mod.name, mod.facts.path, name, args)
            self._spans[("l", key)] = (start, len(self.log))
        else:
            self._replay(("l", key))
        return self._lowered[key]

    def is_function(self, qualified: str) -> bool:
        """Whether `qualified` is a name its module binds at the top level other than a class (a
        `def`, or an assignment the loader's re-run will tell apart)."""
        mod, name = self._split(qualified)
        sym = mod.facts.symbols if mod is not None else None
        return sym is not None and name in sym.defined and name not in sym.classes

    def numclass(self, qualified: str) -> "NumClass | None":
        mod, name = self._split(qualified)
        if mod is None or mod.facts.numerics is None:
            return None
        return next((c for c in mod.facts.numerics.classes if c.name == name), None)

    def mentioning(self, word: str, whole: bool = False) -> tuple[str, ...]:
        """Modules of the project whose text holds `word`: the loader's scan of every project file
        (once per word), so the answer does not depend on which files are in the run; without a
        loader, the modules of the run whose text holds it. `whole`: only where it is not part of
        a longer identifier (`f1` is not in `conf1`), for a search of an identifier's uses."""
        self.log.append(("w", word))
        found = self._mentions.get((word, whole))
        if found is None:
            if self.loader is not None:
                found = tuple(sorted(set(self.loader.modules_mentioning(word, whole))))
            else:
                found = tuple(sorted(m.name for m in self.modules.values()
                                     if holds_word((m.facts.source or "").encode(), word.encode(), whole)))
            self._mentions[(word, whole)] = found
        return found

    def gradchecked(self) -> frozenset[str]:
        """Qualified names of the autograd Functions passed to torch.autograd.gradcheck anywhere in
        the project (directly, as `X.apply`, or through an alias or wrapper of `X.apply`)."""
        if self._gradchecked is not None:
            self._replay(("gradchecked",))
            return self._gradchecked
        start = len(self.log)
        names: set[str] = set()
        candidates = {m.name for m in self.modules.values()
                      if m.facts.numerics is not None and m.facts.numerics.gradchecked}
        if self.loader is not None:
            self.log.append(("w", "gradcheck"))
            candidates.update(self.loader.modules_mentioning("gradcheck"))
            # checked files not added yet (results reused) would be among the modules above
            candidates.update(getattr(self.loader, "checked_mentioning", lambda _w: ())("gradcheck"))
            # and so would the checked files whose facts are still being extracted
            candidates.update(getattr(self.loader, "pending_mentioning", lambda _w, _s: ())("gradcheck", self.modules))
        for name in sorted(candidates):
            mod = self.module(name)
            if mod is None or mod.facts.numerics is None:
                continue
            for text in sorted(mod.facts.numerics.gradchecked):
                for q in self.resolve(name, text):
                    names.add(q)
                    owner, local = self._split(q)
                    if owner is None or owner.facts.numerics is None:
                        continue
                    for alias, cls in owner.facts.numerics.apply_aliases:
                        if alias == local:
                            names.update(self.resolve(owner.name, cls))
        self._gradchecked = frozenset(names)
        self._spans[("gradchecked",)] = (start, len(self.log))
        return self._gradchecked

    # -- what a file's lookups read (the result cache) ---------------------------------------------
    def start_file(self) -> int:
        """Where the lookups of the next file's rules start in `log`. Each file's lookups get the
        budgets of their own (MAX_LOADED, the loader's library budget), so that what a file's
        findings resolve does not depend on the files checked before it in the run; when a budget
        cut the last file's lookups short, the answers remembered since may be cut ones, and are
        forgotten (rare: real files stay far inside the budgets)."""
        self._loaded = 0
        start_file = getattr(self.loader, "start_file", None)
        if start_file is not None:
            start_file()
        if self._cut_short:
            self._cut_short = False
            self._resolved.clear()
            self._globals.clear()
            self._complete.clear()
            self._lowered.clear()
            self._calling.clear()
            self._calling_loops.clear()
            self._gradchecked = None
            self.memos = _Memos(self)
        self._file_start = len(self.log)
        return self._file_start

    def _replay(self, key: tuple) -> None:
        """An answer taken from a memo: what computing it read counts as read now."""
        span = self._spans.get(key)
        log = self.log
        if span is not None and span[0] < span[1] and (not log or log[-1] != span):
            log.append(span)

    def read_since(self, start: int) -> tuple[frozenset[str], frozenset[str]]:
        """(module names looked up, words scanned for) by the lookups logged from `start` on, with
        what the memo answers among them read when they were computed."""
        log = self.log
        if start >= len(log):
            return _NOTHING, _NOTHING  # (most files' rules look nothing up: an ONNX model's never)
        modules: set[str] = set()
        words: set[str] = set()
        seen: set[tuple[int, int]] = set()
        todo = [(start, len(log))]
        while todo:
            a, b = todo.pop()
            for item in log[a:b]:
                if type(item) is str:
                    modules.add(item)
                elif type(item[0]) is int:
                    if item not in seen:
                        seen.add(item)
                        todo.append(item)
                else:
                    words.add(item[1])
        modules.discard("")
        return frozenset(modules), frozenset(words)


def _names_only(facts: FileFacts) -> bool:
    """Whether a Python file's facts hold its names and nothing its code does, the extraction
    having found no torch in it (not a file over budget, unreadable or that failed)."""
    return (facts.kind == "python" and facts.numerics is None and facts.training is None
            and facts.symbols is not None and facts.source is not None and not facts.networks
            and facts.skipped is None and not facts.input_errors and facts.internal_error is None)


class _Memos(dict):
    """ProjectIndex.memos: each query's memo is a _Memo (made by setdefault or set here)."""

    def __init__(self, index: ProjectIndex) -> None:
        super().__init__()
        self.index = index

    def setdefault(self, name, default=None):  # type: ignore[override]
        if not dict.__contains__(self, name):
            self[name] = default if default is not None else {}
        return dict.__getitem__(self, name)

    def __setitem__(self, name, value) -> None:
        memo = _Memo(self.index, name)
        if value:
            dict.update(memo, value)
        dict.__setitem__(self, name, memo)


class _Memo(dict):
    """One query's answers, by key. An answer computed between a key's first miss and its being
    set here read what the log holds in between; taking it from here later counts as reading
    that again (ProjectIndex._replay). A computation never spans two files: a miss noted before
    the current file started is not where this one began."""

    def __init__(self, index: ProjectIndex, name: str) -> None:
        super().__init__()
        self.index = index
        self.name = name
        self.starts: dict = {}

    def _missed(self, key) -> None:
        log_at, file_at = len(self.index.log), self.index._file_start
        if self.starts.get(key, -1) < file_at:
            self.starts[key] = log_at

    def __contains__(self, key) -> bool:
        if dict.__contains__(self, key):
            self.index._replay(("memo", self.name, key))
            return True
        self._missed(key)
        return False

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        self.index._replay(("memo", self.name, key))
        return value

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            return self[key]
        self._missed(key)
        return default

    def setdefault(self, key, default=None):
        if dict.__contains__(self, key):
            return self[key]
        self[key] = default
        return default

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __setitem__(self, key, value) -> None:
        dict.__setitem__(self, key, value)
        # set without a miss noted in this file: it may have read anything this file read so far
        start = max(self.starts.get(key, -1), self.index._file_start)
        end = len(self.index.log)
        self.index._spans[("memo", self.name, key)] = (start, end)


@dataclass(frozen=True)
class Scope:
    """The project index as one module sees it: what rules receive as `ctx.index`."""

    index: ProjectIndex
    module: str

    def resolve(self, text: str) -> tuple[str, ...]:
        return self.index.resolve(self.module, text)

    def at(self, qualified: str) -> "Scope":
        """The scope of the module defining `qualified` (where its own names resolve)."""
        return Scope(self.index, qualified.rpartition(".")[0])

    def lookup(self, text: str) -> list[ClassSummary]:
        """Summaries of the class(es) `text` names here."""
        return [c for q in self.resolve(text) for c in self.index.class_summaries(q)]

    def networks(self, text: str) -> list["Network"]:
        return [n for q in self.resolve(text) for n in self.index.networks(q)]

    def is_gradchecked(self, class_name: str) -> bool:
        """Whether the class `class_name` of this module is gradchecked anywhere in the project."""
        return any(q in self.index.gradchecked() for q in self.resolve(class_name))


def holds_word(text: bytes, word: bytes, whole: bool) -> bool:
    """Whether `text` holds `word`; with `whole`, somewhere not inside a longer identifier (an
    ASCII letter, digit or underscore next to it: a non-ASCII neighbour may be part of one too,
    and is taken as holding it, which only costs a module read)."""
    if word not in text:
        return False
    if not whole:
        return True
    return re.search(rb"(?<![A-Za-z0-9_])" + re.escape(word) + rb"(?![A-Za-z0-9_])", text) is not None
