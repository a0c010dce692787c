"""The libcst front-end: one parse per file, then model IR, training-loop facts and numerics facts."""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from gradlint.findings import InputError, SourceSpan
from gradlint.source.names import ImportTable, build_import_table

# Files that mention none of these cannot hold anything our rules look for; skipping them before
# the parse is the cheapest speed-up a libcst linter has (TorchFix does the same).
_SNIFF = re.compile(rb"torch|\bnn\b|onnx|backward|accelerat|lightning|autograd")


@dataclass
class SourceFile:
    """One parsed file, shared by every extractor: parse once, visit as few times as possible."""

    path: str
    text: str
    module: cst.Module
    positions: Mapping[cst.CSTNode, CodeRange]
    imports: ImportTable

    def span(self, node: cst.CSTNode) -> SourceSpan:
        rng = self.positions.get(node)
        if rng is None:
            return SourceSpan.point(1, 1)
        # libcst columns are 0-based; ours are 1-based like ruff's.
        return SourceSpan(rng.start.line, rng.start.column + 1, rng.end.line, rng.end.column + 1)

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)


def decode(data: bytes) -> str:
    """Decode as Python does: a PEP 263 cookie or a BOM, else UTF-8."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return data.decode(encoding)


def parse(path: str, text: str) -> SourceFile:
    module = cst.parse_module(text)
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    return SourceFile(path=path, text=text, module=wrapper.module, positions=positions,
                      imports=build_import_table(wrapper.module))


def extract_python(path: Path, display: str):
    from gradlint.api import FileFacts

    try:
        data = path.read_bytes()
    except OSError as exc:
        return FileFacts(path=display, kind="python",
                         input_errors=(InputError("GL001", f"cannot read file: {exc.strerror or exc}"),))
    try:
        text = decode(data)
    except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
        return FileFacts(path=display, kind="python", input_errors=(InputError("GL001", f"cannot decode file: {exc}"),))
    if not _SNIFF.search(data):
        return FileFacts(path=display, kind="python", source=text)
    try:
        src = parse(display, text)
    except cst.ParserSyntaxError as exc:
        line, col, message = _python_syntax_error(text, display) or (
            exc.raw_line, exc.raw_column + 1, f"syntax error: {exc.message}")
        return FileFacts(path=display, kind="python", source=text,
                         input_errors=(InputError("GL001", message, SourceSpan.point(line, col)),))
    except (RecursionError, MemoryError):
        return FileFacts(path=display, kind="python", source=text,
                         input_errors=(InputError("GL001", "file is too deeply nested to parse"),))
    return extract_facts(src)


def _python_syntax_error(text: str, display: str) -> tuple[int, int, str] | None:
    """CPython's own position and wording ("expected ':'") are better than the libcst parser's,
    which points at the token after the mistake. Compiling to an AST runs nothing."""
    import ast

    try:
        ast.parse(text, filename=display)
    except SyntaxError as err:
        return err.lineno or 1, err.offset or 1, f"syntax error: {err.msg}"
    except (ValueError, RecursionError, MemoryError):
        return None
    return None  # CPython accepts it: a syntax libcst does not know; report libcst's words


def extract_facts(src: SourceFile):
    """Run every extractor on one parsed file."""
    from gradlint.api import FileFacts
    from gradlint.source import loops, models

    networks, classes = models.extract(src)
    facts = FileFacts(path=src.path, kind="python", source=src.text, networks=networks, classes=classes)
    facts.training = loops.extract(src)
    return facts
