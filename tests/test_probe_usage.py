"""`gradlint probe` refuses a command line that cannot work before it imports anything of the
user's (exit 2, one line naming the option or the function and what is wrong), and blames the
right party when a call fails: the user's call that does not fit a signature, the user's code
raising, or gradlint itself."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gradlint.probe.target import ProbeError, call_user
from tests.cli_helpers import assert_one_line_error
from tests.conftest import ROOT

pytestmark = pytest.mark.torch

DEVICE = os.environ.get("GRADLINT_PROBE_TEST_DEVICE", "cpu")
# Only matplotlib knows the formats it writes: without it --plot is refused after the run.
NEEDS_MATPLOTLIB = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")

# Every target announces its import on stderr: a usage error must come before it.
MODEL = """
import sys
import torch
import torch.nn as nn

sys.stderr.write("TARGET IMPORTED\\n")


class Tiny(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.fc = nn.Linear(d, 2)

    def forward(self, x):
        return self.fc(x)


def need(width):
    return nn.Linear(width, 2)


def make_d(d=4):
    return Tiny(d)


def inner_type_error():
    return nn.Linear("four", 2)


def needs_arg(n):
    return torch.randn(n, 4)


def no_args_loss():
    return torch.zeros(())


def loss_of_three(out, inputs, extra):
    return out.sum()


def constant_loss(out):
    return torch.ones((), requires_grad=True)
"""


def write(tmp_path: Path, body: str = MODEL, name: str = "m.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def probe_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # The test's options come last: a --device among them wins.
    return subprocess.run([sys.executable, "-m", "gradlint.cli", "probe", "--device", DEVICE, "--steps", "1",
                           "--no-gradcheck", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


# --- a call that does not fit the function's signature is the user's usage error -------------

@pytest.mark.parametrize("args,needles", [
    (["m.py:need"], ["m.py:need: need() missing required argument 'width'", "give it as m.py:need(width=...)"]),
    (["m.py:make_d(q=3)"], ["m.py:make_d(q=3): make_d(): got an unexpected keyword argument 'q'",
                            "its signature is make_d(d=4)"]),
    (["m.py:make_d(1, 2, 3)"], ["m.py:make_d(1, 2, 3): make_d(): too many positional arguments",
                                "its signature is make_d(d=4)"]),
    (["m.py:Tiny(q=1)"], ["Tiny(): got an unexpected keyword argument 'q'", "its signature is Tiny(d=4)"]),
    (["m.py:Tiny", "--inputs", "m.py:needs_arg"],
     ["--inputs m.py:needs_arg: needs_arg() missing required argument 'n'", "called with no arguments"]),
    (["m.py:Tiny", "--loss", "m.py:no_args_loss"],
     ["--loss m.py:no_args_loss: no_args_loss() cannot be called as no_args_loss(output) or "
      "no_args_loss(output, inputs)"]),
    (["m.py:Tiny", "--loss", "m.py:loss_of_three"], ["--loss m.py:loss_of_three: loss_of_three() cannot be called"]),
])
def test_a_call_that_does_not_fit_the_signature_is_a_usage_error(tmp_path, args, needles):
    write(tmp_path)
    res = probe_cli(*args, cwd=tmp_path)
    line = assert_one_line_error(_without_import_line(res), *needles)
    assert "internal error" not in line


def test_a_loss_that_ignores_the_output_is_a_usage_error_naming_it(tmp_path):
    # it exited 1 with GL707 blaming the model ("are they used at all?") for the loss's constant
    write(tmp_path)
    res = probe_cli("m.py:Tiny", "--input-shape", "4,4", "--loss", "m.py:constant_loss", cwd=tmp_path)
    line = assert_one_line_error(_without_import_line(res), "--loss m.py:constant_loss: the loss does not depend "
                                 "on the model's output")
    assert "GL707" not in res.stdout + line


def _truncated_export(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    path.write_bytes(data[: len(data) // 2])  # an export killed half-way


@pytest.mark.parametrize("content", [b"", "truncated"], ids=["empty", "truncated"])
def test_an_onnx_export_that_cannot_be_read_is_an_error_before_the_steps(tmp_path, content):
    # it was reported as "GL002 ... not measurable" and the run exited 0, as if the export were sound
    write(tmp_path)
    if content == "truncated":
        _truncated_export(tmp_path / "m.onnx")
    else:
        (tmp_path / "m.onnx").write_bytes(content)
    res = probe_cli("m.py:Tiny", "--input-shape", "4,4", "--onnx", "m.onnx", cwd=tmp_path)
    assert res.stdout == ""  # (no steps ran: the report would be on stdout)
    assert_one_line_error(_without_import_line(res), "--onnx m.onnx: cannot read the ONNX model (GL002)",
                          "export the model again")


def _without_import_line(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    # The signature is read once the module is imported: its announcement is expected here.
    return subprocess.CompletedProcess(res.args, res.returncode, res.stdout,
                                       res.stderr.replace("TARGET IMPORTED\n", ""))


def test_a_type_error_inside_the_users_factory_is_theirs_with_their_traceback(tmp_path):
    write(tmp_path)
    res = probe_cli("m.py:inner_type_error", cwd=tmp_path)
    assert res.returncode == 2
    assert "calling inner_type_error() failed: TypeError" in res.stderr
    assert "internal error" not in res.stderr
    assert "your code only" in res.stderr and "m.py" in res.stderr and "gradlint/probe" not in res.stderr


def test_a_call_whose_signature_cannot_be_read_is_still_the_users():
    # max has no signature inspect can read: the call is tried, and its TypeError, raised before
    # any frame of the callee ran, is the user's call that does not fit, not gradlint's bug.
    with pytest.raises(ProbeError) as err:
        call_user(max, what="calling max() failed")
    assert err.value.message.startswith("calling max() failed: TypeError")
    assert "internal error" not in err.value.message


def test_a_bug_in_gradlint_is_still_called_one():
    def ours():
        raise TypeError("a gradlint bug")

    ours.__code__ = ours.__code__.replace(co_filename=str(ROOT / "gradlint" / "probe" / "run.py"))
    with pytest.raises(ProbeError, match="internal error in gradlint"):
        call_user(ours, what="calling ours() failed")


# --- options are checked before the target is imported ----------------------------------------

@pytest.mark.parametrize("args,needles", [
    (["m.py:Tiny", "--input-dtype", "foo"], ["--input-dtype foo: expected one of float32"]),
    (["m.py:make_d(d=foo)"], ["factory arguments must be Python literals"]),
    (["m.py:make_d(d=1"], ["expected path/to/file.py:name"]),
    (["m.txt:make_d"], ["m.txt: no such file, and m is a module (m.py), not a package"]),
    (["notes.txt:make_d"], ["notes.txt: not a .py file"]),
    (["missing.py:make_d"], ["missing.py: no such file"]),
    (["sub/:make_d"], ["sub/: not a .py file"]),
    (["m.py:Tiny", "--inputs", "inp.txt:fn"], ["--inputs inp.txt:fn: inp.txt: no such module", "and no such file"]),
    (["m.py:Tiny", "--loss", "my-loss"], ["--loss my-loss: expected a function of the target's file"]),
    (["m.py:Tiny", "--loss", "m.py:loss(2)"], ["--loss m.py:loss(2): takes no arguments"]),
    (["m.py:Tiny", "--device", "gpu"], ["--device gpu: expected auto, cpu, cuda or cuda:N"]),
    (["m.py:Tiny", "--onnx", "nonexist.onnx"], ["--onnx nonexist.onnx: no such file"]),
    (["m.py:Tiny", "--onnx", "notes.txt"], ["--onnx notes.txt: not an ONNX model (expected a .onnx"]),
    pytest.param(["m.py:Tiny", "--plot", "out.txt"], ["--plot out.txt: matplotlib cannot write .txt files",
                                                      "png, ps"], marks=NEEDS_MATPLOTLIB),
    pytest.param(["m.py:Tiny", "--plot", "nodir/out.png"], ["--plot nodir/out.png: no such folder nodir"],
                 marks=NEEDS_MATPLOTLIB),
])
def test_a_usage_error_comes_before_the_target_is_imported(tmp_path, args, needles):
    write(tmp_path)
    write(tmp_path, "x = 1\n", name="notes.txt")
    (tmp_path / "sub").mkdir()
    res = probe_cli(*args, cwd=tmp_path)
    assert_one_line_error(res, *needles)
    assert "TARGET IMPORTED" not in res.stderr


# --- --input-shape -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,needle", [
    ("8,x", "'x' is not an integer"), ("x,4", "'x' is not an integer"), ("x", "'x' is not an integer"),
    ("8,4.5", "'4.5' is not an integer"), ("8,0", "sizes must be positive"), (",", "expected comma-separated"),
])
def test_input_shape_names_the_part_that_is_not_a_size(tmp_path, shape, needle):
    write(tmp_path)
    res = probe_cli("m.py:Tiny", "--input-shape", shape, cwd=tmp_path)
    assert res.returncode == 2 and needle in res.stderr, res.stderr
    assert "TARGET IMPORTED" not in res.stderr


def test_input_shape_takes_commas_or_x_between_sizes():
    from gradlint.probe.command import _shape

    assert _shape(None, None, "8,3, 32,32") == (8, 3, 32, 32)  # type: ignore[arg-type]
    assert _shape(None, None, "8x3x32x32") == (8, 3, 32, 32)  # type: ignore[arg-type]


# --- a plot that cannot be written does not lose the report ----------------------------------

@NEEDS_MATPLOTLIB
def test_a_plot_that_fails_keeps_the_report(tmp_path, monkeypatch):
    from gradlint.probe import isolate
    from gradlint.probe import report as render
    from gradlint.probe.run import ProbeOptions

    def broken(report, path):
        raise ValueError("the backend gave up")

    monkeypatch.setattr(render, "plot", broken)
    path = write(tmp_path, MODEL.replace("sys.stderr.write", "len"), name="plot_fails_target.py")
    opts = ProbeOptions(target=f"{path}:Tiny", device=DEVICE, steps=1, gradcheck=False)
    outcome = isolate._run(isolate.Request(opts, "text", False, str(tmp_path / "out.png"),
                                           stdout_is_report=True, progress=False))
    assert outcome.exit_code == 2
    assert outcome.text.startswith("gradlint probe ")
    assert "out.png: the plot could not be drawn" in outcome.error and "the backend gave up" in outcome.error
