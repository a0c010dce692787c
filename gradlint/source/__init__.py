"""The libcst front-end: one parse per file, then model IR, training-loop facts and numerics facts."""

from __future__ import annotations

import ast
import dataclasses
import functools
import gc
import io
import re
import tokenize
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gradlint.findings import InputError, SourceSpan
from gradlint.source import budget
from gradlint.text import split_lines

if TYPE_CHECKING:
    import libcst as cst

    from gradlint.source.engine.positions import LazyPositions
    from gradlint.source.names import ImportTable

# libcst (about 0.15 s, a fifth of a one-file run) is imported by the first parse, not with this
# package: a warm run whose results all come from the cache reaches the package only for the
# project index (source/index.py) and parses nothing.

# Files that mention none of these cannot hold anything our rules look for; skipping them before
# the parse is the cheapest speed-up a libcst linter has (TorchFix does the same). A tensor
# helper need not import torch (`def unit(v): return v / v.norm()`): a tensor's norm is a word,
# and so is freezing what another file's model returns (`model.get_encoder().requires_grad = False`).
_SNIFF = re.compile(rb"torch|\bnn\b|onnx|backward|accelerat|lightning|autograd|from_pretrained|\.norm\(|"
                    rb"\.requires_grad\b")
# When a caller hands a path without its bytes: the default of `max-file-size`.
MAX_SOURCE_BYTES = 2 << 20


@dataclass
class SourceFile:
    """One parsed file, shared by every extractor: parse once, visit as few times as possible."""

    path: str
    text: str
    module: cst.Module
    positions: LazyPositions
    imports: ImportTable
    _shifts: dict[int, int] | None = field(default=None, repr=False, compare=False)
    # the top-level classes and functions whose bodies libcst parsed; None: all (`parsed`)
    units: frozenset[str] | None = field(default=None, repr=False, compare=False)

    def span(self, node: cst.CSTNode, within: cst.FunctionDef | None = None) -> SourceSpan:
        """Where `node` is in the file (1-based columns). `within`: a function that holds it, to
        resolve that function alone rather than the whole top-level statement around it."""
        if within is not None:
            found = self.positions.span_in(within, node)
            if found is not None:
                return found
        rng = self.positions.get(node)
        if rng is None:
            return SourceSpan.point(1, 1)
        # libcst columns are 0-based; ours are 1-based like ruff's.
        shifts = self._column_shifts()
        return SourceSpan(rng.start.line, rng.start.column + 1 + shifts.get(rng.start.line, 0),
                          rng.end.line, rng.end.column + 1 + shifts.get(rng.end.line, 0))

    def _column_shifts(self) -> dict[int, int]:
        """Line -> what to add to libcst's columns on it: the module was parsed without the
        form feeds of statements' indentation (parse_module); only leading whitespace differs."""
        shifts = self._shifts
        if shifts is None:
            shifts = {}
            if "\f" in self.text:
                for number, (mine, theirs) in enumerate(zip(split_lines(self.text), split_lines(self.module.code)), 1):
                    if mine != theirs:
                        shifts[number] = _lead(mine) - _lead(theirs)
            self._shifts = shifts
        return shifts

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)


def _formfeed_indents_dropped(text: str) -> str:
    """The text with what precedes the last form feed of each statement's indentation removed
    (what CPython ignores). Lines inside brackets or strings keep their text: only the first
    line of each logical line changes."""
    if "\f" not in text:
        return text
    starts: set[int] = set()
    fresh = True
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text, newline=None).readline):
            if tok.type == tokenize.NEWLINE:
                fresh = True
            elif tok.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.COMMENT,
                                  tokenize.ENDMARKER) and fresh:
                starts.add(tok.start[0])
                fresh = False
    except (tokenize.TokenError, SyntaxError):
        return text
    lines = split_lines(text, keepends=True)
    for number in sorted(n for n in starts if n <= len(lines)):
        line = lines[number - 1]
        lead = line[:_lead(line)]
        if "\f" in lead:
            lines[number - 1] = lead.rsplit("\f", 1)[1] + line[len(lead):]
    return "".join(lines)


def _lead(line: str) -> int:
    return len(line) - len(line.lstrip(" \t\f"))


def decode(data: bytes) -> str:
    """Decode as Python does: a PEP 263 cookie or a BOM, else UTF-8."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise
    except (UnicodeError, ValueError) as exc:
        # a codec that is no text encoding of source (`undefined`, `punycode`): Python refuses
        # the file too; one error for the caller to report, not a traceback
        raise LookupError(f"the declared encoding {encoding!r} cannot read this file ({exc})") from None


def decode_error(data: bytes, exc: Exception) -> InputError:
    """The input error of bytes that `decode` refused, at the place that stops it: the first byte
    its encoding cannot read (a UnicodeDecodeError's offset; tokenize's "invalid or missing
    encoding declaration" is a first or second line that is not UTF-8), or the cookie naming an
    encoding Python does not know."""
    start, encoding, reason = None, "utf-8", str(exc)
    if isinstance(exc, UnicodeDecodeError):
        start, encoding, reason = exc.start, exc.encoding, exc.reason
    elif isinstance(exc, SyntaxError):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad:
            start, reason = bad.start, bad.reason
    if start is None or not 0 <= start < len(data):
        cookie = re.search(rb"^[ \t\f]*#.*?coding[:=]", data[:2048], re.MULTILINE)
        line = data.count(b"\n", 0, cookie.start()) + 1 if cookie else 1
        return InputError("unreadable_source", f"cannot decode file: {reason}", SourceSpan(line, 1, line, 1))
    line = data.count(b"\n", 0, start) + 1
    head = data[data.rfind(b"\n", 0, start) + 1:start]
    try:
        column = len(head.decode(encoding, "replace")) + 1
    except (LookupError, UnicodeError, ValueError):  # (a codec whose error names no real encoding)
        column = len(head.decode("utf-8", "replace")) + 1
    return InputError("unreadable_source",
                      f"cannot decode file: byte 0x{data[start]:02x} is not valid {encoding} ({reason}); "
                      f"save the file as UTF-8 or declare its encoding (`# -*- coding: latin-1 -*-`)",
                      SourceSpan(line, column, line, column + 1))


def parse_module(text: str) -> cst.Module:
    """libcst's parse of the text without form feeds in statements' indentation.

    CPython counts a line's indentation again after a form feed. libcst does not: it refuses
    some such lines, drops or repeats the form feed in the code it regenerates, and counts
    columns on those lines one short. Without them its positions are right on every line but
    in the leading whitespace it lost, which SourceFile.span adds back.
    """
    import libcst as cst

    text = _formfeed_indents_dropped(text)
    native = _native_parse()
    if native is not None:
        try:
            module = _parse_without_imports(native, text)
        except KeyError:  # a module the parser imports is not imported yet: libcst's own way
            pass
        else:
            if type(module) is cst.Module:
                return module
    return cst.parse_module(text)


# libcst's native parser builds each node by looking `libcst` up with `PyImport_Import` (100 000
# times for timm's vision_transformer.py), which calls `__import__` from the `__builtins__` of the
# calling frame's globals, throws its result away and takes the module from `sys.modules`: 2 000
# instructions a node, 7% of a one-file run, to find a module that is there. The parser is called
# here from a function whose globals hold builtins with an `__import__` that does nothing
# (`"".format` accepts any arguments and returns ""); `libcst` itself is imported before. Only
# that frame sees them: the nodes' own `__init__`s and every other thread import as ever. Should
# a later libcst import a module not imported yet, `PyImport_Import` raises KeyError and the text
# is parsed the usual way.
def _parse_in(parse, text):
    return parse(text, encoding="utf-8")  # what libcst.parse_module does with a str


_parse_without_imports = type(_parse_in)(_parse_in.__code__, {"__builtins__": {"__import__": "".format}},
                                         "_parse_without_imports")


@functools.cache
def _native_parse():
    """libcst's native `parse_module` (what `libcst.parse_module` calls for a str), or None when
    this libcst has none."""
    try:
        from libcst import native
    except ImportError:
        return None
    return getattr(native, "parse_module", None)


# libcst validates every node it builds (CSTNode.__post_init__ -> _validate: 1.4 M whitespace
# regexes over timm + torchvision), the nodes of its own parser too, which its grammar already
# makes valid ("PERF: ... avoid validating the tree when parsing a file", libcst/_nodes/base.py).
# parse() builds its tree without it: 15% of the parse. Only while __post_init__ does nothing but
# validate (a libcst that does more there keeps it); fix.reparses, which judges a fixed text,
# keeps it too.
@functools.cache
def _post_init() -> tuple[object, bool]:
    """libcst's own CSTNode.__post_init__, and whether it does nothing but validate (read once,
    before parse_trusted first replaces it)."""
    import libcst as cst

    post_init = cst.CSTNode.__post_init__
    return post_init, getattr(post_init, "__code__", None) is not None and post_init.__code__.co_names == ("_validate",)


def _built(self: cst.CSTNode) -> None:
    """CSTNode.__post_init__ while parse() parses: no validation of the parser's own nodes."""


# The classes of most nodes a parse builds (93% of the 100 000 of timm's vision_transformer.py;
# whitespace alone is 45%; the last eleven, blocks, `if`s, comparisons and subscripts, are most
# of the others in transformers' modeling_utils.py, where they cost more than their compile). Their dataclass __init__ stores each field through
# object.__setattr__ (they are frozen) and then calls __post_init__; while parse_trusted parses,
# they get an __init__ that stores the same fields through their slots directly and skips the
# no-op: 7% of the parse.
_FREQUENT = ("SimpleWhitespace", "Name", "Newline", "Comma", "Arg", "TrailingWhitespace", "AssignEqual",
             "ParenthesizedWhitespace", "Integer", "SimpleString", "Call", "SimpleStatementLine", "Dot",
             "Attribute", "Element", "AssignTarget", "Assign", "EmptyLine", "Param", "Annotation",
             "IndentedBlock", "Comment", "If", "ComparisonTarget", "Comparison", "Expr", "LeftSquareBracket",
             "RightSquareBracket", "SubscriptElement", "Index", "Subscript")
_PLAIN_INITS: list[tuple[type, object, object]] = []  # (class, its __init__, the one while parsing)


def _slot_fields(cls: type):
    """(name, slot setter, default, default factory) of each field of the libcst node dataclass
    `cls`, when its dataclass __init__ does nothing else than store them (then __post_init__);
    None when `cls` is not such a class (another libcst keeps its own)."""
    import libcst as cst

    if not dataclasses.is_dataclass(cls) or "__post_init__" in {k for c in cls.__mro__[:-1] if c is not cst.CSTNode
                                                                for k in vars(c)}:
        return None
    fields = []
    for f in dataclasses.fields(cls):
        slot = getattr(cls, f.name, None)
        if not f.init or type(slot).__name__ != "member_descriptor" or not f.name.isidentifier():
            return None
        fields.append((f.name, slot.__set__, f.default, f.default_factory))
    return fields


def _plain_init(cls: type):
    """An __init__ that stores the fields of the dataclass `cls` as its own __init__ does (same
    parameters, defaults and default factories) but straight into its slots, without
    __post_init__; None when `cls` is not such a class (another libcst keeps its own)."""
    fields = _slot_fields(cls)
    if fields is None:
        return None
    params, body = [], []
    names: dict[str, object] = {"MISSING": dataclasses.MISSING}
    for name, setter, default, factory in fields:
        if default is not dataclasses.MISSING:
            names["default_" + name] = default
            params.append(f"{name}=default_{name}")
        elif factory is not dataclasses.MISSING:
            names["factory_" + name] = factory
            params.append(f"{name}=MISSING")
            body.append(f"    if {name} is MISSING: {name} = factory_{name}()")
        elif params and "=" in params[-1]:
            return None
        else:
            params.append(name)
        names["set_" + name] = setter
        body.append(f"    set_{name}(self, {name})")
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body or ["    pass"]) + "\n", names)
    return names["__init__"]


def _keyword_init(cls: type):
    """For the other node classes the parser builds (If, FunctionDef, Subscript...): an __init__
    made without compiling anything that stores the fields given by keyword, as the parser gives
    them, and the defaults of the others into the slots, without __post_init__; any other call
    goes to the class's own __init__ (which raises its TypeError). Each class's generated
    __init__ is otherwise compiled on its first call (gradlint/deferred.py): about 90 compiles,
    3% of a one-file run. None when `cls` is not such a class."""
    fields = _slot_fields(cls)
    if fields is None:
        return None
    own = vars(cls)["__init__"]
    setters = {name: setter for name, setter, _, _ in fields}
    count = len(fields)
    missing = dataclasses.MISSING

    def __init__(self, *args, **kwargs):
        if args:
            return own(self, *args, **kwargs)
        try:
            for name, value in kwargs.items():
                setters[name](self, value)
        except KeyError:  # not a field
            return own(self, **kwargs)
        if len(kwargs) < count:
            for name, setter, default, factory in fields:
                if name not in kwargs:
                    if default is not missing:
                        setter(self, default)
                    elif factory is not missing:
                        setter(self, factory())
                    else:  # a field without a default not given
                        return own(self, **kwargs)
        return None

    return __init__


def _plain_inits() -> list[tuple[type, object, object]]:
    """(class, its __init__, the __init__ it has while parse_trusted parses) of every node class
    of the `libcst` namespace, where the parser finds them: a compiled plain one for the
    frequent classes, a keyword one for the others."""
    if not _PLAIN_INITS:
        import libcst as cst

        seen: set[type] = set()
        # (CSTNode is an ABC: issubclass of each of the ~500 other names of the namespace walked
        # all its subclasses; libcst registers no virtual subclass, so its nodes are those whose
        # MRO holds it)
        for name, cls in sorted(vars(cst).items()):
            if (not isinstance(cls, type) or cst.CSTNode not in cls.__mro__ or "__init__" not in vars(cls)
                    or cls in seen):
                continue
            seen.add(cls)
            plain = _plain_init(cls) if name in _FREQUENT else _keyword_init(cls)
            if plain is not None:
                _PLAIN_INITS.append((cls, vars(cls)["__init__"], plain))
        _PLAIN_INITS.append((object, None, None))  # made once, even when no class qualified
    return _PLAIN_INITS


def parse_trusted(text: str) -> cst.Module:
    """parse_module without validating the parser's own nodes (above)."""
    import libcst as cst

    post_init, only_validates = _post_init()
    if not only_validates:
        return parse_module(text)
    plain = [one for one in _plain_inits() if one[2] is not None]
    cst.CSTNode.__post_init__ = _built
    for cls, _, init in plain:
        cls.__init__ = init
    try:
        return parse_module(text)
    finally:
        cst.CSTNode.__post_init__ = post_init
        for cls, init, _ in plain:
            cls.__init__ = init


def parse(path: str, text: str, tree: ast.Module | None = None, *, parse_text: str | None = None) -> SourceFile:
    """The SourceFile of `text`; `tree`: CPython's tree of what libcst parses, which is
    `parse_text` when given (the text with units left out, lines kept: `parsed`), else `text`."""
    from gradlint.source.engine.positions import LazyPositions
    from gradlint.source.names import build_import_table
    from gradlint.source.skeleton import skeleton

    parse_text = text if parse_text is None else parse_text
    # the data tables no rule reads (timm's `default_cfgs`) left out of libcst's parse, lines kept
    skipped = skeleton(parse_text, tree) if tree is not None else None
    module = parse_trusted(skipped[0] if skipped is not None else parse_text)
    return SourceFile(path=path, text=text, module=module,
                      positions=LazyPositions(module, text, skipped[1] if skipped is not None else tree),
                      imports=build_import_table(module))


def extract_python(path: Path, display: str, data: bytes | None = None):
    """Facts of one source file; `data` is its bytes when the caller has read them (bounded)."""
    from gradlint.facts.files import FileFacts
    from gradlint.inputs import Refused, read_bounded

    if data is None:
        try:
            data = read_bounded(path, MAX_SOURCE_BYTES)
        except Refused as exc:
            return FileFacts(path=display, kind="python", input_errors=(InputError("unreadable_source", f"cannot read file: {exc}"),))
    try:
        text = decode(data)
    except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
        return FileFacts(path=display, kind="python", input_errors=(decode_error(data, exc),))
    return extract_python_text(text, display, origin=path)


def _unmodelled(networks, classes) -> str | None:
    """Why the file was checked in part, when module classes of it ran past the interpretation
    budget (models.extract keeps no network of them: their architecture is not checked)."""
    modelled = {n.name for n in networks}
    over = [c.name for c in classes if c.is_module and c.name not in modelled]
    if not over:
        return None
    which = f"class {over[0]}" if len(over) == 1 else f"{len(over)} classes ({over[0]}, ...)"
    return (f"{which} not modelled: {'its' if len(over) == 1 else 'their'} __init__ or forward ran past the "
            "interpretation budget or Python's recursion limit, so the architecture rules did not check "
            f"{'it' if len(over) == 1 else 'them'}")


def extract_python_text(text: str, display: str, *, models_only: bool = False, calls_only: bool = False,
                        origin: Path | None = None):
    """The facts of Python source already in memory (a file, stdin, a notebook's cells), an
    'unreadable_source' input error (what Python itself refuses) or a named skip (what gradlint's parser cannot afford or cannot
    read). CPython judges first: libcst crashes (SIGSEGV) on nesting CPython refuses, and hangs on
    some it accepts, so it only sees what both budgets allow. `calls_only`: the numerics and
    training-loop facts alone, read even when no torch is named (what a search for a function's
    callers reads of a file the sniff skipped: ProjectIndex.calling). `origin`: the file on disk
    the text was read from, where config classes of other files are looked for (source/configs.py)."""
    # The cyclic collector would scan the file's syntax trees again and again while they are
    # alive (5-8% of the extraction); once they are freed, one young-generation pass collects
    # the cycles the extraction left.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _extract_python_text(text, display, models_only, calls_only, origin)
    finally:
        if collecting:
            gc.enable()
            gc.collect(0)


def _extract_python_text(text: str, display: str, models_only: bool, calls_only: bool = False,
                         origin: Path | None = None):
    from gradlint.facts.files import FileFacts
    from gradlint.source.index import module_symbols

    data = text.encode("utf-8", "surrogatepass")
    too_big = _over_size_budget(data, text)
    if too_big:
        return FileFacts(path=display, kind="python", skipped=too_big)
    tree = _cpython_parse(text, display)
    if not isinstance(tree, ast.Module):
        line, col, message = tree
        return FileFacts(path=display, kind="python", source=text,
                         input_errors=(InputError("unreadable_source", message, SourceSpan.point(line, col)),))
    if not calls_only and not _SNIFF.search(data):
        # Nothing for our rules here, but its names still matter to other files: a package
        # `__init__` that re-exports a model.
        return FileFacts(path=display, kind="python", source=text, symbols=module_symbols(tree))
    deepest, cost, nodes = budget.nesting_cost(tree)
    if nodes > budget.MAX_NODES:
        return FileFacts(path=display, kind="python", source=text, symbols=module_symbols(tree), skipped=(
            f"{nodes:,} syntax nodes are over gradlint's parse budget of {budget.MAX_NODES:,} (the largest "
            f"real model files have about 40,000)"))
    if cost > budget.NESTING_BUDGET:
        return FileFacts(path=display, kind="python", source=text, symbols=module_symbols(tree), skipped=(
            f"expressions nested up to {deepest} levels deep are over gradlint's parse budget "
            f"(libcst's parse time grows with the square of the nesting)"))
    if budget.pattern_cost(tree, text) > budget.PATTERN_BUDGET:
        return FileFacts(path=display, kind="python", source=text, symbols=module_symbols(tree), skipped=(
            "match patterns nested over gradlint's parse budget (libcst's parse time grows "
            "exponentially with their nesting)"))
    import libcst as cst

    try:
        src = parse(display, text, tree)
    except cst.ParserSyntaxError as exc:
        # Python accepts the file (it was compiled above), so this is no syntax error: a limit of libcst.
        return FileFacts(path=display, kind="python", source=text, symbols=module_symbols(tree),
                         skipped=_libcst_limit(text, exc))
    except (RecursionError, MemoryError):
        return FileFacts(path=display, kind="python", source=text, symbols=module_symbols(tree),
                         skipped="nested too deeply for libcst, gradlint's parser (Python accepts it)")
    return extract_facts(src, tree, models_only=models_only, calls_only=calls_only, origin=origin)


def parsed(path: Path, display: str, known: tuple[str, ast.Module] | None = None, wanted: set[str] | None = None):
    """The libcst SourceFile of a file, under the same budgets as its extraction; None when they
    (or Python) refuse it. For re-running one class of another file with a caller's arguments
    (source.index.ProjectFiles.lower). `known`: a text and CPython's tree of it, which a caller
    made already (configs._summary): the file's own when its text is that text. `wanted`: the
    top-level classes and functions a re-run needs; the bodies of those it cannot reach are left
    out of libcst's parse (skeleton.without_units, lines kept), and `SourceFile.units` names the
    units kept (None: all of them)."""
    import libcst as cst

    from gradlint.inputs import Refused, read_bounded

    try:
        data = read_bounded(path, MAX_SOURCE_BYTES)
        text = decode(data)
    except (Refused, UnicodeDecodeError, SyntaxError, LookupError):
        return None
    if _over_size_budget(data, text):
        return None
    tree = known[1] if known is not None and known[0] == text else _cpython_parse(text, display)
    if not isinstance(tree, ast.Module) or (nesting := budget.nesting_cost(tree))[1] > budget.NESTING_BUDGET \
            or nesting[2] > budget.MAX_NODES or budget.pattern_cost(tree, text) > budget.PATTERN_BUDGET:
        return None
    if wanted:
        from gradlint.source.skeleton import without_units

        part = without_units(text, tree, wanted)
        if part is not None:
            # CPython's tree of what libcst parses (the positions service pairs the two); the
            # text searches read the file's own text, as for the whole file
            short = _cpython_parse(part[0], display)
            if isinstance(short, ast.Module):
                try:
                    src = parse(display, text, short, parse_text=part[0])
                except (cst.ParserSyntaxError, RecursionError, MemoryError):
                    src = None
                if src is not None:
                    src.units = part[1]
                    return src
    try:
        return parse(display, text, tree)
    except (cst.ParserSyntaxError, RecursionError, MemoryError):
        return None


def _over_size_budget(data: bytes, text: str) -> str | None:
    """Why the file is too large to parse within budget (libcst: ~1 s per 5 000 lines, ~1 GB per
    20 000), or None."""
    if len(data) > budget.MAX_SOURCE_BYTES:
        return f"{len(data)} bytes, over gradlint's parse budget of {budget.MAX_SOURCE_BYTES} bytes"
    # (lines as `wc -l` and an editor count them: a last line without its newline counts too)
    lines = text.count("\n") + (not text.endswith("\n"))
    if lines > budget.MAX_SOURCE_LINES:
        return f"{lines} lines, over gradlint's parse budget of {budget.MAX_SOURCE_LINES} lines"
    return None


def _cpython_parse(text: str, display: str) -> ast.Module | tuple[int, int, str]:
    """CPython's AST of the file, or (line, column, message) of why CPython refuses it. Its
    position and wording ("expected ':'") are better than libcst's, which points at the token
    after the mistake. Compiling to an AST runs nothing."""
    nul = text.find("\0")
    if nul >= 0:  # Python 3.11 raises ValueError for it, 3.12 SyntaxError: one message for both
        line = text.count("\n", 0, nul) + 1
        return line, nul - (text.rfind("\n", 0, nul) + 1) + 1, "syntax error: source code cannot contain null bytes"
    try:
        with warnings.catch_warnings():  # invalid escapes and friends: not ours to print
            warnings.simplefilter("ignore")
            return compile(text, display, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as err:
        return err.lineno or 1, err.offset or 1, f"syntax error: {err.msg}"
    except (RecursionError, MemoryError) as err:
        # CPython's parser ran out of stack ("maximum recursion depth exceeded during
        # compilation", or a MemoryError for 20 000 nested unary operators): Python cannot run it.
        reason = str(err) or type(err).__name__
        return 1, 1, f"syntax error: too deeply nested for Python to compile ({reason})"
    except ValueError as err:
        return 1, 1, f"syntax error: {err}"


def _libcst_limit(text: str, exc: cst.ParserSyntaxError) -> str:
    reason = f"Python accepts this file but libcst, gradlint's parser, cannot parse it ({exc.message})"
    if re.search(r"^(?: +\t|\t+ )", text, re.MULTILINE):
        # libcst keeps each block's indentation as a string that must extend its parent's; CPython
        # compares widths, so `\t` then `        \t` is fine for Python and not for libcst
        reason += "; its indentation mixes tabs and spaces: indent with spaces only to check it"
    return reason


def extract_facts(src: SourceFile, tree=None, *, models_only: bool = False, calls_only: bool = False,
                  origin: Path | None = None):
    """Run every extractor on one parsed file (`tree`: CPython's AST of it, when already made);
    `models_only`: the model lowering alone (a library module, whose loops and numerics are not
    the user's); `calls_only`: the numerics and loop facts alone, without source or symbols (a
    caller the project index reads on demand: it has the file's symbols already); `origin`: its
    file on disk, whose neighbours may hold the config classes its models are built from (their
    files become the facts' `depends`)."""
    from gradlint.facts.files import FileFacts
    from gradlint.source import loops, models, numerics
    from gradlint.source.index import module_symbols

    with warnings.catch_warnings():
        # libcst evaluates string literals with ast.literal_eval: the checked file's invalid
        # escapes ('\d') would print Python's warnings about that file on our stderr
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if calls_only:
            # every call and what it passes, config objects too (`fit(model, RunSettings())`)
            configs = None
            if origin is not None:
                from gradlint.source.configs import ConfigReader

                configs = ConfigReader(origin, module_symbols(tree if tree is not None else src.text))
            facts = FileFacts(path=src.path, kind="python", numerics=numerics.extract(src),
                              training=loops.extract(src, configs, whole=True))
            facts.depends = configs.depends() if configs is not None else ()
            return facts
        symbols = module_symbols(tree if tree is not None else src.text)
        configs = None
        if origin is not None and not models_only:
            from gradlint.source.configs import ConfigReader

            configs = ConfigReader(origin, symbols)
        # the loop facts read the fields of the file's own config objects (`cfg.max_grad_norm`)
        # with the models' evaluator, kept until they are done: only where a clip can read one
        keep: list | None = [] if not models_only and "clip_grad" in src.text else None
        networks, classes = models.extract(src, configs, keep)
        facts = FileFacts(path=src.path, kind="python", source=src.text, networks=networks, classes=classes,
                          symbols=symbols)
        if not models_only:
            facts.partial = _unmodelled(networks, classes)
            facts.numerics = numerics.extract(src, configs)
            try:
                facts.training = loops.extract(src, configs, keep[0] if keep else None)
            finally:
                if keep:
                    keep[0].release()
        # every file the config classes and the imported constants were looked for in
        facts.depends = configs.depends() if configs is not None else ()
    return facts
