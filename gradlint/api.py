"""check_paths(paths, config) -> RunResult: discovery, per-file facts (pooled, cached), rules. No printing."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from gradlint import __version__, suppress
from gradlint.config import Config
from gradlint.discover import discover
from gradlint.findings import FileResult, Finding, InputError, RunResult, Severity, SourceSpan
from gradlint.model.ir import Network
from gradlint.registry import Rule, RuleContext, load_rules


@dataclass(frozen=True)
class ClassSummary:
    """What other files of the run need to know about a class (nn.Module or not)."""

    name: str
    path: str
    bases: tuple[str, ...] = ()
    recurrent: bool = False
    transformer_blocks: int = 0
    # 'softmax', 'sigmoid', 'log_softmax' when forward returns that (GL303 and friends)
    returns: str | None = None
    is_module: bool = False


@dataclass
class FileFacts:
    """Everything the front-ends learned about one file; pure data, picklable, cacheable."""

    path: str
    kind: str  # 'python' or 'onnx'
    source: str | None = None
    networks: tuple[Network, ...] = ()
    classes: tuple[ClassSummary, ...] = ()
    training: Any = None  # gradlint.source.loops facts (training-loop rules)
    numerics: Any = None  # gradlint.source.numerics facts (numerics and gradient-path rules)
    graph: Any = None  # gradlint.onnx facts (ONNX graph rules)
    # The file could not be read (GL001, GL002, GL003 report these).
    input_errors: tuple[InputError, ...] = ()
    skipped: str | None = None
    # A failure of gradlint's own front-end on this file: reported, exit 2, the run goes on.
    internal_error: str | None = None
    # A notebook's gradlint.notebook.CellMap: its findings are moved from the virtual file to cells.
    cells: Any = None


@dataclass
class RunIndex:
    """Run-wide facts: classes by name, so a rule in train.py knows the model of model.py."""

    classes: dict[str, list[ClassSummary]] = field(default_factory=dict)
    networks: dict[str, list[Network]] = field(default_factory=dict)
    # Numerics: class name -> gradlint.source.numerics_facts.NumClass records (what a forward
    # returns, module-ness, autograd Functions), and the autograd Functions gradchecked in the run.
    numeric_classes: dict[str, list[Any]] = field(default_factory=dict)
    gradchecked: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, facts: Iterable[FileFacts]) -> "RunIndex":
        index = cls()
        facts = list(facts)
        for f in facts:
            for c in f.classes:
                index.classes.setdefault(c.name, []).append(c)
            for n in f.networks:
                index.networks.setdefault(n.name, []).append(n)
        index._add_numerics(facts)
        return index

    def _add_numerics(self, facts: Iterable[FileFacts]) -> None:
        names: set[str] = set()
        aliases: list[tuple[str, str]] = []
        for f in facts:
            num = getattr(f, "numerics", None)
            if num is None:
                continue
            for c in num.classes:
                self.numeric_classes.setdefault(c.name, []).append(c)
            names |= set(num.gradchecked)
            aliases.extend(num.apply_aliases)
        # A Function is checked when its name, an alias of its .apply, or a wrapper calling it
        # is passed to gradcheck anywhere in the run.
        self.gradchecked = names | {cls for alias, cls in aliases if alias in names}

    def lookup(self, name: str) -> list[ClassSummary]:
        return self.classes.get(name, [])


def _extract(path: Path, display: str) -> FileFacts:
    """Front-end dispatch by file kind. Never raises for bad input: that becomes GL00x."""
    if path.suffix == ".ipynb":
        from gradlint.notebook import extract_notebook

        return extract_notebook(path, display)
    if path.suffix == ".onnx" or display.endswith(".onnx.txt"):
        from gradlint.onnx import extract_onnx

        return extract_onnx(path, display)
    from gradlint.source import extract_python

    return extract_python(path, display)


_CODE_FINGERPRINT: str | None = None


def _code_fingerprint() -> str:
    """gradlint's own code, by file sizes and times: a cache written by other front-end code
    (an upgrade without a version bump, a development checkout) is never read back."""
    global _CODE_FINGERPRINT
    if _CODE_FINGERPRINT is None:
        h = hashlib.sha256(__version__.encode())
        for f in sorted(Path(__file__).parent.rglob("*.py")):
            st = f.stat()
            h.update(f"{f.relative_to(Path(__file__).parent)}:{st.st_size}:{st.st_mtime_ns};".encode())
        _CODE_FINGERPRINT = h.hexdigest()
    return _CODE_FINGERPRINT


def _cache_key(path: Path, display: str) -> str | None:
    try:
        data = path.read_bytes() if path.suffix != ".onnx" else _onnx_fingerprint(path)
    except OSError:
        return None
    h = hashlib.sha256()
    h.update(_code_fingerprint().encode())
    h.update(display.encode())
    h.update(data)
    return h.hexdigest()


def _onnx_fingerprint(path: Path) -> bytes:
    """Hashing a multi-GB model would cost more than checking it: sizes and times say enough.
    External data lies next to the model, so every file of its folder takes part: changing
    only `model.data` must not serve the old weights' findings."""
    parts = []
    for f in sorted(path.parent.iterdir()):
        try:
            st = f.lstat()
        except OSError:
            continue
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts).encode()


def _facts_job(args: tuple[str, str, str | None]) -> FileFacts:
    path_s, display, cache_dir = args
    path = Path(path_s)
    key = _cache_key(path, display) if cache_dir else None
    if key and cache_dir:
        cached = Path(cache_dir) / f"{key}.pickle"
        try:
            with cached.open("rb") as fh:
                return pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
            pass
    try:
        facts = _extract(path, display)
    except Exception:  # an internal failure on one file must not end the run
        return FileFacts(path=display, kind="python", internal_error=_short_traceback())
    if key and cache_dir:
        _write_cache(Path(cache_dir), key, facts)
    return facts


def _write_cache(cache_dir: Path, key: str, facts: FileFacts) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        marker = cache_dir / ".gitignore"
        if not marker.exists():
            marker.write_text("# created by gradlint\n*\n")
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(facts, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_dir / f"{key}.pickle")
    except OSError:
        # A read-only checkout still gets checked, just without a cache.
        pass


def _short_traceback() -> str:
    return traceback.format_exc(limit=-3).strip()


def run_rules(facts: FileFacts, config: Config, index: RunIndex, rules: dict[str, type[Rule]],
              enabled: frozenset[str], relpath: str) -> FileResult:
    """Run the selected rules on one file's facts, then per-file ignores and suppressions."""
    findings: list[Finding] = []
    internal = facts.internal_error
    ignored = config.ignored_codes_for(relpath)
    for code in sorted(enabled):
        rule_cls = rules[code]
        if facts.kind not in rule_cls.inputs or rule_cls.probe_only:
            continue
        if any(code.startswith(sel) for sel in ignored):
            continue
        ctx = RuleContext(rule=rule_cls(), path=facts.path, facts=facts, options=config.options_for(code), index=index,
                          enabled=enabled)
        try:
            findings.extend(rule_cls().check(ctx))
        except Exception:
            internal = (internal + "\n" if internal else "") + f"{code} crashed on {facts.path}:\n{_short_traceback()}"
    # GL0xx are always on, but a per-file ignore still silences them where the user asks.
    findings = [f for f in findings if not any(f.code.startswith(sel) for sel in ignored)]
    findings = suppress.apply(findings, facts.source)
    findings.sort(key=Finding.sort_key)
    return FileResult(path=facts.path, findings=tuple(findings), internal_error=internal, skipped=facts.skipped)


def collect_facts(files: list[tuple[Path, str]], config: Config, *, use_cache: bool = True,
                  jobs: int | None = None) -> list[FileFacts]:
    cache_dir = str(Path(config.root) / config.cache_dir) if use_cache else None
    args = [(str(p), d, cache_dir) for p, d in files]
    workers = jobs if jobs is not None else min(os.cpu_count() or 1, 8)
    # A pool costs ~100 ms to start; below a few dozen files one process is faster.
    if workers <= 1 or len(args) < 32:
        return [_facts_job(a) for a in args]
    from gradlint.pool import map_isolated

    # A worker that dies (a native crash, SIGKILL, the OOM killer) costs only its own file.
    return map_isolated(_facts_job, args, workers, on_failure=_job_failed)


def _job_failed(args: tuple, reason: str) -> FileFacts:
    """The facts of a file whose worker died: an internal error that names the file (args is
    _facts_job's: the path, then the name shown)."""
    display = args[1]
    return FileFacts(path=display, kind="python", internal_error=f"{reason} while checking {display}")


def check_paths(paths: Iterable[str | Path], config: Config, *, use_cache: bool = True,
                jobs: int | None = None) -> RunResult:
    """Check files and folders; the result holds every file's findings, sorted."""
    found = discover([Path(p) for p in paths], config)
    result = RunResult()
    for missing in found.missing:
        result.files.append(FileResult(path=missing, internal_error=None, skipped="no such file or directory"))
    facts = collect_facts(found.files, config, use_cache=use_cache, jobs=jobs)
    index = RunIndex.build(facts)
    rules = load_rules()
    enabled = config.enabled_codes() | {c for c, r in rules.items() if r.always_on}
    root = Path(config.root)
    for (path, _display), f in zip(found.files, facts):
        try:
            relpath = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            relpath = path.as_posix()
        result.files.append(_in_cells(run_rules(f, config, index, rules, enabled, relpath), f))
    return result


def _in_cells(result: FileResult, facts: FileFacts) -> FileResult:
    if facts.cells is None:
        return result
    from gradlint.notebook import locate

    return locate(result, facts.cells)


def check_text(display: str, data: bytes, config: Config) -> RunResult:
    """Check one file's content held in memory (stdin: `--stdin-filename PATH -`), reported as
    `display`; a .ipynb name reads the content as a notebook. The file is checked alone."""
    from gradlint.notebook import extract_notebook_bytes
    from gradlint.source import decode, extract_python_text

    if display.endswith(".onnx"):
        return RunResult(files=[FileResult(path=display, skipped="an ONNX model cannot be read from stdin")])
    if display.endswith(".ipynb"):
        facts = extract_notebook_bytes(data, display)
    else:
        try:
            facts = extract_python_text(decode(data), display)
        except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
            facts = FileFacts(path=display, kind="python", input_errors=(InputError("GL001", f"cannot decode: {exc}"),))
    rules = load_rules()
    enabled = config.enabled_codes() | {c for c, r in rules.items() if r.always_on}
    try:
        relpath = Path(display).resolve().relative_to(Path(config.root).resolve()).as_posix()
    except ValueError:
        relpath = Path(display).as_posix()
    result = run_rules(facts, config, RunIndex.build([facts]), rules, enabled, relpath)
    return RunResult(files=[_in_cells(result, facts)])


def check_source(source: str | bytes, config: Config | None = None, *, path: str = "example.py",
                 extra_files: dict[str, str] | None = None) -> list[Finding]:
    """Check source text as if it were a file of a run (tests, examples, the probe)."""
    config = config or Config()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        target = tmpdir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            target.write_text(source, encoding="utf-8")
        for name, text in (extra_files or {}).items():
            other = tmpdir / name
            other.parent.mkdir(parents=True, exist_ok=True)
            other.write_text(text, encoding="utf-8")
        config = replace(config, root=str(tmpdir))
        old = os.getcwd()
        os.chdir(tmpdir)
        try:
            result = check_paths(["."], config, use_cache=False, jobs=1)
        finally:
            os.chdir(old)
    return [f for f in result.findings if Path(f.path).as_posix().endswith(path)]


def exit_code(result: RunResult, fail_on: Severity, *, exit_zero: bool = False) -> int:
    if result.internal_errors or any(r.skipped == "no such file or directory" for r in result.files):
        return 2
    if exit_zero:
        return 0
    return 1 if any(f.severity >= fail_on for f in result.findings) else 0


__all__ = [
    "ClassSummary", "FileFacts", "RunIndex", "check_paths", "check_source", "check_text", "exit_code",
    "run_rules", "collect_facts", "SourceSpan",
]
