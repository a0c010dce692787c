"""The command line (click): check, model, rule, rules, config, probe. Printing and exit codes only."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

import click

from gradlint import __version__, deferred

# The generated methods of gradlint's and libcst's dataclasses are compiled when first called
# (about 1 000 of the 1 400 never are in a one-file run): see gradlint/deferred.py. Installed by
# the command only, before any of those classes is made: a program that imports gradlint's API
# keeps its process's `dataclasses` as it is.
deferred.install()
from gradlint.config import (Config, ConfigError, check_patterns, config_warnings, find_pyproject, load_config,
                             parse_selector_option, rebase_pattern, with_overrides)
from gradlint.findings import Severity
from gradlint.text import split_lines

from gradlint.report import FORMATS, render

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a process ended by SIGINT


# Characters of gradlint's messages that a legacy console (cp1252, cp437, ascii) may lack.
_ASCII = {"χ": "chi", "σ": "sigma", "φ": "phi", "≈": "~", "‖": "||", "∂": "d", "′": "'", "≥": ">=",
          "≤": "<=", "×": "x", "→": "->", "…": "...", "±": "+/-", "²": "^2", "√": "sqrt", "—": "-",
          "–": "-", "·": "*", "∞": "inf", "ε": "eps", "μ": "mu"}


def console_safe(text: str, stream: Any) -> str:
    """Text the stream's encoding can print: gradlint's symbols spelt out (χ -> chi), anything
    else unencodable as '?'. A cp1252 console must get a report, never a UnicodeEncodeError."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
        return text
    except (UnicodeEncodeError, LookupError):
        pass
    out = []
    for ch in text:
        try:
            ch.encode(encoding)
            out.append(ch)
        except (UnicodeEncodeError, LookupError):
            out.append(_ASCII.get(ch, "?"))
    return "".join(out).encode(encoding, "replace").decode(encoding, "replace")


def say(text: str, *, err: bool = True, nl: bool = True) -> None:
    """click.echo, safe on any console encoding."""
    stream = sys.stderr if err else sys.stdout
    click.echo(console_safe(text, stream), err=err, nl=nl)


def fail(message: str) -> NoReturn:
    """A user-facing error: one line on stderr, exit 2, never a traceback."""
    from gradlint.report.text import escape

    say(f"gradlint: error: {escape(message)}")
    sys.exit(EXIT_ERROR)


def resolve_config(config_path: str | None, select: tuple[str, ...], ignore: tuple[str, ...],
                   extend_select: tuple[str, ...], fail_on: str | None, *, exclude: tuple[str, ...] = (),
                   extend_exclude: tuple[str, ...] = (), start: Path | None = None) -> Config:
    try:
        return make_config(config_path, select, ignore, extend_select, fail_on, exclude=exclude,
                           extend_exclude=extend_exclude, start=start)
    except ConfigError as exc:
        fail(str(exc))


def make_config(config_path: str | Path | None, select: tuple[str, ...], ignore: tuple[str, ...],
                extend_select: tuple[str, ...], fail_on: str | None, *, exclude: tuple[str, ...] = (),
                extend_exclude: tuple[str, ...] = (), start: Path | None = None, anchor: str | None = None) -> Config:
    """The configuration file's settings (the nearest to start when none is given), the flags on
    top; raises ConfigError. anchor: the root the flags' exclude patterns are written from (the
    current folder's project), when it is not this configuration's."""
    config = load_config(config_path, start or Path.cwd())
    excludes, extend_excludes = _patterns(exclude), _patterns(extend_exclude)
    for flag, patterns in (("--exclude", excludes), ("--extend-exclude", extend_excludes)):
        check_patterns(patterns, flag)
    if anchor is not None:
        excludes, extend_excludes = (tuple(q for p in patterns if (q := rebase_pattern(p, anchor, config.root)) is not None)
                                     for patterns in (excludes, extend_excludes))
    overrides: dict[str, Any] = {}
    if select:
        overrides["select"] = (parse_selector_option(select, "--select"), "--select")
    if extend_select:
        # Extends the file's extend-select, as --ignore extends its ignore (ruff does the same).
        overrides["extend_select"] = (config.extend_select + parse_selector_option(extend_select, "--extend-select"),
                                      "--extend-select")
    if ignore:
        overrides["ignore"] = (config.ignore + parse_selector_option(ignore, "--ignore"), "--ignore")
    if fail_on:
        overrides["fail_on"] = (Severity.parse(fail_on), "--fail-on")
    if exclude:
        # As in ruff: --exclude replaces the exclude list (defaults included), --extend-exclude adds.
        overrides["exclude"] = (excludes, "--exclude")
    if extend_exclude:
        overrides["extend_exclude"] = (config.extend_exclude + extend_excludes, "--extend-exclude")
    return with_overrides(config, **overrides)


def _loader(config_path: str | None, select: tuple[str, ...], ignore: tuple[str, ...],
            extend_select: tuple[str, ...], fail_on: str | None, exclude: tuple[str, ...],
            extend_exclude: tuple[str, ...]) -> Callable[[Path | None], Config]:
    """A project's configuration (gradlint.projects.Loader), the flags on top: --config's file
    when given, else the project's own file, or for None the current folder's."""
    # Exclude flags are written from the current folder's project root, as they always were read;
    # a project elsewhere sees them moved to its root.
    own = find_pyproject(Path.cwd()) if config_path is None else None
    anchor = str(own.parent if own is not None else Path.cwd().resolve())

    def load(file: Path | None) -> Config:
        return make_config(config_path or file, select, ignore, extend_select, fail_on, exclude=exclude,
                           extend_exclude=extend_exclude, anchor=None if config_path else anchor)
    return load


def _warn_if_nothing_selected(config: Config) -> bool:
    """`--select ''`, `--select GL7` (rules `probe` measures) or an ignore of everything selected:
    the run checks for nothing but unreadable input and would say "All checks passed"."""
    from gradlint.registry import load_rules

    rules = load_rules()
    if not any(c in rules and not rules[c].always_on and not rules[c].probe_only for c in config.enabled_codes()):
        say("gradlint: warning: the selection enables no rule that `check` runs: only unreadable input "
            "(GL0xx) is reported (GL7xx are measured by `gradlint probe`)")
        return True
    return False


def _patterns(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p.strip() for v in values for p in v.split(",") if p.strip())


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["check", "model", "probe", "rule", "rules", "config"]

    def invoke(self, ctx: click.Context) -> Any:
        # A crash of gradlint itself must not look like "findings" (Python exits 1 on an
        # uncaught exception): it is exit 2, with the traceback for the bug report.
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            # Ctrl-C: 130, as a shell reports it (click's 'Aborted!' exits 1, the findings code)
            say("gradlint: interrupted")
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            # `gradlint check | head`: the reader left; say nothing more (Python's own recipe).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(EXIT_ERROR)
        except Exception:
            import traceback

            say("gradlint: internal error (please report it):\n" + traceback.format_exc().rstrip())
            sys.exit(EXIT_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradlint")
def main() -> None:
    """gradlint: find vanishing and exploding gradients, broken gradient clipping and
    numerically unsafe code in PyTorch source and ONNX models, without running them.

    \b
    Exit codes: 0 no findings (or nothing to check: a warning), 1 findings, 2 usage or
    configuration error, a path that does not exist, or an internal failure.
    """


_selector_help = "Comma-separated codes, prefixes or rule names (GL1, GL201, log-of-probability); may be repeated."


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str, readable=False))
@click.option("--select", multiple=True, metavar="CODES", help="Enable only these rules. " + _selector_help)
@click.option("--extend-select", multiple=True, metavar="CODES", help="Enable these rules on top of the selection. " + _selector_help)
@click.option("--ignore", multiple=True, metavar="CODES",
              help="Disable these rules. " + _selector_help + " GL0xx (unreadable files) are always on and cannot be ignored.")
@click.option("--format", "--output-format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format: text (= concise, one line per finding) or full (plus the source line, a caret and the fix) "
                   "for people, json (ruff-compatible), sarif 2.1.0 for code scanning, github for Actions annotations.")
@click.option("--output-file", "-o", type=click.Path(dir_okay=False, path_type=str),
              help="Write the report to this file instead of stdout (created or replaced whole; /dev/stdout, "
                   "/dev/null and named pipes are written as they are).")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings (errors still exit 2).")
@click.option("--fail-on", type=click.Choice(["error", "warning", "info"]), default=None,
              help="Lowest severity that makes the exit code 1. [default: info, any finding fails]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Read settings from this TOML file, for every path, instead of each path's nearest pyproject.toml.")
@click.option("--quiet", "-q", is_flag=True, help="Print findings only, no summary.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the per-file cache.")
@click.option("--fix", is_flag=True, help="Apply safe fixes in place.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply fixes that may change behaviour (needs --fix or --diff).")
@click.option("--diff", is_flag=True, help="Print the fixes as a unified diff instead of writing them; exit 1 if there are any.")
@click.option("--show-fixes", is_flag=True, help="With --fix: list what was fixed. Otherwise: print each finding's fix under it.")
@click.option("--statistics", is_flag=True, help="Print the number of findings per rule instead of the findings (text or json).")
@click.option("--exclude", multiple=True, metavar="PATTERNS", help="Replace the exclude list (globs, comma-separated; may be repeated).")
@click.option("--extend-exclude", multiple=True, metavar="PATTERNS", help="Exclude these globs on top of the exclude list.")
@click.option("--stdin-filename", metavar="PATH",
              help="Read the source from stdin (path `-` or none) and report it as PATH, with PATH's project configuration; "
                   "with --fix, print the fixed source on stdout. The entry point for editors.")
@click.option("--add-noqa", is_flag=True, help="Add a `# noqa: CODE` comment to every line with a finding; report nothing "
              "(exit 1 when findings are left that take no comment, such as a syntax error).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes. [default: CPU count]")
def check(paths: tuple[str, ...], select: tuple[str, ...], extend_select: tuple[str, ...], ignore: tuple[str, ...],
          fmt: str, output_file: Path | None, exit_zero: bool, fail_on: str | None, config_path: str | None,
          quiet: bool, no_cache: bool, fix: bool, unsafe_fixes: bool, diff: bool, show_fixes: bool, statistics: bool,
          exclude: tuple[str, ...], extend_exclude: tuple[str, ...], stdin_filename: str | None, add_noqa: bool,
          jobs: int | None) -> None:
    """Check PATHS (files or folders; default: the current folder).

    Reads PyTorch source (.py), Jupyter notebooks (.ipynb) and ONNX models (.onnx) without
    importing or running them. Each path takes the settings of [tool.gradlint] in the nearest
    pyproject.toml above it (a folder with its own is checked with its own); flags override
    them. A folder with nothing to check is a warning, exit 0 (as in ruff).
    """
    _no_collection_at_exit()
    if output_file is not None:
        if not output_file:
            fail("--output-file: an empty path")
        output_file = Path(output_file)
    if unsafe_fixes and not (fix or diff):
        say("gradlint: warning: --unsafe-fixes only acts with --fix or --diff; without them nothing is changed")
    if add_noqa and (fix or diff):
        # (--diff promises to write nothing, and --add-noqa writes: the pair wrote the comments)
        fail("--add-noqa edits the files itself; it cannot be used with --fix or --diff")
    if statistics and fmt in ("sarif", "github"):
        fail(f"--statistics prints a count per rule (as text or json); it cannot be given as {fmt}")
    if stdin_filename is not None or paths == ("-",):
        if paths not in ((), ("-",)):
            fail("--stdin-filename checks the source read from stdin: give no other path (or `-`)")
        if stdin_filename is None:
            fail("reading from stdin (`-`) needs --stdin-filename PATH, to know the file's kind and project")
        if add_noqa:
            fail("--add-noqa edits files in place; it cannot be used with --stdin-filename")
        if output_file is not None:
            _check_output(output_file, [stdin_filename])
        _check_stdin(stdin_filename, select, ignore, extend_select, fail_on, config_path, fmt, exit_zero, fix,
                     unsafe_fixes, diff, quiet, output_file, exclude, extend_exclude, use_cache=not no_cache,
                     statistics=statistics, show_fixes=show_fixes)
        return
    if "-" in paths:
        fail("`-` (stdin) cannot be mixed with other paths")
    from gradlint import projects as runs

    load = _loader(config_path, select, ignore, extend_select, fail_on, exclude, extend_exclude)
    targets = list(paths) or ["."]
    if output_file is not None:
        _check_output(output_file, targets)
    explicit = config_path is not None
    try:
        projects = runs.plan(targets, load, explicit=explicit)
    except ConfigError as exc:
        fail(str(exc))
    result = runs.check(projects, load, explicit=explicit, use_cache=not no_cache, jobs=jobs)
    for project in projects:  # (nested projects included, once the walks have found them)
        if _warn_if_nothing_selected(project.config):
            break  # (once: the words name no project)
    if add_noqa:
        # what `check` says about paths (a missing one, a nested project's broken configuration)
        _warn_about_files(result, quiet=quiet, fmt="text")
        _add_noqa(projects, result, exit_zero=exit_zero)
    fixed = 0
    fixed_findings: list[Any] = []
    if fix or diff:
        outcome = runs.fix(projects, write=fix and not diff, unsafe=unsafe_fixes, use_cache=not no_cache)
        for problem in outcome.problems:
            say(f"gradlint: {problem}")
        if outcome.skipped:
            from gradlint.report.text import escape

            for path, reason in outcome.skipped:
                say(f"gradlint: warning: {escape(path)}: not fixed: {reason}")
        if diff:
            _emit(outcome.diff, "text", output_file)  # (-o: the diff is the report)
            _warn_about_files(result, quiet=quiet, fmt="text")
            sys.exit(EXIT_ERROR if result.has_errors else EXIT_FINDINGS if outcome.diff else EXIT_CLEAN)
        result = outcome.remaining
        # only what was written counts as fixed
        fixed, fixed_findings = outcome.fixed, outcome.fixed_findings
        if outcome.fixed or outcome.changed:
            # Fixed files moved lines and may change what other files' rules see, and files
            # changed since the check (another --fix run) have stale findings: report a fresh run.
            projects = runs.plan(targets, load, explicit=explicit)
            result = runs.check(projects, load, explicit=explicit, use_cache=not no_cache, jobs=jobs)
        if outcome.dropped:
            # (their fix would not parse: the report said they were still "fixable with --fix")
            result = _without_fixes(result, lambda f: (f.path, f.code, f.message) in outcome.dropped)
        if outcome.skipped and not diff:
            # (a read-only or hard-linked file: the summary said "[*] 2 fixable with --fix", and
            # --fix would refuse them again; the warnings above say why)
            refused = {path for path, _reason in outcome.skipped}
            result = _without_fixes(result, lambda f: f.path in refused)
    _report(result, fmt=fmt, output_file=output_file, quiet=quiet, statistics=statistics,
            show_fixes=show_fixes and not fix, fixed=fixed)
    if show_fixes and fix and fmt in TEXT_FORMATS and not statistics:
        say(_fixed_listing(fixed_findings), err=False, nl=False)
    _warn_about_files(result, quiet=quiet, fmt=fmt)
    sys.exit(runs.exit_code(projects, result, exit_zero=exit_zero))


TEXT_FORMATS = ("text", "concise", "full")


def _without_fixes(result: Any, drop: Callable[[Any], bool]) -> Any:
    """The result with no fix on the findings `drop` picks (fixes --fix dropped or could not write)."""
    from dataclasses import replace

    files = [replace(r, findings=tuple(replace(f, fix=None) if drop(f) else f for f in r.findings)) for r in result.files]
    return replace(result, files=files)


def _report(result: Any, *, fmt: str, output_file: Path | None, quiet: bool, statistics: bool,
            show_fixes: bool = False, fixed: int = 0) -> None:
    from gradlint.report.text import statistics as render_statistics

    color = output_file is None and fmt in TEXT_FORMATS and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    if statistics:
        text = render_statistics(result, "json" if fmt == "json" else "text")
    else:
        text = render(fmt, result, quiet=quiet, color=color, show_fixes=show_fixes, fixed=fixed,
                      source_lines=_source_lines()) if fmt in TEXT_FORMATS else render(fmt, result, rules=_rules(result))
    _emit(text, fmt, output_file)


def _rules(result: Any) -> dict:
    """The registry's metadata of the rules with findings in `result`, for the reporters."""
    from gradlint.registry import describe

    return describe({f.code for f in result.findings})


def _check_output(output_file: Path, inputs: list[str] = ()) -> None:
    """-o FILE is refused before the run when the report could not go there (a missing folder, a
    read-only file) or would replace a file the run checks."""
    from gradlint.report.destination import Unwritable, check as check_destination

    try:
        check_destination(output_file, inputs)
    except Unwritable as exc:
        fail(f"{output_file}: cannot write the report there: {exc}")


def _emit(text: str, fmt: str, output_file: Path | None) -> None:
    if output_file is not None:
        from gradlint.report.destination import write

        try:
            # (as on stdout: a file name with undecodable bytes is a \udcXX escape, never a crash)
            write(output_file, text.encode("utf-8", "backslashreplace"))
        except OSError as exc:
            fail(f"{output_file}: cannot write report: {exc.strerror or exc}")
    elif fmt in TEXT_FORMATS:
        say(text, err=False, nl=False)
    else:
        # JSON and SARIF are UTF-8 by definition, whatever the console's code page. A file name
        # with undecodable bytes (a lone surrogate) becomes a \udcXX escape, still valid JSON.
        click.echo(text.encode("utf-8", "backslashreplace"), nl=False)


def _source_lines() -> Any:
    """For `--output-format full`: the lines a finding points into, read once per file or cell."""
    cache: dict[tuple[str, int | None], list[str] | None] = {}

    def lines(f: Any) -> list[str] | None:
        # imported here: every report asks for the function, only a finding calls it
        from gradlint.notebook import cell_lines
        from gradlint.source import decode

        key = (f.path, f.cell)
        if key not in cache:
            try:
                if f.cell is not None:
                    cache[key] = cell_lines(Path(f.path), f.cell)
                else:
                    cache[key] = split_lines(decode(Path(f.path).read_bytes()))
            except (OSError, UnicodeDecodeError, SyntaxError, LookupError, ValueError):
                cache[key] = None
        return cache[key]

    return lines


def _fixed_listing(fixed_findings: list[Any]) -> str:
    """`--show-fixes` after `--fix`: what was fixed, per file and rule (ruff's layout)."""
    from collections import Counter

    from gradlint.report.text import escape

    if not fixed_findings:
        return ""
    by_file: dict[str, Counter] = {}
    for f in fixed_findings:
        by_file.setdefault(f.path, Counter())[(f.code, f.name)] += 1
    out = [f"\nFixed {len(fixed_findings)} finding{'s' if len(fixed_findings) != 1 else ''}:"]
    for path in sorted(by_file):
        out.append(f"- {escape(path)}:")
        for (code, name), n in sorted(by_file[path].items()):
            out.append(f"    {n} x {code} ({name})")
    return "\n".join(out) + "\n"


def _warn_about_files(result: Any, *, quiet: bool, fmt: str) -> None:
    from gradlint.report.text import escape

    for warning in getattr(result, "warnings", ()):
        say(f"gradlint: warning: {warning}")
    for r in result.files:
        if r.internal_error:
            say(f"gradlint: internal error while checking {escape(r.path)} (please report it):\n{r.internal_error}")
        elif r.skipped == "no such file or directory" or getattr(r, "error", False):
            say(f"gradlint: error: {escape(r.path)}: {r.skipped}")
        elif r.skipped and not quiet and fmt in TEXT_FORMATS:
            say(f"gradlint: warning: {escape(r.path)}: skipped: {r.skipped}")
        elif r.partial and not quiet and fmt in TEXT_FORMATS:
            say(f"gradlint: warning: {escape(r.path)}: {r.partial}")
    if not result.files:
        # ruff's behaviour: a warning, exit 0 (a pre-commit run on a folder of markdown passes).
        say("gradlint: warning: no Python, notebook or ONNX files found under the given paths")


def _add_noqa(projects: list[Any], result: Any, *, exit_zero: bool) -> NoReturn:
    """`--add-noqa`: write a `# noqa: CODE` on each finding's line, in place (ruff's flag). Exits
    as `check` would after it: 1 when findings are left that it could not annotate (a file it
    cannot read or parse, an ONNX model, a notebook, a read-only file), so that a run that was
    meant to leave a code base clean does not pass while it is not; 2 on errors."""
    import io
    import tokenize

    from gradlint.files import Refused, check_writable, locked, text_digest
    from gradlint.files import replace as replace_file
    from gradlint.report.text import escape, finding_line, plural
    from gradlint.results import kind_of
    from gradlint.source import decode
    from gradlint.suppress import add_noqa

    added = 0
    failed = False
    left: list[Any] = []  # the findings no comment was written for
    for r in result.files:
        onnx = kind_of(Path(r.path), r.path) == "onnx"
        # (GL0xx: a file that could not be read or parsed, where no comment can be placed safely)
        findings, cannot = [], []
        for f in r.findings:
            (findings if f.node is None and f.cell is None and not onnx and not f.code.startswith("GL0")
             else cannot).append(f)
        left += cannot
        in_cells = sum(1 for f in r.findings if f.cell is not None)
        if in_cells:
            # (a `# noqa` written in a cell works; this flag only writes into .py files)
            say(f"gradlint: warning: {escape(r.path)}: --add-noqa does not edit notebooks; write `# noqa: CODE` "
                f"on the line in the cell ({plural(in_cells, 'finding')})")
        elif onnx and r.findings:
            # (an ONNX model that did not decode, a Git LFS pointer, is text: the comment broke it)
            say(f"gradlint: warning: {escape(r.path)}: an ONNX model's findings take no comment; "
                "use per-file-ignores to silence them")
        for f in r.findings:
            if f.code.startswith("GL0") and not onnx and f.cell is None:
                # (named with its place: the flag prints no report, and this is where to look)
                say(f"gradlint: warning: {finding_line(f)} (no `# noqa` added: --add-noqa does not comment a "
                    "file it cannot read or parse; fix the file)")
        if not findings:
            continue
        try:
            # the same guarantees as --fix: under the file's lock, only over what was analysed
            with locked(r.path) as lk:
                check_writable(lk.stat)
                raw = lk.read()
                text = decode(raw)
                if r.analysed is not None and text_digest(text) != r.analysed:
                    raise Refused("it changed since it was checked")
                encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
                new, count, not_added = add_noqa(text, findings)
                if count:
                    replace_file(lk, new.encode(encoding), expected=raw)
        except Refused as exc:
            say(f"gradlint: warning: {escape(r.path)}: no noqa added: {exc}")
            left += findings
            continue
        except (OSError, UnicodeError, SyntaxError, LookupError) as exc:
            say(f"gradlint: error: {escape(r.path)}: cannot add noqa: {getattr(exc, 'strerror', None) or exc}")
            failed = True
            continue
        added += count
        left += not_added
        for f in not_added:
            say(f"gradlint: warning: {escape(r.path)}:{f.span.line}: {f.code}: the line ends inside a string "
                "or a continuation; no `# noqa` added")
    say(f"Added {added} noqa directive{'s' if added != 1 else ''}.")
    if left:
        say(f"{plural(len(left), 'finding')} left without a `# noqa` (see above): `gradlint check` still "
            f"reports {'it' if len(left) == 1 else 'them'}.")
    if failed or result.has_errors:
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_FINDINGS if not exit_zero and _still_fail(projects, left) else EXIT_CLEAN)


def _still_fail(projects: list[Any], left: list[Any]) -> bool:
    """Whether a finding `check` would fail on is among `left`, each judged by its project's fail-on."""
    fail_on = {r.path: p.config.fail_on for p in projects if p.result is not None for r in p.result.files}
    return any(f.severity >= fail_on.get(f.path, Severity.INFO) for f in left)


_AT_EXIT: list[bool] = []


def _no_collection_at_exit() -> None:
    """At exit, Python's cyclic collector walks (and frees) every object still alive: after a
    cold run over timm + torchvision, the project index and every file's facts, half a second
    for memory the process is about to give back. Frozen (gc.freeze) at exit, they are left out
    of that pass; files and streams are closed as before."""
    if not _AT_EXIT:
        import atexit
        import gc

        atexit.register(gc.freeze)
        _AT_EXIT.append(True)


def _check_stdin(display: str, select: tuple[str, ...], ignore: tuple[str, ...], extend_select: tuple[str, ...],
                 fail_on: str | None, config_path: str | None, fmt: str, exit_zero: bool, fix: bool,
                 unsafe_fixes: bool, diff: bool, quiet: bool, output_file: Path | None,
                 exclude: tuple[str, ...], extend_exclude: tuple[str, ...], use_cache: bool = True,
                 statistics: bool = False, show_fixes: bool = False) -> NoReturn:
    """`gradlint check --stdin-filename PATH -`: what editors call on an unsaved buffer."""
    from gradlint.api import check_text, exit_code

    from gradlint import projects as runs

    # PATH's project, as `check PATH` takes it
    load = _loader(config_path, select, ignore, extend_select, fail_on, exclude, extend_exclude)
    try:
        config = runs.config_for(display, load, explicit=config_path is not None)
    except ConfigError as exc:
        fail(str(exc))
    _warn_if_nothing_selected(config)
    data = sys.stdin.buffer.read()
    result = check_text(display, data, config, use_cache=use_cache)
    if fix or diff:
        from gradlint.fix import fix_stdin

        new, outcome = fix_stdin(display, data, result, config, unsafe=unsafe_fixes, use_cache=use_cache)
        for problem in outcome.problems:
            say(f"gradlint: {problem}")
        if diff:
            _emit(outcome.diff, "text", output_file)  # (-o: the diff is the report)
            sys.exit(EXIT_FINDINGS if outcome.diff else EXIT_CLEAN)
        # As ruff does: the fixed source on stdout (the editor replaces its buffer with it), what
        # is left on stderr.
        click.echo(new, nl=False)  # bytes, in the source's own encoding
        result = outcome.remaining
        text = render("text", result, quiet=True) if fmt in TEXT_FORMATS else render(fmt, result, rules=_rules(result))
        if output_file is not None:
            _emit(text, fmt, output_file)  # (-o: the report there; it was ignored)
        else:
            click.echo(console_safe(text, sys.stderr), err=True, nl=False)
    else:
        from gradlint.report.text import statistics as render_statistics

        if statistics:
            text = render_statistics(result, "json" if fmt == "json" else "text")
        elif fmt in TEXT_FORMATS:
            text = render(fmt, result, quiet=quiet, show_fixes=show_fixes,
                          source_lines=lambda f: split_lines(data.decode("utf-8", "replace")) if f.cell is None else None)
        else:
            text = render(fmt, result, rules=_rules(result))
        _emit(text, fmt, output_file)
        _warn_about_files(result, quiet=quiet, fmt=fmt)
    sys.exit(exit_code(result, config.fail_on, exit_zero=exit_zero))


@main.command("model")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str, readable=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text for people; json: a list of objects (name, filename, location, forward_known, nodes, chains...).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Read settings (excludes) from this TOML file.")
def model_cmd(paths: tuple[str, ...], fmt: str, config_path: str | None) -> None:
    """Show what gradlint understood of each model in PATHS (default: the current folder): per
    nn.Module class and per ONNX graph, its layers in forward order (kind, module path, fan-in/out,
    init, activation), each opaque node with the reason, and each analysed chain with its
    predicted gradient gain. Exit 0, or 2 when a path cannot be read."""
    from gradlint import projects as runs
    from gradlint.describe import render_text

    # each path with its project's settings (excludes, library paths), and each nested project a
    # walk meets with its own, as `check` takes them
    load = _loader(config_path, (), (), (), None, (), ())
    try:
        projects = runs.plan(list(paths) or ["."], load, explicit=config_path is not None)
    except ConfigError as exc:
        fail(str(exc))
    described = runs.describe(projects, load, explicit=config_path is not None)  # (warns when nothing is found)
    for warning in described.warnings:
        say(f"gradlint: warning: {warning}")
    for error in described.errors:
        say(f"gradlint: error: {error}")
    if fmt == "text" and described.files and not described.models and not described.errors:
        say("gradlint: warning: no nn.Module class or ONNX graph found")
    if fmt == "json":
        click.echo(json.dumps(described.models, indent=2))
    else:
        click.echo(render_text(described.models), nl=False)
    sys.exit(EXIT_ERROR if described.errors else EXIT_CLEAN)


@main.command()
@click.argument("code")
def rule(code: str) -> None:
    """Print the documentation of rule CODE (a code like GL101 or a name like vanishing-gradient):
    severity, default, fixability, options with their defaults, and the rule's explanation."""
    from gradlint.docs import render_page
    from gradlint.registry import get_rule

    found = get_rule(code)
    if found is None:
        fail(f"unknown rule {code!r} (see `gradlint rules`)")
    say(render_page(found), err=False, nl=False)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: an aligned table; json: a list of objects (code, name, severity, default, fixable, summary, url).")
def rules(fmt: str) -> None:
    """List every rule: code, name, severity, whether it is on by default and fixable."""
    from gradlint.docs import default_label
    from gradlint.registry import load_rules

    table = load_rules()
    if fmt == "json":
        click.echo(json.dumps([
            {"code": r.code, "name": r.name, "severity": str(r.severity), "default": r.default_enabled,
             "fixable": r.fixable(), "probe_only": r.probe_only, "summary": r.summary, "url": r.url()}
            for r in table.values()
        ], indent=2))
        return
    click.echo(f"{'code':<6} {'name':<36} {'severity':<8} {'default':<7} {'fix':<3}  summary")
    for r in table.values():
        say(f"{r.code:<6} {r.name:<36} {str(r.severity):<8} {default_label(r):<7} {'yes' if r.fixable() else '':<3}  {r.summary}",
            err=False)


@main.command("config")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Read this TOML file instead of the nearest pyproject.toml.")
@click.option("--select", multiple=True, metavar="CODES", help="As for `check`: show the result of this selection. " + _selector_help)
@click.option("--extend-select", multiple=True, metavar="CODES", help="As for `check`. " + _selector_help)
@click.option("--ignore", multiple=True, metavar="CODES", help="As for `check`. " + _selector_help)
@click.option("--fail-on", type=click.Choice(["error", "warning", "info"]), default=None, help="As for `check`.")
@click.option("--exclude", multiple=True, metavar="PATTERNS", help="As for `check`.")
@click.option("--extend-exclude", multiple=True, metavar="PATTERNS", help="As for `check`.")
@click.argument("path", required=False, type=click.Path(exists=True))
def config_cmd(config_path: str | None, select: tuple[str, ...], extend_select: tuple[str, ...],
               ignore: tuple[str, ...], fail_on: str | None, exclude: tuple[str, ...],
               extend_exclude: tuple[str, ...], path: str | None) -> None:
    """Print the configuration `check` applies to PATH (a file or folder; default: the current
    folder) and where each value came from: `default`, the configuration file's path, or the
    command-line flag. Takes the flags `check` takes, so `gradlint config --select GL1` shows
    what `gradlint check --select GL1` would run."""
    from gradlint import projects as runs
    from gradlint.registry import load_rules

    load = _loader(config_path, select, ignore, extend_select, fail_on, exclude, extend_exclude)
    try:
        config = runs.config_for(path or ".", load, explicit=config_path is not None)
    except ConfigError as exc:
        fail(str(exc))
    for warning in config_warnings(config):
        say(f"gradlint: warning: {warning}")
    say(config_toml(config, load_rules()), err=False, nl=False)


def _toml(value: Any) -> str:
    """A TOML value: strings, booleans, numbers, lists of them, and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else (
            "nan" if value != value else ("inf" if value > 0 else "-inf"))
    return json.dumps(value)


def config_toml(cfg: Config, rules: dict[str, Any]) -> str:
    """The resolved configuration as a `[tool.gradlint]` block that pastes into pyproject.toml;
    each value's origin (default, the file, a flag) in a comment beside it."""
    out = [f"# configuration file: {cfg.path or 'none found (defaults)'}", "[tool.gradlint]"]

    def line(key: str, value: Any, origin_key: str | None = None) -> None:
        out.append(f"{key} = {_toml(value)}  # {cfg.origin(origin_key or key)}")

    line("select", list(cfg.select) if cfg.select is not None else ["ALL"])
    line("extend-select", list(cfg.extend_select))
    line("ignore", list(cfg.ignore))
    line("per-file-ignores", {p: list(c) for p, c in cfg.per_file_ignores})
    line("exclude", list(cfg.exclude))
    line("extend-exclude", list(cfg.extend_exclude))
    line("fail-on", str(cfg.fail_on))
    line("respect-gitignore", cfg.respect_gitignore)
    line("cache-dir", cfg.cache_dir)
    line("max-file-size", cfg.max_file_size)
    line("read-libraries", cfg.read_libraries)
    line("library-paths", list(cfg.library_paths))
    # Not a setting: what the selection comes to (and GL0xx, always on).
    out.append(f"# enabled: {_toml(sorted(cfg.enabled_codes()))}")
    for code, r in rules.items():
        if not r.options:
            continue
        out.append(f"\n[tool.gradlint.{code}]  # {r.name}")
        for key, value in cfg.options_for(code).items():
            out.append(f"{key} = {_toml(value)}  # {cfg.origin(f'{code}.{key}')}")
    return "\n".join(out) + "\n"


def _add_probe() -> None:
    # The probe command's module imports torch lazily, inside the command: listing it here keeps
    # `gradlint --help` complete without making `gradlint check` pay for torch.
    try:
        from gradlint.probe.command import probe
    except ImportError:
        return
    main.add_command(probe)


_add_probe()


if __name__ == "__main__":  # pragma: no cover
    main()
