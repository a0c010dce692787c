"""`gradlint model PATH...`: what the front-ends understood, per nn.Module class and ONNX graph."""

from __future__ import annotations

import importlib.util
import json
import re

from gradlint.config import Config
from gradlint.describe import KINDS, describe_paths, render_text
from tests.conftest import FIXTURES, ROOT, run_cli

_spec = importlib.util.spec_from_file_location("onnx_fixture_gen", ROOT / "fixtures" / "onnx" / "generate.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)  # type: ignore[union-attr]

SOURCE = """\
import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return x + self.fc(self.norm(x))


class Net(nn.Module):
    def __init__(self, d=64, depth=4):
        super().__init__()
        self.stem = nn.Linear(d, d)
        self.blocks = nn.Sequential(*[Block(d) for _ in range(depth)])
        self.head = nn.Sequential(nn.Linear(d, d), nn.Sigmoid(), nn.Linear(d, d), nn.Sigmoid(), nn.Linear(d, 10))
        self.mystery = torch.hub.load("x", "y")
        nn.init.kaiming_normal_(self.stem.weight, nonlinearity="relu")

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = self.blocks(x)
        x = self.head(x)
        return self.mystery(x)


class NoForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
"""


def _models(tmp_path, source=SOURCE, name="net.py"):
    path = tmp_path / name
    path.write_text(source)
    result = run_cli("model", "--format", "json", str(path))
    assert result.returncode == 0, result.stderr
    return {m["name"]: m for m in json.loads(result.stdout)}, path


def _all_nodes(nodes):
    for n in nodes:
        yield n
        yield from _all_nodes(n.get("children", []))
        for b in n.get("branches", []):
            yield from _all_nodes(b)


def test_json_lists_every_class_with_its_nodes_in_forward_order(tmp_path):
    models, path = _models(tmp_path)
    assert set(models) == {"Block", "Net", "NoForward"}
    net = models["Net"]
    assert net["filename"] == str(path) and net["location"] == {"line": 15, "column": 7}
    assert net["forward_known"] is True
    kinds = [n["kind"] for n in net["nodes"]]
    assert kinds == ["param", "activation"] + ["residual"] * 4 + ["param", "activation"] * 2 + ["param", "opaque"]
    stem = net["nodes"][0]
    assert stem["name"] == "stem" and stem["fan_in"] == 64 and stem["fan_out"] == 64
    assert stem["init"] == {"scheme": "kaiming_normal", "a": 0.0, "mode": "fan_in", "nonlinearity": "relu"}
    assert stem["activation"] == ["relu"]
    block = net["nodes"][2]
    assert [(c["kind"], c["name"]) for c in block["children"]] == [("norm", "blocks.0.norm"), ("param", "blocks.0.fc")]
    opaque = net["nodes"][-1]
    assert opaque["name"] == "mystery" and opaque["reason"]
    assert all(n["kind"] in KINDS for n in _all_nodes(net["nodes"]))


def test_chains_carry_their_predicted_gain(tmp_path):
    models, _ = _models(tmp_path)
    chains = models["Net"]["chains"]
    head = [c for c in chains if c["layers"] == ["head.0", "head.2", "head.4"]]
    assert len(head) == 1 and head[0]["depth"] == 3 and 0 < head[0]["gain"] < 1
    assert head[0]["activations"] == ["sigmoid"]


def test_a_class_without_forward_says_why_and_lists_its_layers(tmp_path):
    models, _ = _models(tmp_path)
    m = models["NoForward"]
    assert m["forward_known"] is False and "no forward" in m["note"]
    assert m["nodes"] == [] and [layer["name"] for layer in m["layers"]] == ["fc"]


def test_undecided_branches_show_every_path(tmp_path):
    src = """
import torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)
    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return self.b(x)
"""
    models, _ = _models(tmp_path, src)
    net = models["Net"]
    assert [n["name"] for n in net["nodes"]] == ["a"]
    assert [[n["name"] for n in p] for p in net["other_paths"]] == [["b"]]


def test_text_output_is_for_people(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(SOURCE)
    result = run_cli("model", str(path))
    assert result.returncode == 0
    out = result.stdout
    assert f"{path}:15:7: Net (forward followed, 1 opaque node)" in out
    assert "reason:" in out and "chain head.0 .. head.4: 3 layers (sigmoid), predicted gradient gain" in out
    assert "NoForward (forward not followed: NoForward has no forward)" in out


def test_onnx_graphs_are_described_from_the_same_ir(tmp_path):
    path = tmp_path / "stack.onnx"
    path.write_bytes(gen.post_ln_stack(depth=3).SerializeToString())
    result = run_cli("model", "--format", "json", str(path))
    assert result.returncode == 0, result.stderr
    (graph,) = json.loads(result.stdout)
    assert graph["filename"] == str(path) and graph["forward_known"] is True
    kinds = [n["kind"] for n in graph["nodes"]]
    assert kinds.count("residual") == 3 and kinds.count("norm") == 3
    assert graph["nodes"][0]["children"][0]["kind"] == "param"
    assert graph["transformer_blocks"] == 3
    # the text rounds a measured init for people (it printed mean=-0.0008960633011995123); json
    # keeps every digit
    text = run_cli("model", str(path)).stdout
    measured = [line for line in text.splitlines() if "init measured(" in line]
    assert measured and all(re.search(r"mean=-?[\d.]+(e-?\d+)?, variance=", line) for line in measured)
    assert all(len(m) <= 10 for line in measured for m in re.findall(r"=(-?[\d.e-]+)", line)), measured


def test_bad_paths_exit_2_naming_the_file_and_others_are_still_described(tmp_path):
    good = tmp_path / "good.py"
    good.write_text(SOURCE)
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\ndef f(:\n")
    result = run_cli("model", "--format", "json", str(tmp_path / "missing.py"), str(broken), str(good))
    assert result.returncode == 2
    assert f"{tmp_path / 'missing.py'}: no such file or directory" in result.stderr
    assert f"{broken}:2:" in result.stderr
    assert {m["name"] for m in json.loads(result.stdout)} == {"Block", "Net", "NoForward"}


def test_paths_it_cannot_read_are_errors_and_finding_nothing_is_said(tmp_path):
    # a FIFO, a broken link and a link loop named on the command line were passed over in
    # silence (exit 0), where the help and `check` say exit 2 naming the file
    import os

    (tmp_path / "good.py").write_text(SOURCE)
    os.mkfifo(tmp_path / "fifo.py")
    (tmp_path / "broken.py").symlink_to(tmp_path / "nowhere.py")
    (tmp_path / "loop1.py").symlink_to(tmp_path / "loop2.py")
    (tmp_path / "loop2.py").symlink_to(tmp_path / "loop1.py")
    result = run_cli("model", "--format", "json", "fifo.py", "broken.py", "loop1.py", "good.py", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    for name, why in (("fifo.py", "not a regular file"), ("broken.py", "broken symbolic link"),
                      ("loop1.py", "symbolic link loop")):
        assert f"gradlint: error: {name}: {why}" in result.stderr
    assert {m["name"] for m in json.loads(result.stdout)} == {"Block", "Net", "NoForward"}
    # nothing to describe: said on stderr, exit 0 (as `check` does)
    (tmp_path / "empty").mkdir()
    (tmp_path / "plain.py").write_text("x = 1\n")
    (tmp_path / "big.py").write_text("x = 1\n" * 20_001)
    for args, said in ((["empty"], "no Python, notebook or ONNX files found"),
                       (["plain.py"], "no nn.Module class or ONNX graph found"),
                       (["big.py"], "big.py: skipped: 20001 lines")):
        result = run_cli("model", *args, cwd=tmp_path)
        assert result.returncode == 0 and result.stdout == "" and said in result.stderr, (args, result.stderr)


def test_describe_paths_on_the_fixtures_matches_what_the_rules_read():
    described = describe_paths([FIXTURES / "architecture" / "models_as_written.py"], Config())
    assert not described.errors
    by_name = {m["name"]: m for m in described.models}
    assert [c["depth"] for c in by_name["ConfigMLP"]["chains"]] == [12]
    assert by_name["OneWayOnly"]["chains"] == [] and by_name["OneWayOnly"]["other_paths"]
    assert "ConvStack" in render_text(described.models)


def test_onnx_models_carry_a_coverage_line_per_graph(tmp_path):
    import onnx.parser

    text = (FIXTURES / "onnx" / "decomposed_ops.onnx.txt").read_text(encoding="utf-8")
    (tmp_path / "m.onnx").write_bytes(onnx.parser.parse_model(text).SerializeToString())
    (model,) = describe_paths([tmp_path / "m.onnx"], Config(root=str(tmp_path))).models
    (graph,) = model["coverage"]
    assert graph["understood"] == graph["on_path"] == 18 and graph["opaque"] == []
    assert "coverage of decomposed: 18 of 18 nodes on the data path understood" in render_text([model])
    # an op of a domain gradlint does not know is opaque, and counted with its reason
    from onnx import TensorProto, helper

    node = helper.make_node("Mystery", ["x"], ["y"], domain="com.example")
    graph_proto = helper.make_graph([node], "odd", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model_proto = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 17),
                                                                helper.make_opsetid("com.example", 1)])
    (tmp_path / "odd.onnx").write_bytes(model_proto.SerializeToString())
    (odd,) = describe_paths([tmp_path / "odd.onnx"], Config(root=str(tmp_path))).models
    (g,) = odd["coverage"]
    assert g["understood"] < g["on_path"] and g["opaque"], g
    # Python classes carry no coverage entry
    (tmp_path / "net.py").write_text("import torch.nn as nn\n\nclass N(nn.Module):\n"
                                     "    def __init__(self):\n        super().__init__()\n"
                                     "        self.fc = nn.Linear(2, 2)\n\n    def forward(self, x):\n"
                                     "        return self.fc(x)\n", encoding="utf-8")
    (py,) = describe_paths([tmp_path / "net.py"], Config(root=str(tmp_path))).models
    assert "coverage" not in py


def test_notebook_models_are_located_by_cell():
    described = describe_paths([FIXTURES / "notebooks" / "model.ipynb"], Config(root=str(ROOT)))
    (model,) = [m for m in described.models if m["name"] == "Net"]
    assert model["location"]["cell"] == 4 and model["location"]["line"] == 1
    assert "model.ipynb:cell 4:1:" in render_text([model])


DEEP = """\
import torch
import torch.nn as nn


class DeepTanh(nn.Module):
    def __init__(self, width=256, depth=40):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.head(x)


class Three(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())

    def forward(self, x):
        return self.body(x)
"""


def test_text_prints_a_run_of_identical_layers_once_under_a_count_and_json_keeps_every_node(tmp_path):
    path = tmp_path / "deep.py"
    path.write_text(DEEP)
    out = run_cli("model", str(path)).stdout
    deep = out.split("DeepTanh")[1].split("Three")[0]
    assert "40 × the 2 nodes below (layers.0 .. layers.39)" in deep
    assert deep.count("linear 256 -> 256") == 1 and "layers.1 " not in deep
    assert "head" in deep and "χ ≈" in deep
    three = out.split("Three")[1]
    assert "×" not in three and three.count("linear 8 -> 8") == 3  # three of a kind read fine as they are
    models, _ = _models(tmp_path, DEEP, "deep2.py")
    assert sum(n["kind"] == "param" for n in models["DeepTanh"]["nodes"]) == 41


def test_json_shows_the_init_that_init_functions_given_the_instance_leave():
    # models_as_written: `zero_every_linear(self)` zeroes every layer, given `self.head` the head
    # only; an init function of another file given `self` after the zeroing leaves it unknown
    result = run_cli("model", "--format", "json", str(FIXTURES / "architecture" / "models_as_written.py"))
    assert result.returncode == 0, result.stderr
    by_name = {m["name"]: m for m in json.loads(result.stdout)}

    def schemes(name):
        return {n["name"]: n["init"]["scheme"] for n in _all_nodes(by_name[name]["nodes"]) if n["kind"] == "param"}

    assert set(schemes("CallsZeroOnSelf").values()) == {"zeros"}
    head = schemes("CallsZeroOnHead")
    assert head.pop("head.0") == "zeros" and set(head.values()) == {"torch-linear"}
    assert set(schemes("ZeroedThenReinitialised").values()) == {"unknown"}
    assert set(schemes("ZeroedThenReset").values()) == {"unknown"}


def test_a_transposed_convolution_shows_what_one_output_sums(tmp_path):
    source = ("import torch.nn as nn\n\nclass Up(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.a = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)\n"
              "        self.b = nn.Conv2d(32, 32, 3)\n"
              "    def forward(self, x):\n        return self.b(self.a(x))\n")
    models, path = _models(tmp_path, source)
    a, b = models["Up"]["nodes"]
    # torch's fan_in (out_channels * 16) sets the init; an output sums 64 * 16 / 4 inputs
    assert (a["fan_in"], a["fan_out"], a["signal_ratio"]) == (512, 1024, 0.5)
    assert b["signal_ratio"] == 1.0
    out = run_cli("model", str(path)).stdout
    assert "convtranspose2d 512 -> 1024 (an output sums 256 terms), init torch-linear" in out
    assert "conv2d 288 -> 288, init" in out


OVER_BUDGET = """import torch
import torch.nn as nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x)


class Unrolled(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.f = nn.Linear(c, c)
        self.g = nn.Linear(c, c)
        self.p0 = nn.Linear(c, c)
        self.p1 = nn.Linear(c, c)

    def forward(self, x):
        if x.shape[-1] > 0:
            x = self.p0(x)
        if x.shape[-1] > 1:
            x = self.p1(x)
        for s in range(16):
            for i in range(64):
                x = x + self.f(x)
                x = x * torch.sigmoid(self.g(x))
        return x
"""


def test_a_class_over_the_interpretation_budget_is_listed_as_not_modelled(tmp_path):
    # It was missing from the list (and a file of it alone said "no nn.Module class found"): four
    # forward paths of 1 024 unrolled steps, over the budget of steps
    (tmp_path / "m.py").write_text(OVER_BUDGET)
    result = run_cli("model", "m.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "m.py: Unrolled (not modelled: its __init__ or forward ran past the interpretation budget or Python's " \
        "recursion limit)" in result.stdout
    assert "m.py:5:7: Small (forward followed" in result.stdout
    listed = json.loads(run_cli("model", "--format", "json", "m.py", cwd=tmp_path).stdout)
    unrolled = next(m for m in listed if m["name"] == "Unrolled")
    assert unrolled["forward_known"] is False and unrolled["nodes"] == [] and unrolled["location"] is None
    (tmp_path / "m.py").write_text(OVER_BUDGET.split("\n\n\nclass Small")[0] + "\n\n\nclass Unrolled" + OVER_BUDGET.split("class Unrolled")[1])
    alone = run_cli("model", "m.py", cwd=tmp_path)
    assert "no nn.Module class" not in alone.stderr and "Unrolled (not modelled" in alone.stdout


def test_check_says_a_class_over_the_interpretation_budget_was_not_checked(tmp_path):
    # `check` was silent about it: a file of one such class said "All checks passed" as if its
    # architecture had been read. A warning names the class; the exit code does not change.
    (tmp_path / "m.py").write_text(OVER_BUDGET)
    result = run_cli("check", "--no-cache", "m.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("gradlint: warning: m.py: class Unrolled not modelled: its __init__ or forward ran "
                               "past the interpretation budget or Python's recursion limit, so the architecture "
                               "rules did not check it") == 1, result.stderr
    quiet = run_cli("check", "--no-cache", "-q", "m.py", cwd=tmp_path)
    assert "Unrolled" not in quiet.stderr
    # a class within the budget says nothing
    (tmp_path / "m.py").write_text(OVER_BUDGET.split("\n\n\nclass Unrolled")[0] + "\n")
    assert "warning" not in run_cli("check", "--no-cache", "m.py", cwd=tmp_path).stderr
