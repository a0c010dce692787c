"""`gradlint probe` as a user runs it (issues 11 and 13): the report owns stdout, a target that
exits, hangs or is interrupted ends with a clear exit code, the target's folder never shadows
gradlint's imports, factory arguments, the default vocabulary and loss, custom linear layers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gradlint.probe.run import ProbeOptions, run_probe
from gradlint.probe.target import ProbeError, factory_call
from tests.conftest import ROOT

DEVICE = os.environ.get("GRADLINT_PROBE_TEST_DEVICE", "cpu")
_counter = iter(range(10**6))

TARGETS = """
import os, sys, threading, time
import torch
import torch.nn as nn


class Chatty(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)

    def forward(self, x):
        print("debug: forward called")
        os.write(1, b"raw fd 1 write\\n")
        return self.l(x)


class OsExit(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)

    def forward(self, x):
        os._exit(0)


class Hang(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)

    def forward(self, x):
        while True:
            time.sleep(0.05)


class SlowSecondStep(nn.Module):
    calls = 0

    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)
        threading.Thread(target=lambda: time.sleep(10**6), daemon=False).start()

    def forward(self, x):
        SlowSecondStep.calls += 1
        if SlowSecondStep.calls == 2:
            sys.stderr.write("READY\\n")
            sys.stderr.flush()
            time.sleep(60)
        return self.l(x)


def make(depth=2, width=4, act="tanh"):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh() if act == "tanh" else nn.ReLU()]
    return nn.Sequential(*layers)
"""


def write(tmp_path: Path, body: str, name: str | None = None) -> Path:
    path = tmp_path / (name or f"probe_cli_case_{next(_counter)}.py")
    path.write_text(textwrap.dedent(body))
    return path


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def probe_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradlint.cli", "probe", *args, "--device", DEVICE],
                          cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def test_user_prints_go_to_stderr_and_json_stays_valid(tmp_path):
    path = write(tmp_path, TARGETS)
    res = probe_cli(f"{path}:Chatty", "--format", "json", "--input-shape", "4,4", "--no-gradcheck", "--steps", "1")
    assert res.returncode in (0, 1), res.stderr
    json.loads(res.stdout)
    assert "debug: forward called" in res.stderr and "raw fd 1 write" in res.stderr


def test_os_exit_in_the_target_is_exit_2_with_a_message(tmp_path):
    path = write(tmp_path, TARGETS)
    res = probe_cli(f"{path}:OsExit", "--input-shape", "4,4")
    assert res.returncode == 2
    assert "os._exit()" in res.stderr and res.stdout == ""


def test_timeout_ends_a_hung_target_with_exit_2(tmp_path):
    path = write(tmp_path, TARGETS)
    start = time.monotonic()
    res = probe_cli(f"{path}:Hang", "--input-shape", "4,4", "--timeout", "3")
    assert res.returncode == 2 and "timed out after 3 s (--timeout)" in res.stderr
    assert time.monotonic() - start < 60


def test_timeout_after_a_step_says_timeout_not_ctrl_c(tmp_path):
    # the report's note said "interrupted (Ctrl-C)" when --timeout had stopped the probe
    path = write(tmp_path, TARGETS)
    res = probe_cli(f"{path}:SlowSecondStep", "--input-shape", "4,4", "--steps", "3", "--format", "json",
                    "--no-gradcheck", "--timeout", "12", "--device", DEVICE)
    assert res.returncode == 2, res.stderr
    notes = json.loads(res.stdout)["measurements"]["notes"]
    assert any(n.startswith("stopped at --timeout after 1 of 3 steps") for n in notes), notes
    assert not any("Ctrl-C" in n for n in notes)


def test_an_output_file_that_cannot_be_written_is_refused_before_the_target_runs(tmp_path):
    # the target was imported and run, then the report was lost; `-o model.py` replaced the
    # model's source with the report; `--plot x -o x` kept the report and lost the plot
    path = write(tmp_path, "import pathlib\npathlib.Path(__file__).with_suffix('.ran').touch()\n" + TARGETS)
    source = path.read_bytes()
    for args, why in ((("-o", str(tmp_path / "no" / "r.txt")), "no folder"),
                      (("-o", str(path)), "which the run reads"),
                      (("--plot", str(tmp_path / "p.png"), "-o", str(tmp_path / "p.png")), "name the same file"),
                      (("-o", str(tmp_path / "fifo")), "a named pipe nobody reads")):
        if args[-1].endswith("fifo") and not os.path.exists(args[-1]):
            os.mkfifo(args[-1])
        res = probe_cli(f"{path}:Chatty", "--input-shape", "4,4", *args)
        assert res.returncode == 2 and why in res.stderr, res.stderr
    # the target named as a module, from its folder
    res = probe_cli(f"{path.stem}:Chatty", "--input-shape", "4,4", "-o", path.name, cwd=tmp_path)
    assert res.returncode == 2 and "which the run reads" in res.stderr, res.stderr
    assert not path.with_suffix(".ran").exists() and path.read_bytes() == source


def test_ctrl_c_reports_what_was_measured_and_exits_130(tmp_path):
    path = write(tmp_path, TARGETS)
    proc = subprocess.Popen([sys.executable, "-m", "gradlint.cli", "probe", f"{path}:SlowSecondStep",
                             "--input-shape", "4,4", "--steps", "3", "--format", "json", "--device", DEVICE],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 90
    seen = ""
    while "READY" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    assert "READY" in seen
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
    out, err = proc.communicate(timeout=60)  # and the target's non-daemon thread does not hold it
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["measurements"]["steps"] == 1
    assert any("interrupted" in n for n in report["measurements"]["notes"])


def test_keyboard_interrupt_before_anything_is_measured_exits_130(tmp_path):
    path = write(tmp_path, """
        import torch.nn as nn

        class Kbd(nn.Module):
            def __init__(self):
                super().__init__()
                self.l = nn.Linear(4, 4)

            def forward(self, x):
                raise KeyboardInterrupt
    """)
    res = probe_cli(f"{path}:Kbd", "--input-shape", "4,4")
    assert res.returncode == 130 and "interrupted" in res.stderr


@pytest.mark.parametrize("sibling", ["onnx.py", "libcst.py"])
def test_a_sibling_named_like_a_dependency_is_never_imported(tmp_path, sibling):
    marker = tmp_path / "SIBLING_RAN"
    write(tmp_path, f"open({str(marker)!r}, 'w').write('yes')\nraise SystemExit('sibling ran')\n", sibling)
    path = write(tmp_path, TARGETS)
    onnx_file = tmp_path / "m.onnx"
    args = [f"{path}:make", "--no-gradcheck", "--steps", "1"]
    if sibling == "onnx.py":
        import onnx
        from onnx import TensorProto, helper

        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(onnx_file))
        args += ["--onnx", str(onnx_file)]
    res = probe_cli(*args, cwd=tmp_path)
    assert res.returncode in (0, 1), res.stderr
    assert not marker.exists()


def test_factory_arguments_are_literals_only(tmp_path):
    path = write(tmp_path, TARGETS)
    report = run_probe(ProbeOptions(target=f"{path}:make(depth=3, width=6, act='relu')", device=DEVICE, steps=1,
                                    gradcheck=False), findings=[])
    assert [s.type_name for s in report.measurements.sites if s.kind != "container"][:6] == \
        ["Linear", "ReLU", "Linear", "ReLU", "Linear", "ReLU"]
    assert factory_call("m.py:f(1, (2, 3), k={'a': [1]})") == ((1, (2, 3)), {"k": {"a": [1]}})
    for bad in ("m.py:f(__import__('os').system('true'))", "m.py:f(**x)", "m.py:f(x)"):
        with pytest.raises(ProbeError, match="literals"):
            factory_call(bad)


def test_vocab_defaults_to_the_input_embedding_and_the_models_own_loss_is_used(tmp_path):
    path = write(tmp_path, """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F


        class TinyBert(nn.Module):
            def __init__(self):
                super().__init__()
                self.word = nn.Embedding(50, 8)
                self.token_type = nn.Embedding(2, 8)
                self.head = nn.Linear(8, 50)

            def get_input_embeddings(self):
                return self.word

            def forward(self, input_ids):
                assert int(input_ids.max()) < 50
                h = self.word(input_ids) + self.token_type(torch.zeros_like(input_ids))
                logits = self.head(h)
                return {"loss": F.cross_entropy(logits.flatten(0, 1), input_ids.flatten()), "logits": logits}


        class Logits(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 3)

            def forward(self, x):
                return {"hidden": x, "logits": self.fc(x)}
    """)
    report = run_probe(ProbeOptions(target=f"{path}:TinyBert", device=DEVICE, steps=1, gradcheck=False), findings=[])
    assert "token ids < 50" in report.inputs_from
    assert report.loss_kind == "the loss the model returns (output['loss'])"
    report = run_probe(ProbeOptions(target=f"{path}:Logits", device=DEVICE, steps=1, gradcheck=False,
                                    input_shape=(4, 8)), findings=[])
    assert "output['logits']" in report.loss_kind and report.loss_kind.startswith("cross-entropy")


def test_custom_linear_layers_are_measured_as_layers(tmp_path):
    path = write(tmp_path, """
        import torch
        import torch.nn as nn


        class Conv1D(nn.Module):  # transformers.pytorch_utils.Conv1D: weight (in, out)
            def __init__(self, nf, nx):
                super().__init__()
                self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
                self.bias = nn.Parameter(torch.zeros(nf))

            def forward(self, x):
                return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(*x.shape[:-1], -1)


        def make():
            return nn.Sequential(Conv1D(16, 16), nn.Tanh(), Conv1D(16, 16), nn.Tanh(), Conv1D(4, 16))
    """)
    report = run_probe(ProbeOptions(target=f"{path}:make", device=DEVICE, steps=1, gradcheck=False,
                                    input_shape=(4, 16)), findings=[])
    kinds = {s.name: s.kind for s in report.measurements.sites}
    assert kinds["0"] == kinds["2"] == kinds["4"] == "param"


def test_time_budget_ends_with_what_was_measured(tmp_path):
    path = write(tmp_path, TARGETS)
    report = run_probe(ProbeOptions(target=f"{path}:make", device=DEVICE, steps=50, input_shape=(4, 4),
                                    time_budget=1e-9), findings=[])
    assert report.measurements.steps == 1  # the first step always runs
    assert any("time budget" in n for n in report.notes)
    assert not report.gradcheck.ran


def test_plot_marks_findings_and_zero_gradients(tmp_path):
    pytest.importorskip("matplotlib")
    path = write(tmp_path, """
        import torch.nn as nn

        class Spare(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(8, 8)
                self.b = nn.Linear(8, 8)
                self.c = nn.Linear(8, 8)

            def forward(self, x):
                return self.c(self.a(x).detach() + self.b(x))
    """)
    out = tmp_path / "plot.png"
    res = probe_cli(f"{path}:Spare", "--input-shape", "4,8", "--no-gradcheck", "--steps", "1", "--plot", str(out))
    assert res.returncode == 1 and "GL707" in res.stdout, res.stderr
    assert out.stat().st_size > 1000
