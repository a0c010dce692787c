"""The command line (click): check, rule, rules, config, probe. Printing and exit codes only."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from gradlint import __version__
from gradlint.config import Config, ConfigError, load_config, parse_selector_option, with_overrides
from gradlint.findings import Severity

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
FORMATS = ("text", "json", "sarif", "github")


def fail(message: str) -> NoReturn:
    """A user-facing error: one line on stderr, exit 2, never a traceback."""
    click.echo(f"gradlint: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def resolve_config(config_path: str | None, select: tuple[str, ...], ignore: tuple[str, ...],
                   extend_select: tuple[str, ...], fail_on: str | None) -> Config:
    try:
        config = load_config(config_path, Path.cwd())
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
        return with_overrides(config, **overrides)
    except ConfigError as exc:
        fail(str(exc))


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["check", "probe", "rule", "rules", "config"]

    def invoke(self, ctx: click.Context) -> Any:
        # A crash of gradlint itself must not look like "findings" (Python exits 1 on an
        # uncaught exception): it is exit 2, with the traceback for the bug report.
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # `gradlint check | head`: the reader left; say nothing more (Python's own recipe).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(EXIT_ERROR)
        except Exception:
            import traceback

            click.echo("gradlint: internal error (please report it):\n" + traceback.format_exc().rstrip(), err=True)
            sys.exit(EXIT_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradlint")
def main() -> None:
    """gradlint: find vanishing and exploding gradients, broken gradient clipping and
    numerically unsafe code in PyTorch source and ONNX models, without running them.

    \b
    Exit codes: 0 no findings, 1 findings, 2 usage or configuration error, unreadable
    path, or an internal failure.
    """


_selector_help = "Comma-separated codes or prefixes (GL1, GL201); may be repeated."


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--select", multiple=True, metavar="CODES", help="Enable only these rules. " + _selector_help)
@click.option("--extend-select", multiple=True, metavar="CODES", help="Enable these rules on top of the selection. " + _selector_help)
@click.option("--ignore", multiple=True, metavar="CODES", help="Disable these rules. " + _selector_help)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format: text for people, json (ruff-compatible), sarif 2.1.0 for code scanning, github for Actions annotations.")
@click.option("--output-file", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the report to this file instead of stdout.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings (errors still exit 2).")
@click.option("--fail-on", type=click.Choice(["error", "warning", "info"]), default=None,
              help="Lowest severity that makes the exit code 1. [default: info, any finding fails]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Read settings from this TOML file instead of the nearest pyproject.toml.")
@click.option("--quiet", "-q", is_flag=True, help="Print findings only, no summary.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the per-file cache.")
@click.option("--fix", is_flag=True, help="Apply safe fixes in place.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply fixes that may change behaviour (with --fix or --diff).")
@click.option("--diff", is_flag=True, help="Print the fixes as a unified diff instead of writing them; exit 1 if there are any.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes. [default: CPU count]")
def check(paths: tuple[str, ...], select: tuple[str, ...], extend_select: tuple[str, ...], ignore: tuple[str, ...],
          fmt: str, output_file: Path | None, exit_zero: bool, fail_on: str | None, config_path: str | None,
          quiet: bool, no_cache: bool, fix: bool, unsafe_fixes: bool, diff: bool, jobs: int | None) -> None:
    """Check PATHS (files or folders; default: the current folder).

    Reads PyTorch source (.py) and ONNX models (.onnx) without importing or running them.
    Settings come from [tool.gradlint] in the nearest pyproject.toml; flags override them.
    """
    from gradlint.api import check_paths, exit_code
    from gradlint.report import render

    config = resolve_config(config_path, select, ignore, extend_select, fail_on)
    result = check_paths(list(paths) or ["."], config, use_cache=not no_cache, jobs=jobs)
    if fix or diff:
        from gradlint.fix import apply_fixes

        outcome = apply_fixes(result, write=fix and not diff, unsafe=unsafe_fixes, config=config)
        for problem in outcome.problems:
            click.echo(f"gradlint: {problem}", err=True)
        for path, reason in outcome.skipped:
            click.echo(f"gradlint: warning: {path}: not fixed: {reason}", err=True)
        if diff:
            click.echo(outcome.diff, nl=False)
            sys.exit(EXIT_FINDINGS if outcome.diff else EXIT_CLEAN)
        result = outcome.remaining
        if outcome.fixed:
            files = "1 file" if outcome.files_fixed == 1 else f"{outcome.files_fixed} files"
            click.echo(f"gradlint: fixed {outcome.fixed} finding(s) in {files}", err=True)
        if outcome.fixed or outcome.changed:
            # Fixed files moved lines and may change what other files' rules see, and files
            # changed since the check (another --fix run) have stale findings: report a fresh run.
            result = check_paths(list(paths) or ["."], config, use_cache=not no_cache, jobs=jobs)
    color = output_file is None and fmt == "text" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    text = render(fmt, result, quiet=quiet, color=color)
    for r in result.files:
        if r.internal_error:
            click.echo(f"gradlint: internal error while checking {r.path} (please report it):\n{r.internal_error}", err=True)
        elif r.skipped == "no such file or directory":
            click.echo(f"gradlint: error: {r.path}: no such file or directory", err=True)
        elif r.skipped and not quiet and fmt == "text":
            click.echo(f"gradlint: warning: {r.path}: skipped: {r.skipped}", err=True)
    if output_file is not None:
        from gradlint.files import write_file

        try:
            write_file(output_file, text.encode("utf-8"))
        except OSError as exc:
            fail(f"{output_file}: cannot write report: {exc.strerror or exc}")
    else:
        click.echo(text, nl=False)
    sys.exit(exit_code(result, config.fail_on, exit_zero=exit_zero))


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
    click.echo(render_page(found), nl=False)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: an aligned table; json: a list of objects (code, name, severity, default, fixable, summary, url).")
def rules(fmt: str) -> None:
    """List every rule: code, name, severity, whether it is on by default and fixable."""
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
        default = "on" if r.default_enabled else "off"
        if r.probe_only:
            default = "probe"
        click.echo(f"{r.code:<6} {r.name:<36} {str(r.severity):<8} {default:<7} {'yes' if r.fixable() else '':<3}  {r.summary}")


@main.command("config")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Read this TOML file instead of the nearest pyproject.toml.")
@click.option("--select", multiple=True, metavar="CODES", help="As for `check`: show the result of this selection. " + _selector_help)
@click.option("--extend-select", multiple=True, metavar="CODES", help="As for `check`. " + _selector_help)
@click.option("--ignore", multiple=True, metavar="CODES", help="As for `check`. " + _selector_help)
@click.option("--fail-on", type=click.Choice(["error", "warning", "info"]), default=None, help="As for `check`.")
def config_cmd(config_path: str | None, select: tuple[str, ...], extend_select: tuple[str, ...],
               ignore: tuple[str, ...], fail_on: str | None) -> None:
    """Print the resolved configuration and where each value came from: `default`, the
    configuration file's path, or the command-line flag. Takes the flags `check` takes, so
    `gradlint config --select GL1` shows what `gradlint check --select GL1` would run."""
    from gradlint.registry import load_rules

    cfg = resolve_config(config_path, select, ignore, extend_select, fail_on)
    click.echo(f"# configuration file: {cfg.path or 'none found (defaults)'}")

    def line(key: str, value: Any, origin_key: str | None = None) -> None:
        click.echo(f"{key} = {json.dumps(value)}  # {cfg.origin(origin_key or key)}")

    line("select", list(cfg.select) if cfg.select is not None else ["ALL"])
    line("extend-select", list(cfg.extend_select))
    line("ignore", list(cfg.ignore))
    line("per-file-ignores", {p: list(c) for p, c in cfg.per_file_ignores})
    line("exclude", list(cfg.exclude))
    line("extend-exclude", list(cfg.extend_exclude))
    line("fail-on", str(cfg.fail_on))
    line("respect-gitignore", cfg.respect_gitignore)
    line("cache-dir", cfg.cache_dir)
    line("enabled", sorted(cfg.enabled_codes()), "select")
    for code, r in load_rules().items():
        if not r.options:
            continue
        click.echo(f"\n[{code}]  # {r.name}")
        for key, value in cfg.options_for(code).items():
            click.echo(f"{key} = {json.dumps(value)}  # {cfg.origin(f'{code}.{key}')}")


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
