"""Run a probe end to end: load the target, run the static rules on its file, measure, check, join.

`run_probe(options)` returns a `ProbeReport` (plain data) or raises `ProbeError` (exit 2).
Printing belongs to gradlint.probe.report and the command.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gradlint import PROBE_INSTALL_HINT
from gradlint.findings import Finding, SourceSpan
from gradlint.probe.target import (
    ProbeError, Target, call_mismatch, call_user, check_spec, defined_in, definition_line, fail_from, load_function,
    load_target, positional_arity,
)

DEFAULT_BATCH = 8
FLOAT_DTYPES = ("float32", "float64", "bfloat16", "float16")
INT_DTYPES = ("int64", "int32", "long", "int")


@dataclass
class ProbeOptions:
    target: str
    inputs: str | None = None
    input_shape: tuple[int, ...] | None = None
    input_dtype: str = "float32"
    vocab: int | None = None
    loss: str | None = None
    device: str = "auto"
    steps: int = 3
    seed: int = 0
    dtype: str = "float32"
    onnx: tuple[str, ...] = ()
    gradcheck: bool = True
    config: Any = None  # gradlint.config.Config; None: the nearest pyproject.toml of the target
    time_budget: float | None = None  # seconds: stop measuring past it and report what was measured


@dataclass
class ProbeReport:
    target: str
    path: str  # the target file as findings show it
    device: str
    options: ProbeOptions
    verdicts: list[Any] = field(default_factory=list)  # join.Verdict, static first then probe findings
    measurements: Any = None
    gradcheck: Any = None
    module_classes: dict[str, str] = field(default_factory=dict)
    inputs_from: str = ""
    loss_kind: str = ""
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: the report holds what was measured until then


def check_options(opts: ProbeOptions) -> None:
    """Refuse options that cannot work (ProbeError: exit 2) before anything is imported: the
    target's module runs when imported, and neither it nor a run of minutes should come before
    a typo is reported. The command checks in the parent process, run_probe again for its
    other callers. What needs torch or the user's module (a CUDA device's index, a function's
    signature) is checked once they are loaded."""
    check_spec(opts.target)
    for option, spec in (("--inputs", opts.inputs), ("--loss", opts.loss)):
        if spec is not None:
            check_spec(spec, option)
    if opts.steps < 1:
        raise ProbeError("--steps must be at least 1")
    if opts.dtype not in ("float32", "bfloat16", "float16"):
        raise ProbeError(f"--dtype {opts.dtype}: expected float32, bfloat16 or float16")
    if opts.input_dtype not in FLOAT_DTYPES + INT_DTYPES:
        raise ProbeError(f"--input-dtype {opts.input_dtype}: expected one of {', '.join(FLOAT_DTYPES + INT_DTYPES)}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", opts.device):
        raise ProbeError(f"--device {opts.device}: expected auto, cpu, cuda or cuda:N")
    for path in opts.onnx:
        # As `gradlint check` refuses a path that does not exist: a note after the run was missed.
        if not os.path.exists(path):
            raise ProbeError(f"--onnx {path}: no such file")
        if not os.path.isfile(path):
            raise ProbeError(f"--onnx {path}: not a file")
        if not path.endswith((".onnx", ".onnx.txt")):
            # (a .py given here was checked as the export, silently: its findings joined the model's)
            raise ProbeError(f"--onnx {path}: not an ONNX model (expected a .onnx or .onnx.txt file)")


def preload(opts: ProbeOptions, plot: str | None = None) -> None:
    """Import gradlint's own dependencies before the target's folder goes on sys.path: a sibling
    `onnx.py` or `libcst.py` next to the model (an export script) must never be imported, let
    alone run, in their place. The current folder is off sys.path meanwhile (`python -m`
    puts it first). A `plot` file matplotlib cannot write is refused here, before the target
    is imported: only matplotlib knows its formats."""
    import sys

    saved = list(sys.path)
    here = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.abspath(p) != here]
    try:
        import libcst  # noqa: F401
        import numpy  # noqa: F401

        import gradlint.api  # noqa: F401
        from gradlint.registry import load_rules

        load_rules()
        if opts.onnx:
            import onnx  # noqa: F401

            import gradlint.onnx.load  # noqa: F401
        if plot:
            try:
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot  # noqa: F401
            except ImportError:
                pass  # reported when the plot is drawn
            else:
                from gradlint.probe.report import plot_path_problem

                problem = plot_path_problem(plot)
                if problem is not None:
                    raise ProbeError(problem)
    finally:
        sys.path[:] = saved


def display_path(path: Path) -> str:
    """As `gradlint check` shows a file named on the command line: relative to cwd when below it."""
    try:
        rel = os.path.relpath(path, Path.cwd())
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ProbeError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__})")
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise ProbeError(f"--device {name}: {exc}") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ProbeError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
        return name
    if name == "cpu":
        return name
    raise ProbeError(f"--device {name}: expected auto, cpu, cuda or cuda:N")


# --- inputs -------------------------------------------------------------------------------

def _normalise_inputs(value: Any, what: str) -> tuple[tuple, dict]:
    import torch

    if isinstance(value, torch.Tensor):
        return (value,), {}
    if isinstance(value, (tuple, list)):
        return tuple(value), {}
    if isinstance(value, dict):
        return (), dict(value)
    raise ProbeError(f"{what} returned {type(value).__name__}; expected a tensor, a tuple of arguments or a dict of keyword arguments")


def _embedding_vocab(model: Any) -> int | None:
    """The size of the embedding that reads the input ids: Hugging Face's get_input_embeddings(),
    else the first embedding defined (BERT's word embeddings, not its 2 token types)."""
    import torch.nn as nn

    getter = getattr(model, "get_input_embeddings", None)
    if callable(getter):
        try:
            emb = getter()
        except Exception:  # noqa: BLE001 - a model without one raises NotImplementedError and friends
            emb = None
        if isinstance(emb, (nn.Embedding, nn.EmbeddingBag)):
            return emb.num_embeddings
    sizes = [m.num_embeddings for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    return sizes[0] if sizes else None


def _inferred_shape(model: Any) -> tuple[tuple[int, ...], str, str] | None:
    """(shape, dtype, why) from the first layer that fixes the input's shape, in definition order."""
    import torch.nn as nn

    for name, m in model.named_modules():
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
            return (DEFAULT_BATCH, 16), "int64", f"token ids for {name or 'the model'} ({type(m).__name__})"
        if isinstance(m, nn.Linear):
            return (DEFAULT_BATCH, m.in_features), "float32", f"in_features of {name or 'the model'} (Linear)"
        for cls, spatial in ((nn.Conv1d, (64,)), (nn.Conv2d, (32, 32)), (nn.Conv3d, (8, 16, 16))):
            if isinstance(m, cls):
                return (DEFAULT_BATCH, m.in_channels, *spatial), "float32", f"in_channels of {name or 'the model'} ({cls.__name__})"
        if isinstance(m, nn.LayerNorm):
            return (DEFAULT_BATCH, *m.normalized_shape), "float32", f"normalized_shape of {name or 'the model'} (LayerNorm)"
        for cls, spatial in ((nn.BatchNorm1d, ()), (nn.BatchNorm2d, (32, 32)), (nn.BatchNorm3d, (8, 16, 16))):
            if isinstance(m, cls):
                return (DEFAULT_BATCH, m.num_features, *spatial), "float32", f"num_features of {name or 'the model'} ({cls.__name__})"
        if next(iter(m.parameters(recurse=False)), None) is not None:
            return None
    return None


def _float_dtype(model: Any) -> Any:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def build_inputs(opts: ProbeOptions, target: Target, device: str) -> tuple[Callable[[int], Any], str]:
    """A function step -> (args, kwargs, raw inputs), all on the device; and where they come from."""
    import torch

    from gradlint.probe.measure import to_device

    dev = torch.device(device)
    fn = None
    if opts.inputs:
        fn, source = load_function(opts.inputs, "--inputs", target.module), f"--inputs {opts.inputs}"
    elif opts.input_shape is None and callable(getattr(target.module, "example_inputs", None)):
        fn, source = target.module.example_inputs, f"example_inputs() in {target.path.name}"
    if fn is not None:
        name = getattr(fn, "__name__", type(fn).__name__)
        what = f"{name}()"
        mismatch = call_mismatch(fn, name)
        if mismatch is not None:
            raise ProbeError(f"{source}: {mismatch.reason}; the inputs function is called with no arguments")

        def from_fn(step: int) -> Any:
            raw = call_user(fn, what=f"{what} failed")
            args, kwargs = _normalise_inputs(raw, what)
            return to_device(args, dev), to_device(kwargs, dev), to_device(raw, dev)

        return from_fn, source
    shape, dtype = opts.input_shape, opts.input_dtype
    if shape is None:
        inferred = _inferred_shape(target.model)
        if inferred is None:
            raise ProbeError(
                f"cannot tell what {target.factory_name}() takes: give --inputs FILE.py:fn, --input-shape, "
                f"or define example_inputs() in {target.path.name}")
        shape, dtype, why = inferred
        source = f"random {dtype} of shape {tuple(shape)} ({why})"
    else:
        source = f"random {dtype} of shape {tuple(shape)}"
    tdtype = getattr(torch, dtype)
    model_dtype = _float_dtype(target.model)
    if tdtype.is_floating_point and opts.input_dtype == "float32" and model_dtype not in (None, tdtype):
        # A float64 (or bfloat16) model takes inputs of its own dtype.
        tdtype = model_dtype
        source = source.replace("random float32", f"random {str(tdtype).replace('torch.', '')}")
    vocab = None
    if not tdtype.is_floating_point:
        vocab = opts.vocab or _embedding_vocab(target.model)
        if vocab is None:
            raise ProbeError("integer inputs need --vocab (the model has no nn.Embedding to take it from)")
        source += f", token ids < {vocab}"

    def synthetic(step: int) -> Any:
        if vocab is not None:
            x = torch.randint(0, vocab, tuple(shape), dtype=tdtype)
        else:
            x = torch.randn(tuple(shape), dtype=tdtype)
        x = x.to(dev)
        return (x,), {}, x

    return synthetic, source


# --- loss ---------------------------------------------------------------------------------

def _has_tokens(raw: Any) -> bool:
    import torch

    if isinstance(raw, torch.Tensor):
        return not raw.is_floating_point() and not raw.is_complex() and raw.dtype != torch.bool
    if isinstance(raw, (tuple, list)):
        return any(_has_tokens(v) for v in raw)
    if isinstance(raw, dict):
        return any(_has_tokens(v) for v in raw.values())
    return False


def default_loss_kind(out: Any, raw: Any) -> str:
    if out.dim() == 2 and out.shape[1] >= 2:
        return "cross-entropy against random class labels (output is batch x classes)"
    if out.dim() >= 3 and _has_tokens(raw):
        return "cross-entropy over the last dimension against random token ids (token inputs, sequence output)"
    return "mean squared error against a random normal target of the output's shape"


def build_loss(opts: ProbeOptions, target: Target, seed: int) -> tuple[Callable[[Any, Any, int], Any], str]:
    """A function (output, raw inputs, step) -> scalar loss; targets depend only on (seed, step),
    so the gradient check evaluates the same function the probe measured."""
    import torch
    import torch.nn.functional as F

    from gradlint.probe.measure import first_tensor

    if opts.loss:
        fn = load_function(opts.loss, "--loss", target.module)
        arity = positional_arity(fn)
        name = getattr(fn, "__name__", type(fn).__name__)
        # Checked here, not at the first step: the call's own TypeError would look like the loss failing.
        if call_mismatch(fn, name, (None,) if arity == 1 else (None, None)) is not None:
            raise ProbeError(f"--loss {opts.loss}: {name}() cannot be called as {name}(output) or "
                             f"{name}(output, inputs): its signature is {name}{inspect.signature(fn)}")

        def user_loss(output: Any, raw: Any, step: int) -> Any:
            value = call_user(fn, *((output,) if arity == 1 else (output, raw)), what=f"{name}() failed")
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise ProbeError(f"--loss {opts.loss}: returned {type(value).__name__}"
                                 f"{tuple(value.shape) if isinstance(value, torch.Tensor) else ''}, not a scalar tensor")
            return value.reshape(())

        return user_loss, f"--loss {opts.loss}"

    kinds: list[str] = []

    def default(output: Any, raw: Any, step: int) -> Any:
        own, where = model_loss(output)
        if own is not None:
            if not kinds:
                kinds.append(f"the loss the model returns ({where})")
            return own.reshape(())
        out = first_tensor(output)
        if out is None or not out.is_floating_point():
            raise ProbeError("the model's output holds no floating-point tensor to take a loss of; give --loss FILE.py:fn")
        x = out.float() if out.dtype in (torch.float16, torch.bfloat16) else out
        gen = torch.Generator(device="cpu").manual_seed(seed * 100003 + step)
        kind = default_loss_kind(x, raw)
        if not kinds:
            kinds.append(kind + ("" if isinstance(output, torch.Tensor) else f", on {first_tensor_name(output)}"))
        if kind.startswith("cross-entropy against"):
            labels = torch.randint(0, x.shape[1], (x.shape[0],), generator=gen).to(x.device)
            return F.cross_entropy(x, labels)
        if kind.startswith("cross-entropy over"):
            ids = torch.randint(0, x.shape[-1], tuple(x.shape[:-1]), generator=gen).to(x.device)
            return F.cross_entropy(x.reshape(-1, x.shape[-1]), ids.reshape(-1))
        goal = torch.randn(tuple(x.shape), generator=gen, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
        return F.mse_loss(x, goal)

    default.kinds = kinds  # type: ignore[attr-defined]
    return default, "default"


def _get(output: Any, key: str) -> Any:
    try:
        if hasattr(output, "keys") and key in output:
            return output[key]
    except Exception:  # noqa: BLE001 - a mapping-like we cannot read has no loss for us
        return None
    return getattr(output, key, None) if not isinstance(output, (tuple, list, dict)) else None


def model_loss(output: Any) -> tuple[Any, str]:
    """The loss a model computes itself: a scalar output, an output's 'loss' (dict, Hugging Face
    ModelOutput), or the scalar first element of a tuple (return_dict=False with labels)."""
    import torch

    def scalar(t: Any) -> bool:
        return isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() == 1

    if isinstance(output, torch.Tensor):
        return (output, "a scalar output") if scalar(output) and output.dim() == 0 else (None, "")
    loss = _get(output, "loss")
    if scalar(loss):
        return loss, "output['loss']"
    if isinstance(output, (tuple, list)) and output and scalar(output[0]) and output[0].dim() == 0:
        return output[0], "output[0], a scalar"
    return None, ""


def first_tensor_name(output: Any) -> str:
    """Where measure.first_tensor found its tensor, for the report."""
    import torch

    if isinstance(output, torch.Tensor):
        return "the output"
    for key in ("logits", "last_hidden_state"):
        if isinstance(_get(output, key), torch.Tensor):
            return f"output['{key}'] (the first tensor output)"
    if hasattr(output, "keys"):
        for k in list(output.keys()):
            if isinstance(output[k], torch.Tensor):
                return f"output['{k}'] (the first tensor output)"
    return "output[0] (the first tensor output)"


# --- locations ----------------------------------------------------------------------------

def make_locator(target: Target, model: Any) -> Callable[[str | None], SourceSpan]:
    """Module path -> the line of the innermost class, among it and its parents, defined in the
    target's file; else the factory's line; else line 1."""
    modules = dict(model.named_modules())
    fallback = definition_line(target.factory) if defined_in(target.factory, target.path) else None

    def locate(path: str | None) -> SourceSpan:
        candidates = []
        if path is not None:
            parts = path.split(".") if path else []
            candidates = [".".join(parts[:i]) for i in range(len(parts), -1, -1)]
        else:
            candidates = [""]
        for p in candidates:
            m = modules.get(p)
            if m is not None and defined_in(type(m), target.path):
                line = definition_line(type(m))
                if line:
                    return SourceSpan.point(line, 1)
        return SourceSpan.point(fallback or 1, 1)

    return locate


def nan_region(meas: Any, model: Any, target: Target, path: str) -> Any:
    """The lines of the innermost class, defined in the target's file, that holds the module
    where the first NaN/Inf appeared."""
    from gradlint.probe.join import NanRegion

    nf = meas.nonfinite
    if nf is None or nf.get("module") is None:
        return None
    modules = dict(model.named_modules())
    parts = nf["module"].split(".") if nf["module"] else []
    for i in range(len(parts), -1, -1):
        m = modules.get(".".join(parts[:i]))
        if m is not None and defined_in(type(m), target.path):
            try:
                lines, start = inspect.getsourcelines(type(m))
            except (OSError, TypeError):
                continue
            return NanRegion(path, start, start + len(lines) - 1, nf["module"])
    return None


def _selected(verdicts: list[Any], config: Any, path: Path) -> list[Any]:
    """The probe's findings obey the configuration (select/ignore, per-file-ignores) and
    suppression comments (`# noqa: GL704` on the line a finding points at), as the static
    findings do."""
    from gradlint import suppress
    from gradlint.api import enabled_rules, relative_path

    enabled = enabled_rules(config, relative_path(path, config))
    verdicts = [v for v in verdicts if v.finding.code in enabled]
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return verdicts
    kept = suppress.apply([v.finding for v in verdicts], source)
    return [v for v in verdicts if v.finding in kept]


# --- the run ------------------------------------------------------------------------------

def _cuts(model: Any, make_inputs: Any, make_loss: Any, target: Target, opts: ProbeOptions,
          device: str) -> list[tuple[int, str]]:
    """The stop-gradients of the target's file that one more forward executes (GL707's why)."""
    import torch

    from gradlint.probe.evaluate import find_cuts
    from gradlint.probe.measure import autocast_context

    torch.manual_seed(opts.seed)
    args, kwargs, raw = make_inputs(0)

    def forward() -> Any:
        with autocast_context(device, opts.dtype):
            return make_loss(model(*args, **kwargs), raw, 0)

    try:
        return find_cuts(forward, str(target.path))
    except Exception:  # the explanation is a courtesy: the finding stands without it
        return []


def _output_tensors(value: Any) -> list[Any]:
    """Every tensor of a model's output: itself, or those of its tuples, lists and mappings."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _output_tensors(v)]
    if isinstance(value, dict) or hasattr(value, "keys"):
        try:
            return [t for v in value.values() for t in _output_tensors(v)]
        except Exception:  # noqa: BLE001 - a mapping-like we cannot read holds nothing we can follow
            return []
    return []


def _check_loss_uses_output(model: Any, make_inputs: Any, make_loss: Any, opts: ProbeOptions, device: str) -> None:
    """Raise ProbeError when no parameter got a gradient because the --loss does not depend on
    the model's output (a constant, a `.detach()` of it): GL707 said the model's parameters are
    unused, and the model was not at fault. Told by one more forward: the output carries a
    gradient, and the loss has no path to any of its tensors. When the output carries none, the
    model cut it itself, and GL707 says so."""
    import torch

    from gradlint.probe.measure import autocast_context

    torch.manual_seed(opts.seed)
    try:
        args, kwargs, raw = make_inputs(0)
        with autocast_context(device, opts.dtype):
            output = model(*args, **kwargs)
        outs = [t for t in _output_tensors(output) if t.requires_grad]
        if not outs:
            return
        loss = make_loss(output, raw, 0)
        if loss.requires_grad and any(g is not None for g in torch.autograd.grad(loss, outs, allow_unused=True)):
            return
    except Exception:  # noqa: BLE001 - it ran in the steps; the finding stands without this
        return
    raise ProbeError(f"--loss {opts.loss}: the loss does not depend on the model's output (no gradient path "
                     "leads from the value it returns to the output), so no gradient reaches the model and "
                     "nothing can be measured; compute the loss from the output it is given")


def class_lines(model: Any, target: Target) -> dict[str, tuple[int, int]]:
    """Class name -> (first, last line) for the module classes of the model defined in the target's file."""
    out: dict[str, tuple[int, int]] = {}
    for m in model.modules():
        cls = type(m)
        if cls.__name__ in out or not defined_in(cls, target.path):
            continue
        try:
            lines, start = inspect.getsourcelines(cls)
        except (OSError, TypeError):
            continue
        out[cls.__name__] = (start, start + len(lines) - 1)
    return out


def static_findings(path: Path, opts: ProbeOptions, config: Any) -> tuple[list[Finding], list[str]]:
    from gradlint.api import check_paths

    result = check_paths([path, *(Path(p) for p in opts.onnx)], config, use_cache=False, jobs=1)
    notes = [f"static pass: internal error on {r.path}: {r.internal_error}" for r in result.internal_errors]
    notes += [f"static pass: {r.path}: {r.skipped}" for r in result.files if r.skipped]
    return result.findings, notes


def refuse_unreadable_exports(findings: list[Finding], onnx: tuple[str, ...]) -> None:
    """Raise ProbeError when an --onnx file could not be read (an export that failed or was
    cut short, an empty file, external data refused): its findings were what the run was asked to
    join, and a report that said "GL002 ... not measurable" exited 0 as if the export were sound.
    Called after the static pass, before any step runs."""
    from gradlint.registry import load_rules

    rules = load_rules()
    given = {os.path.realpath(path): path for path in onnx}
    # (the always-on rules are those of input that could not be read: they cannot be ignored)
    broken = [f for f in findings if f.code in rules and rules[f.code].always_on and os.path.realpath(f.path) in given]
    if broken:
        raise ProbeError("; ".join(f"--onnx {given[os.path.realpath(f.path)]}: cannot read the ONNX model ({f.code}): "
                                   f"{f.message}" for f in broken) + "; export the model again")


def thresholds_for(config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The thresholds each gain-predicting rule judges its findings by (its own options, else
    the probe rules'), and every probe rule's options."""
    from gradlint.probe.join import GAINS, Thresholds
    from gradlint.registry import load_rules

    rules = load_rules()
    probe_options = {code: config.options_for(code) for code, rule in rules.items() if rule.probe_only}
    own = Thresholds()
    for opts in probe_options.values():
        own = Thresholds(float(opts.get("vanishing-threshold", own.vanishing)),
                         float(opts.get("exploding-threshold", own.exploding)))
    per_code = {}
    for code, rule in rules.items():
        if rule.probe_measure in GAINS:
            opts = config.options_for(code)
            per_code[code] = Thresholds(float(opts.get("vanishing-threshold", own.vanishing)),
                                        float(opts.get("exploding-threshold", own.exploding)))
    return per_code, probe_options


def _phase(progress: Any, text: str) -> None:
    if progress is not None and hasattr(progress, "phase"):
        progress.phase(text)


def run_probe(opts: ProbeOptions, *, findings: list[Finding] | None = None,
              progress: Callable[[int, int], None] | None = None) -> ProbeReport:
    """Run the whole probe. `findings` replaces the static pass (tests, or a caller that ran it).
    Ctrl-C (KeyboardInterrupt) during the steps or the gradient check, or the end of
    `opts.time_budget`, ends the measuring: the report holds what was measured until then."""
    import time
    try:
        import torch
    except ImportError:
        raise ProbeError(f"gradlint probe needs torch: {PROBE_INSTALL_HINT}") from None
    from gradlint.config import ConfigError, load_config
    from gradlint.probe import gradcheck as gc
    from gradlint.probe import join
    from gradlint.probe.measure import ProbeSetup, run_steps
    from gradlint.registry import load_rules

    check_options(opts)
    deadline = None if opts.time_budget is None else time.monotonic() + opts.time_budget
    device = resolve_device(opts.device)
    torch.manual_seed(opts.seed)
    _phase(progress, "loading the target")
    target = load_target(opts.target)
    model = target.model
    try:
        model.to(torch.device(device))
    except (Exception, SystemExit) as exc:
        raise fail_from(exc, f"moving the model to {device} failed") from None

    config = opts.config
    if config is None:
        try:
            config = load_config(None, target.path.parent)
        except ConfigError as exc:
            raise ProbeError(str(exc)) from None
    notes: list[str] = []
    if findings is None:
        _phase(progress, "static pass")
        findings, static_notes = static_findings(target.path, opts, config)
        refuse_unreadable_exports(findings, opts.onnx)
        notes += static_notes

    make_inputs, inputs_from = build_inputs(opts, target, device)
    make_loss, loss_from = build_loss(opts, target, opts.seed)
    setup = ProbeSetup(device=device, steps=opts.steps, seed=opts.seed, dtype=opts.dtype,
                       make_inputs=make_inputs, make_loss=make_loss, deadline=deadline)
    try:
        meas = run_steps(model, setup, progress)
    except ProbeError:
        raise
    except (Exception, SystemExit) as exc:  # a sys.exit() in a forward is a failure too
        raise fail_from(exc, "running the model failed") from None
    loss_kind = loss_from if loss_from != "default" else (getattr(make_loss, "kinds", []) or ["default"])[0]
    if meas.without_grad:
        if opts.loss and meas.nonfinite is None and len(meas.without_grad) == len(meas.param_owner):
            _check_loss_uses_output(model, make_inputs, make_loss, opts, device)
        meas.cuts = _cuts(model, make_inputs, make_loss, target, opts, device)

    interrupted = meas.interrupted == "interrupted"
    check = gc.GradcheckResult()
    if not opts.gradcheck:
        check.notes.append("gradient check disabled (--no-gradcheck)")
    elif meas.nonfinite is not None:
        check.notes.append("gradient check skipped: the probe met NaN/Inf (GL703)")
    elif meas.interrupted or (deadline is not None and time.monotonic() >= deadline):
        check.notes.append("gradient check skipped: " + ("interrupted" if interrupted else "time budget spent"))
    else:
        _phase(progress, "gradient check (float64)")
        functions = gc.find_functions(target.module)
        model.zero_grad(set_to_none=True)  # the float64 copy needs no copy of the last step's gradients
        torch.manual_seed(opts.seed)
        full = make_inputs(0)
        try:
            # One sample when the model takes it (float64 costs ~4x float32 per sample on CPU),
            # else two (BatchNorm1d in training needs more than one value per channel).
            for size in (1, gc.GRADCHECK_BATCH):
                (args, kwargs), raw = gc.small_batch((full[0], full[1]), full[2], size)
                try:
                    check = gc.run_gradcheck(model, (args, kwargs), lambda out: make_loss(out, raw, 0), functions,
                                             target.module, device, opts.seed, deadline)
                    break
                except (Exception, SystemExit):
                    if size == gc.GRADCHECK_BATCH:
                        raise
        except ProbeError:
            raise
        except KeyboardInterrupt:
            interrupted = True
            from gradlint.probe import INTERRUPTION

            check = gc.GradcheckResult(notes=[f"gradient check {INTERRUPTION[0]}"])
        except (Exception, SystemExit) as exc:
            # Some models do not run in float64 (a hard-coded dtype, a kernel without double):
            # the rest of the probe still stands.
            check = gc.GradcheckResult(notes=[f"gradient check could not run in float64: {type(exc).__name__}: {exc}"])
        for failure in check.failures:
            if failure.obj is not None and defined_in(failure.obj, target.path):
                line = definition_line(failure.obj)
                failure.span = SourceSpan.point(line, 1) if line else None

    module_classes = {name: type(m).__name__ for name, m in model.named_modules()}
    per_code, probe_options = thresholds_for(config)
    path = display_path(target.path)
    verdicts = join.judge_static(list(findings), meas, module_classes, check, per_code,
                                 nan_region(meas, model, target, path), class_lines(model, target),
                                 target.factory_name.split(".")[-1])
    rules = load_rules()
    ctx = join.Context(path=path, locate=make_locator(target, model), rules=rules, options=probe_options)
    verdicts += _selected(join.probe_findings(ctx, meas, check, verdicts), config, target.path)
    notes += meas.notes + check.notes
    if progress is not None and hasattr(progress, "done"):
        progress.done()
    return ProbeReport(target=opts.target, path=path, device=device, options=opts, verdicts=verdicts,
                       measurements=meas, gradcheck=check, module_classes=module_classes,
                       inputs_from=inputs_from, loss_kind=loss_kind, notes=notes, interrupted=interrupted)
