"""One file's facts (FileFacts) and what other files need to know of its classes (ClassSummary)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradlint.findings import InputError
from gradlint.model.ir import Network


@dataclass(frozen=True)
class ClassSummary:
    """What other files of the project need to know about a class (nn.Module or not)."""

    name: str
    path: str
    bases: tuple[str, ...] = ()
    recurrent: bool = False
    transformer_blocks: int = 0
    # 'softmax', 'sigmoid', 'log_softmax' when forward returns that (GL303 and friends)
    returns: str | None = None
    is_module: bool = False


@dataclass(frozen=True)
class ModuleSymbols:
    """The names a Python module binds at its top level, as written: enough to resolve a name used
    in another module to the class or function that defines it (gradlint.facts.project).

    imports: local name -> the qualified names it may stand for, relative imports kept relative
    ('.gan.Discriminator'): the module's own qualified name depends on the project root, which the
    facts (cached per file content) must not. `*` imports are listed in `star` ('.layers').
    defined: every other top-level name the module binds (classes, functions, assignments).
    """

    imports: tuple[tuple[str, tuple[str, ...]], ...] = ()
    classes: tuple[str, ...] = ()
    defined: tuple[str, ...] = ()
    star: tuple[str, ...] = ()


@dataclass
class FileFacts:
    """Everything the front-ends learned about one file; pure data (gradlint.cache stores it as JSON)."""

    path: str
    kind: str  # 'python' or 'onnx'
    source: str | None = None
    networks: tuple[Network, ...] = ()
    classes: tuple[ClassSummary, ...] = ()
    training: Any = None  # gradlint.facts.training.TrainingFacts (training-loop rules)
    numerics: Any = None  # gradlint.facts.numerics.NumericsFacts (numerics and gradient-path rules)
    graph: Any = None  # gradlint.onnx facts (ONNX graph rules)
    # Top-level names and imports (Python files), for the project index.
    symbols: ModuleSymbols | None = None
    # The file could not be read (GL001, GL002, GL003 report these).
    input_errors: tuple[InputError, ...] = ()
    skipped: str | None = None
    # The file was checked in part, and why (an ONNX model's external data past the bytes read
    # for one model, module classes past the interpretation budget): said as a warning, the
    # findings stand.
    partial: str | None = None
    # A failure of gradlint's own front-end on this file: reported, exit 2, the run goes on.
    internal_error: str | None = None
    # A notebook's gradlint.notebook.CellMap: its findings are moved from the virtual file to cells.
    cells: Any = None
    # Other files the facts were read from (ONNX external data; the files of config classes a
    # Python file's models were built with, `../config.py` included), relative to the file's
    # folder: a cache entry holds only while they are unchanged.
    depends: tuple[str, ...] = ()
