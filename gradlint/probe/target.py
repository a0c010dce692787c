"""Load what `gradlint probe` runs: the user's model factory, its inputs and its loss.

Everything here imports and runs the user's code, with the user's rights. Failures become a
`ProbeError` whose message says what went wrong and whose traceback keeps only the user's frames.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

_INTERNAL_DIRS: tuple[str, ...] = ()


class ProbeError(Exception):
    """The target could not be loaded or run (exit 2). `user_traceback` is already trimmed."""

    def __init__(self, message: str, user_traceback: str | None = None):
        super().__init__(message)
        self.message = message
        self.user_traceback = user_traceback


def _internal_dirs() -> tuple[str, ...]:
    global _INTERNAL_DIRS
    if not _INTERNAL_DIRS:
        import click
        import torch

        import gradlint

        dirs = [os.path.dirname(m.__file__ or "") for m in (torch, gradlint, click)]
        dirs.append(os.path.dirname(importlib.__file__ or ""))
        _INTERNAL_DIRS = tuple(os.path.realpath(d) + os.sep for d in dirs if d)
    return _INTERNAL_DIRS


def user_traceback(exc: BaseException) -> str:
    """The traceback of `exc` with gradlint's, torch's, click's and importlib's frames removed:
    the user should see where *their* code failed, once, not our call stack around it."""
    internal = _internal_dirs()
    frames = [
        fs for fs in traceback.extract_tb(exc.__traceback__)
        if not fs.filename.startswith("<frozen")
        and not os.path.realpath(fs.filename).startswith(internal)
    ]
    lines = ["Traceback (most recent call last, your code only):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def raised_by_gradlint(exc: BaseException) -> bool:
    """Whether the exception was raised in gradlint's own code (its innermost frame: a hook, the
    loss, the check; torch's C functions have no frame of their own): then it is our bug, and
    must not be shown as the user's. Errors raised inside torch's Python code or the user's are
    the model's."""
    import gradlint

    own = os.path.realpath(os.path.dirname(gradlint.__file__ or "")) + os.sep
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and os.path.realpath(frames[-1].filename).startswith(own)


def fail_from(exc: BaseException, what: str) -> ProbeError:
    if raised_by_gradlint(exc):
        full = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
        return ProbeError(f"internal error in gradlint while {what.replace(' failed', '')} (not in your code; "
                          f"please report it): {type(exc).__name__}: {exc}", full)
    return ProbeError(f"{what}: {type(exc).__name__}: {exc}", user_traceback(exc))


@dataclass(frozen=True)
class Mismatch:
    """Why a call does not fit the function's signature: `reason` names the function and what is
    wrong; `missing` holds the required parameters left without a value (what a hint can name)."""

    reason: str
    missing: tuple[str, ...] = ()


def call_mismatch(fn: Any, name: str, args: tuple = (), kwargs: dict | None = None) -> Mismatch | None:
    """Whether fn(*args, **kwargs) fits fn's signature, checked with Signature.bind and without
    calling it: a TypeError raised by the call itself is the user's call that does not fit, one
    raised inside is the user's code failing, and once raised the two look alike.
    None when it fits, or when there is no signature to read (a C function): the call says."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    kwargs = kwargs or {}
    try:
        sig.bind(*args, **kwargs)
        return None
    except TypeError as exc:
        reason = str(exc)
    try:
        given = sig.bind_partial(*args, **kwargs).arguments
    except TypeError:
        given = None
    if given is not None:
        missing = tuple(p.name for p in sig.parameters.values()
                        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                        and p.name not in given)
        if missing:
            names = ", ".join(repr(m) for m in missing)
            return Mismatch(f"{name}() missing required argument{'s' if len(missing) > 1 else ''} {names}", missing)
    return Mismatch(f"{name}(): {reason}; its signature is {name}{sig}")


@dataclass
class Target:
    """A loaded target: the module object, its file (for the static pass), the model."""

    spec: str
    module: ModuleType
    path: Path
    factory_name: str
    factory: Any
    model: Any


_SPEC = re.compile(r":([A-Za-z_][\w.]*)(\(.*\))?$", re.S)


def split_spec(spec: str) -> tuple[str, str]:
    """'path/to/file.py:fn' or 'package.module:fn' -> (module part, attribute). A Windows drive
    letter (C:\\x.py:fn) keeps its colon. Arguments after the name ('fn(depth=12)') are
    parsed by `factory_call`."""
    head, attr, _ = _parts(spec)
    return head, attr


def _parts(spec: str) -> tuple[str, str, str]:
    m = _SPEC.search(spec)
    head = spec[: m.start()] if m else ""
    if not m or not head or not m.group(1).replace(".", "_").isidentifier():
        raise ProbeError(f"{spec!r}: expected path/to/file.py:name or package.module:name, optionally "
                         "with literal arguments: file.py:make_model(depth=12)")
    return head, m.group(1), m.group(2) or ""


def factory_call(spec: str) -> tuple[tuple, dict]:
    """The literal arguments of 'file.py:make_model(12, act="gelu")': read with
    ast.literal_eval, one argument at a time, never evaluated as code."""
    _, attr, call = _parts(spec)
    if not call:
        return (), {}
    try:
        node = ast.parse(f"f{call}", mode="eval").body
    except SyntaxError as exc:
        raise ProbeError(f"{spec!r}: the arguments {call} do not parse: {exc.msg}") from None
    if not isinstance(node, ast.Call):
        raise ProbeError(f"{spec!r}: expected name(arguments)")
    try:
        args = tuple(ast.literal_eval(a) for a in node.args)
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError("**")
            kwargs[kw.arg] = ast.literal_eval(kw.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ProbeError(f"{spec!r}: factory arguments must be Python literals (numbers, strings, "
                         "tuples, lists, dicts, True/False/None) given by position or name") from None
    return args, kwargs


def check_spec(spec: str, option: str | None = None) -> None:
    """Refuse, before anything is imported, a TARGET (option None) or an --inputs/--loss spec that
    cannot name a function: its syntax, the target's literal arguments (an --inputs or --loss
    function takes none), a file that is not a .py file or does not exist, a module that cannot
    be found. Importing runs the user's module: a typo must not run it first."""
    if option is not None and ":" not in spec:
        if not all(p.isidentifier() for p in spec.split(".")):
            raise ProbeError(f"{option} {spec}: expected a function of the target's file, file.py:fn or "
                             "package.module:fn")
        return  # a function of the target's file: looked up once the target is imported
    head, _, call = _parts(spec)
    if option is None:
        factory_call(spec)
    elif call:
        called = "with no arguments" if option == "--inputs" else "as fn(output) or fn(output, inputs)"
        raise ProbeError(f"{option} {spec}: takes no arguments here (the function is called {called})")
    problem = _head_problem(head)
    if problem is not None:
        raise ProbeError(problem if option is None else f"{option} {spec}: {problem}")


def names_a_file(head: str) -> bool:
    """Whether the module part of a spec names a file (else a module name)."""
    return head.endswith(".py") or os.sep in head or "/" in head or os.path.isfile(head)


def _head_problem(head: str) -> str | None:
    """What is wrong with the module part of a spec, found without importing anything: a file
    is looked at, a module name is looked up as `import` would, its first name only (finding
    `pkg.mod` would run pkg/__init__.py)."""
    if names_a_file(head):
        path = Path(head)
        if not path.exists():
            return f"{head}: no such file"
        if path.suffix != ".py" or not path.is_file():
            return f"{head}: not a .py file (expected path/to/file.py:name or package.module:name)"
        return None
    parts = head.split(".")
    if not all(p.isidentifier() for p in parts):
        return f"{head}: neither a .py file nor a module name"
    found = _find_top_level(parts[0])
    if found is _UNKNOWN:
        return None
    if found is None:
        if len(parts) == 1:
            return f"{head}: no such module (is it installed, or on PYTHONPATH?)"
        return f"{head}: no such module (is {parts[0]} installed, or on PYTHONPATH?) and no such file"
    if len(parts) > 1 and found.submodule_search_locations is None:
        where = f" ({_shown(found.origin)})" if found.origin and os.path.isabs(found.origin) else ""
        return f"{head}: no such file, and {parts[0]} is a module{where}, not a package"
    return None


_UNKNOWN: Any = object()


def _find_top_level(name: str) -> Any:
    """importlib's spec for a top-level module, with the current folder on sys.path as
    import_spec_module puts it; _UNKNOWN when the finders cannot say."""
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return _UNKNOWN
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def _shown(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return path if rel.startswith("..") else rel


def import_file(path: Path) -> ModuleType:
    """Import a .py file as a module, with its folder on sys.path so its sibling imports work."""
    path = path.resolve()
    if not path.is_file():
        raise ProbeError(f"{path}: no such file")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem
    for module in list(sys.modules.values()):
        # Already imported (the target file named again by --inputs or --loss): run it once.
        if os.path.realpath(getattr(module, "__file__", None) or "") == str(path):
            return module
    if not _importable_as(name, path):
        # Another module owns the name (a stdlib or installed module, one already imported):
        # registering the user's file under it would shadow that module for everyone.
        name = f"gradlint_probe_target_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ProbeError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, as a normal import does: dataclasses and pickling look it up.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # SystemExit from a script's top level is a failure too
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise fail_from(exc, f"importing {path} failed") from None
    return module


def _importable_as(name: str, path: Path) -> bool:
    """True when `import name` would load exactly this file (so the user's own sibling imports
    of it get the same module object)."""
    if not name.isidentifier():
        return False
    existing = sys.modules.get(name)
    if existing is not None:
        return os.path.realpath(getattr(existing, "__file__", "") or "") == str(path)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None and os.path.realpath(spec.origin) == str(path)


def import_spec_module(head: str) -> ModuleType:
    if names_a_file(head):
        return import_file(Path(head))
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(head)
    except ModuleNotFoundError as exc:
        if exc.name and head.startswith(exc.name):
            raise ProbeError(f"{head}: no such module (is it installed, or on PYTHONPATH?)") from None
        raise fail_from(exc, f"importing {head} failed") from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise fail_from(exc, f"importing {head} failed") from None


def _attr(module: ModuleType, dotted: str, spec: str) -> Any:
    obj: Any = module
    for part in dotted.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ProbeError(f"{spec}: {module.__name__} has no attribute {dotted!r}") from None
    return obj


def load_target(spec: str) -> Target:
    """Import the target's module and build the model (factory() or Class())."""
    import torch.nn as nn

    head, attr = split_spec(spec)
    module = import_spec_module(head)
    factory = _attr(module, attr, spec)
    path = Path(getattr(module, "__file__", "") or head)
    if isinstance(factory, nn.Module):
        raise ProbeError(f"{spec}: is a module instance; give a factory function or the class")
    if not callable(factory):
        raise ProbeError(f"{spec}: {attr} is not callable (expected a factory or an nn.Module class)")
    args, kwargs = factory_call(spec)
    name = attr.split(".")[-1]
    mismatch = call_mismatch(factory, name, args, kwargs)
    if mismatch is not None:
        hint = ""
        if mismatch.missing:
            given = _parts(spec)[2][1:-1].strip()
            call = ", ".join([given] * bool(given) + [f"{m}=..." for m in mismatch.missing])
            hint = f"; give {'it' if len(mismatch.missing) == 1 else 'them'} as {head}:{attr}({call})"
        raise ProbeError(f"{spec}: {mismatch.reason}{hint}")
    model = call_user(factory, *args, what=f"calling {attr}() failed", kwargs=kwargs)
    if not isinstance(model, nn.Module):
        raise ProbeError(f"{spec}: {attr}() returned {type(model).__name__}, not an nn.Module")
    return Target(spec=spec, module=module, path=path.resolve(), factory_name=attr, factory=factory, model=model)


def load_function(spec: str, what: str, default_module: ModuleType | None = None) -> Callable[..., Any]:
    """--inputs / --loss: 'file.py:fn' or 'package.module:fn'; a bare 'fn' is looked up in the target's file."""
    if ":" not in spec and default_module is not None:
        fn = _attr(default_module, spec, spec)
    else:
        head, attr = split_spec(spec)
        fn = _attr(import_spec_module(head), attr, spec)
    if not callable(fn):
        raise ProbeError(f"{what} {spec!r} is not callable")
    return fn


def positional_arity(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments fn accepts (None: any number)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    n = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


def call_user(fn: Callable[..., Any], *args: Any, what: str, kwargs: dict | None = None) -> Any:
    """fn(*args, **kwargs), its failures worded as `what` failing (the caller has checked the
    call against fn's signature where it can be read). The keywords come as a dict: a factory's
    own `what=` must not meet ours."""
    try:
        return fn(*args, **(kwargs or {}))
    except ProbeError:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
            # Raised by the call itself, before any frame of fn ran: a C function, or a signature
            # inspect could not read, refusing the user's arguments. Not a bug of ours, and no
            # frame of theirs to show.
            raise ProbeError(f"{what}: {type(exc).__name__}: {exc}") from None
        raise fail_from(exc, what) from None


def definition_line(obj: Any) -> int | None:
    """The line where a class or function is defined, when it can be found."""
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return None


def defined_in(obj: Any, path: Path) -> bool:
    try:
        src = inspect.getsourcefile(obj)
    except TypeError:
        return False
    return bool(src) and os.path.realpath(src) == os.path.realpath(path)
