"""The `gradlint probe` command. torch is imported inside the command, never at import time,
so that `gradlint check` (which lists this command) does not pay for it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from gradlint import PROBE_INSTALL_HINT

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        shape = tuple(int(p) for p in value.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated sizes like 8,3,224,224") from None
    if not shape or any(s < 1 for s in shape):
        raise click.BadParameter(f"{value!r}: sizes must be positive")
    return shape


class _Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        width = 20
        filled = width * done // max(total, 1)
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\rprobe [{'#' * filled}{'.' * (width - filled)}] step {done}/{total}{end}")
        sys.stderr.flush()


@click.command("probe", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target")
@click.option("--inputs", metavar="FILE.py:FN", help="A function returning the model's inputs: a tensor, a tuple of "
              "positional arguments or a dict of keyword arguments. [default: example_inputs() in the target's file]")
@click.option("--input-shape", callback=_shape, metavar="SHAPE", help="Random inputs of this shape, e.g. 8,3,224,224.")
@click.option("--input-dtype", default="float32", show_default=True,
              help="dtype of --input-shape inputs; integer dtypes (int64) draw token ids below --vocab.")
@click.option("--vocab", type=click.IntRange(min=1), help="Token-id range for integer inputs. [default: the smallest nn.Embedding]")
@click.option("--loss", metavar="FILE.py:FN", help="loss(output) or loss(output, inputs) -> scalar tensor. [default: "
              "cross-entropy against random labels for batch x classes outputs, MSE against random normal targets otherwise]")
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
def probe(target: str, inputs: str | None, input_shape: tuple[int, ...] | None, input_dtype: str, vocab: int | None,
          loss: str | None, device: str, steps: int, seed: int, dtype: str, onnx: tuple[str, ...], no_gradcheck: bool,
          fmt: str, output_file: Path | None, plot: str | None, config_path: str | None) -> None:
    """Run the model of TARGET for a few steps, measure its gradients, and confirm or refute
    every static finding of its file.

    TARGET is path/to/file.py:factory or package.module:factory: a function returning an
    nn.Module, or an nn.Module class that takes no arguments.

    WARNING: the target's file (and --inputs/--loss files) is imported and RUNS WITH YOUR
    RIGHTS, like any Python script you run. Probe only code you trust.

    \b
    Exit codes: 0 nothing confirmed or found, 1 a static finding confirmed or a probe
    finding (GL701-GL706), 2 the target could not be loaded or run.
    """
    from gradlint.probe.target import ProbeError

    config = None
    if config_path is not None:
        from gradlint.config import ConfigError, load_config

        try:
            config = load_config(config_path)
        except ConfigError as exc:
            _fail(str(exc))
    try:
        from gradlint.probe.run import ProbeOptions, run_probe

        opts = ProbeOptions(target=target, inputs=inputs, input_shape=input_shape, input_dtype=input_dtype,
                            vocab=vocab, loss=loss, device=device, steps=steps, seed=seed, dtype=dtype, onnx=onnx,
                            gradcheck=not no_gradcheck, config=config)
        report = run_probe(opts, progress=_Progress())
    except ProbeError as exc:
        _fail(exc.message, exc.user_traceback)
    except ImportError as exc:
        if exc.name == "torch":
            _fail(f"gradlint probe needs torch: {PROBE_INSTALL_HINT}")
        raise

    from gradlint.probe import report as render
    from gradlint.probe.join import confirmed_or_found

    if fmt == "json":
        text = render.render_json(report)
    elif fmt == "sarif":
        text = render.render_sarif(report)
    else:
        color = output_file is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        text = render.render_text(report, color=color)
    if plot:
        try:
            render.plot(report, plot)
        except ImportError:
            _fail(f"--plot needs matplotlib: {PROBE_INSTALL_HINT}")
        except OSError as exc:
            _fail(f"{plot}: cannot write the plot: {exc.strerror or exc}")
    if output_file is not None:
        from gradlint.cli import write_atomic

        try:
            write_atomic(output_file, text)
        except OSError as exc:
            _fail(f"{output_file}: cannot write report: {exc.strerror or exc}")
    else:
        click.echo(text, nl=False)
    sys.exit(EXIT_FINDINGS if confirmed_or_found(report.verdicts) else EXIT_CLEAN)


def _fail(message: str, user_traceback: str | None = None) -> None:
    click.echo(f"gradlint probe: error: {message}", err=True)
    if user_traceback:
        click.echo(user_traceback, err=True)
    sys.exit(EXIT_ERROR)
