"""The `gradlint probe` command. torch and the user's code run in a child process
(gradlint.probe.isolate): this module imports neither, so `gradlint check`, which lists the
command, does not pay for them, and a target that exits or hangs cannot take the report along."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click


EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    # An x separates sizes only between digits (8x3x224x224): a stray x is a size that is not one,
    # never a separator that silently drops a dimension.
    parts = [p for p in re.split(r"[,\s]+|(?<=\d)x(?=\d)", value) if p]
    if not parts:
        raise click.BadParameter(f"{value!r}: expected comma-separated sizes like 8,3,224,224")
    for p in parts:
        if not re.fullmatch(r"[+-]?\d+", p):
            raise click.BadParameter(f"{value!r}: {p!r} is not an integer; expected comma-separated sizes "
                                     "like 8,3,224,224")
    shape = tuple(int(p) for p in parts)
    if any(s < 1 for s in shape):
        raise click.BadParameter(f"{value!r}: sizes must be positive")
    return shape


@click.command("probe", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target")
@click.option("--inputs", metavar="FILE.py:FN", help="A function returning the model's inputs: a tensor, a tuple of "
              "positional arguments or a dict of keyword arguments. [default: example_inputs() in the target's file]")
@click.option("--input-shape", callback=_shape, metavar="SHAPE", help="Random inputs of this shape, e.g. 8,3,224,224.")
@click.option("--input-dtype", default="float32", show_default=True,
              help="dtype of --input-shape inputs; integer dtypes (int64) draw token ids below --vocab.")
@click.option("--vocab", type=click.IntRange(min=1), help="Token-id range for integer inputs. [default: the input embedding's size]")
@click.option("--loss", metavar="FILE.py:FN", help="loss(output) or loss(output, inputs) -> scalar tensor. [default: the loss the model returns (a scalar "
              "output, output['loss']); else, on the first tensor output, cross-entropy against random labels for "
              "batch x classes outputs, MSE against random normal targets otherwise]")
@click.option("--device", default="auto", show_default=True, help="auto (cuda when available), cpu, cuda or cuda:N.")
@click.option("--steps", type=click.IntRange(min=1), default=3, show_default=True, help="Probe steps (fresh random batches, no optimiser step).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the model's initialisation, the inputs and the targets.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True,
              help="Forward pass precision (autocast when not float32).")
@click.option("--onnx", multiple=True, type=click.Path(dir_okay=False), metavar="MODEL.onnx",
              help="Also run the static rules on this ONNX export and join its findings.")
@click.option("--no-gradcheck", is_flag=True, help="Skip the float64 finite-difference gradient check (GL704).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text", show_default=True)
@click.option("--output-file", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here instead of stdout.")
@click.option("--plot", type=click.Path(dir_okay=False), metavar="OUT.png",
              help="Draw per-layer gradient norms on a log scale with the predicted curve (needs matplotlib).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Read settings from this TOML file.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop measuring after this long (between steps, gradient-check directions and modules) and "
                   "report what was measured.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Hard limit: past it the probe is interrupted, reports what it can, and exits 2 (a hung target).")
def probe(target: str, inputs: str | None, input_shape: tuple[int, ...] | None, input_dtype: str, vocab: int | None,
          loss: str | None, device: str, steps: int, seed: int, dtype: str, onnx: tuple[str, ...], no_gradcheck: bool,
          fmt: str, output_file: Path | None, plot: str | None, config_path: str | None, time_budget: float | None,
          timeout: float | None) -> None:
    """Run the model of TARGET for a few steps, measure its gradients, and confirm or refute
    every static finding of its file.

    TARGET is path/to/file.py:factory or package.module:factory: a function returning an
    nn.Module, or an nn.Module class; literal arguments may follow, as in
    'model.py:make_model(depth=12, act="gelu")' (read as Python literals, never evaluated).

    WARNING: the target's file (and --inputs/--loss files) is imported and RUNS WITH YOUR
    RIGHTS, like any Python script you run. Probe only code you trust.

    \b
    Exit codes: 0 nothing confirmed or found, 1 a static finding confirmed or a probe
    finding (GL701-GL707, info excepted), 2 a usage error (found before the target is
    imported where it can be), an --onnx export that cannot be read, or the target could not
    be loaded or run, exited, or ran past --timeout, 130 interrupted (Ctrl-C: what was
    measured is reported).
    """
    config = None
    if config_path is not None:
        from gradlint.config import ConfigError, load_config

        try:
            config = load_config(config_path)
        except ConfigError as exc:
            _fail(str(exc))
    from gradlint.probe.isolate import Request, run_isolated
    from gradlint.probe.run import ProbeOptions, check_options
    from gradlint.probe.target import ProbeError

    opts = ProbeOptions(target=target, inputs=inputs, input_shape=input_shape, input_dtype=input_dtype,
                        vocab=vocab, loss=loss, device=device, steps=steps, seed=seed, dtype=dtype, onnx=onnx,
                        gradcheck=not no_gradcheck, config=config, time_budget=time_budget)
    try:
        check_options(opts)  # here, in the parent: the child imports the user's module at once
    except ProbeError as exc:
        _fail(exc.message)
    if output_file is not None:
        _check_output(output_file, target, inputs, loss, onnx, plot)
    color = fmt == "text" and output_file is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    outcome = run_isolated(Request(opts, fmt, color, plot, stdout_is_report=output_file is None,
                                   progress=sys.stderr.isatty()), timeout)
    if outcome.text:
        if output_file is not None:
            from gradlint.report.destination import write

            try:
                write(output_file, outcome.text.encode("utf-8", "backslashreplace"))
            except OSError as exc:
                _fail(f"{output_file}: cannot write report: {exc.strerror or exc}")
        else:
            click.echo(outcome.text, nl=False)
    if outcome.error:
        click.echo(f"gradlint probe: {'error: ' if outcome.exit_code == EXIT_ERROR else ''}{outcome.error}", err=True)
        if outcome.user_traceback:
            click.echo(outcome.user_traceback, err=True)
    sys.exit(outcome.exit_code)


def _check_output(output_file: Path, target: str, inputs: str | None, loss: str | None, onnx: tuple[str, ...],
                  plot: str | None) -> None:
    """-o FILE is refused before the target runs when the report could not go there, or would
    replace a file the probe reads (`-o model.py` replaced the model's source) or the plot."""
    from gradlint.report.destination import Unwritable, check

    if not str(output_file) or str(output_file) == ".":
        _fail("--output-file: an empty path")
    files = [path for spec in (target, inputs, loss) if spec for path in _spec_files(spec)]
    try:
        check(output_file, [*files, *onnx], what="reads")
    except Unwritable as exc:
        _fail(f"{output_file}: cannot write the report there: {exc}")
    if plot is not None and os.path.realpath(plot) == os.path.realpath(output_file):
        _fail(f"{output_file}: --plot and --output-file name the same file: the plot would be lost")


def _spec_files(spec: str) -> list[str]:
    """The file a FILE.py:NAME or package.module:NAME spec names (a module is looked for from the
    current folder, as the probe imports it: `-o m.py` with the target `m:Net` replaced the
    model's source too); none for a function of the target's file (`--loss fn`)."""
    from gradlint.probe.target import ProbeError, names_a_file, split_spec

    try:
        head = split_spec(spec)[0]
    except ProbeError:
        return []
    if names_a_file(head):
        return [head]
    parts = head.split(".")
    if not all(part.isidentifier() for part in parts):
        return []
    base = os.path.join(*parts)
    return [f for f in (base + ".py", os.path.join(base, "__init__.py")) if os.path.isfile(f)]


def _fail(message: str, user_traceback: str | None = None) -> None:
    click.echo(f"gradlint probe: error: {message}", err=True)
    if user_traceback:
        click.echo(user_traceback, err=True)
    sys.exit(EXIT_ERROR)
