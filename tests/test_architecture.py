"""GL1xx end to end: ARCHITECTURE.md's table from source, fixture expectations, and check never runs code."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from gradlint.api import check_paths, check_source
from gradlint.config import Config
from tests.conftest import FIXTURES, run_cli

EXPECT = re.compile(r"#\s*expect:\s*((?:GL\d{3}[\s,]*)+)")  # codes apart by spaces or commas


def expectations(folder: Path) -> set[tuple[str, int, str]]:
    out = set()
    for path in sorted(folder.rglob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            m = EXPECT.search(line)
            if m:
                for code in re.split(r"[\s,]+", m.group(1).strip()):
                    out.add((path.name, lineno, code))
    return out


@pytest.mark.parametrize("family", ["architecture"])
def test_fixture_expectations_match_findings(family):
    folder = FIXTURES / family
    result = check_paths([folder], Config(root=str(folder)), use_cache=False, jobs=1)
    found = {(Path(f.path).name, f.span.line, f.code) for f in result.findings}
    assert found == expectations(folder)


# ARCHITECTURE.md's measured gains, each built here in another spelling than the fixture's.
DESIGN_TABLE = [
    ("""
import torch.nn as nn
class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.seq = nn.Sequential(*[nn.Sequential(nn.Linear(256, 256), nn.Sigmoid()) for _ in range(12)])
    def forward(self, x):
        return self.seq(x)
""", 4.2e-10),
    ("""
import torch
from torch import nn
N_LAYERS = 8
class M(nn.Module):
    def __init__(self, width=512):
        super().__init__()
        self.hidden = nn.ModuleList()
        for _ in range(N_LAYERS):
            layer = nn.Linear(width, width)
            with torch.no_grad():
                layer.weight.normal_(0, 1)
            self.hidden.append(layer)
    def forward(self, x):
        for i in range(len(self.hidden)):
            x = self.hidden[i](x).tanh()
        return x
""", 6.3e3),
    ("""
import torch.nn as nn
def init_weights(m):
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.xavier_uniform_(m.weight)
class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(*(layer for _ in range(16) for layer in [nn.Linear(512, 512), nn.ReLU()]))
        self.apply(init_weights)
    def forward(self, x):
        return self.f(x)
""", 5.5e-3),
    ("""
import torch.nn.functional as F
import torch.nn as nn
class M(nn.Module):
    def __init__(self, depth=16, d=512):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(d, d) for _ in range(depth))
    def forward(self, x):
        for layer in self.layers:
            x = F.relu(layer(x))
        return x
""", 1.6e-6),
    ("""
import torch.nn as nn
class M(nn.Module):
    def __init__(self, d=512):
        super().__init__()
        layers = []
        for _ in range(16):
            lin = nn.Linear(d, d)
            nn.init.kaiming_normal_(lin.weight, mode="fan_in", nonlinearity="relu")
            layers.extend([lin, nn.ReLU()])
        self.mlp = nn.Sequential(*layers)
    def forward(self, x):
        return self.mlp(x)
""", 1.07),
]


@pytest.mark.parametrize("source,measured", DESIGN_TABLE)
def test_design_table_gains_within_factor_2_of_measured(source, measured):
    from gradlint.model.propagation import analyse
    from gradlint.source import extract_facts, parse

    facts = extract_facts(parse("m.py", source))
    (network,) = [n for n in facts.networks if n.name == "M"]
    chains = analyse(network).chains
    assert len(chains) == 1
    gain = chains[0].gain
    assert measured / 2 <= gain <= measured * 2, gain


def test_findings_carry_gain_depth_and_modules_for_the_probe():
    source = DESIGN_TABLE[0][0]
    (finding,) = check_source(source, Config(select=("GL101",)))
    data = finding.data_dict
    assert data["network"] == "M"
    assert data["depth"] == 12
    assert data["modules"][:2] == ("seq.0.0", "seq.1.0")
    assert 2e-10 < data["predicted"] < 9e-10
    assert "4.3e-10 across 12 layers" in finding.message


def test_thresholds_from_config_reach_the_rules(tmp_path):
    (tmp_path / "m.py").write_text(DESIGN_TABLE[2][0])  # gain 5.5e-3
    (tmp_path / "pyproject.toml").write_text('[tool.gradlint.vanishing-gradient]\nvanishing-threshold = 1e-2\n')
    proc = run_cli("check", "--no-cache", "--select", "GL101", ".", cwd=tmp_path)
    assert proc.returncode == 1 and "GL101" in proc.stdout
    (tmp_path / "pyproject.toml").write_text('[tool.gradlint.GL101]\nvanishing-threshold = 1e-3\n')
    proc = run_cli("check", "--no-cache", "--select", "GL101", ".", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout


def test_exploding_and_post_norm_and_min_depth_options(tmp_path):
    (tmp_path / "m.py").write_text(DESIGN_TABLE[1][0])  # gain 6.4e3
    (tmp_path / "pyproject.toml").write_text('[tool.gradlint.GL102]\nexploding-threshold = 1e4\n')
    assert run_cli("check", "--no-cache", "--select", "GL102", ".", cwd=tmp_path).returncode == 0
    (tmp_path / "m.py").write_text(DESIGN_TABLE[2][0])  # xavier before ReLU, depth 16
    (tmp_path / "pyproject.toml").write_text('[tool.gradlint.GL103]\nmin-depth = 17\n')
    assert run_cli("check", "--no-cache", "--select", "GL103", ".", cwd=tmp_path).returncode == 0
    (tmp_path / "pyproject.toml").write_text('[tool.gradlint.GL103]\nmin-depth = 16\n')
    assert run_cli("check", "--no-cache", "--select", "GL103", ".", cwd=tmp_path).returncode == 1
    (tmp_path / "m.py").write_text(
        "import torch.nn as nn\nclass E(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4), num_layers=8)\n"
        "    def forward(self, x):\n        return self.enc(x)\n")
    (tmp_path / "pyproject.toml").write_text('[tool.gradlint.GL106]\npost-norm-depth = 8\n')
    assert run_cli("check", "--no-cache", "--select", "GL106", ".", cwd=tmp_path).returncode == 1
    (tmp_path / "pyproject.toml").write_text('[tool.gradlint.GL106]\npost-norm-depth = 9\n')
    assert run_cli("check", "--no-cache", "--select", "GL106", ".", cwd=tmp_path).returncode == 0


def test_check_never_imports_torch_numpy_nor_runs_the_checked_code(tmp_path):
    # nor numpy or onnx: a .py file's check needs none of them (the sigmoid chain's activation
    # moments are integrated in plain Python), and numpy alone took a fifth of a one-file run
    mark = tmp_path / "mark"
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['gradlint', 'check', '--no-cache', %r]\n"
        "try:\n"
        "    runpy.run_module('gradlint.cli', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'onnx'})\n"
        "print('HEAVY ' + ','.join(heavy) if heavy else 'NO-HEAVY', code)\n"
    ) % str(FIXTURES / "architecture" / "leaves_a_mark.py")
    import subprocess
    import sys

    env = dict(os.environ, GRADLINT_MARK=str(mark), PYTHONPATH=str(FIXTURES.parent))
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert "NO-HEAVY 1" in proc.stdout, proc.stdout + proc.stderr
    assert "GL101" in proc.stdout
    assert not mark.exists(), "gradlint executed the file it checked"


def test_the_fixture_would_leave_a_mark_if_run(tmp_path):
    """The mark is real: running the fixture creates it (so the test above can fail)."""
    import runpy

    mark = tmp_path / "mark"
    old = os.environ.get("GRADLINT_MARK")
    os.environ["GRADLINT_MARK"] = str(mark)
    try:
        runpy.run_path(str(FIXTURES / "architecture" / "leaves_a_mark.py"))
    finally:
        if old is None:
            os.environ.pop("GRADLINT_MARK")
        else:
            os.environ["GRADLINT_MARK"] = old
    assert mark.read_text() == "executed"


def test_syntax_error_file_gives_gl001_and_others_are_still_checked(tmp_path):
    (tmp_path / "broken.py").write_text("import torch\nclass M(torch.nn.Module)\n    pass\n")
    (tmp_path / "model.py").write_text(DESIGN_TABLE[0][0])
    proc = run_cli("check", "--no-cache", ".", cwd=tmp_path)
    assert proc.returncode == 1
    assert "broken.py:2:" in proc.stdout and "GL001" in proc.stdout
    assert "model.py:" in proc.stdout and "GL101" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_cache_serves_unchanged_files_and_notices_changes(tmp_path):
    model = tmp_path / "m.py"
    model.write_text(DESIGN_TABLE[0][0])
    first = run_cli("check", ".", cwd=tmp_path)
    assert first.returncode == 1 and "GL101" in first.stdout
    assert list((tmp_path / ".gradlint_cache").glob("p-*.jsonl"))  # one pack per folder
    assert not list((tmp_path / ".gradlint_cache").glob("*.pickle"))
    again = run_cli("check", ".", cwd=tmp_path)
    assert again.stdout == first.stdout
    model.write_text(DESIGN_TABLE[4][0])  # the healthy kaiming chain
    fixed = run_cli("check", ".", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout


def test_onnx_cache_entries_depend_on_external_data(tmp_path):
    from gradlint.inputs import fingerprint_within

    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "m.data").write_bytes(b"1234")
    before = fingerprint_within(str(tmp_path), "w/m.data")
    (tmp_path / "w" / "m.data").write_bytes(b"1235")
    assert fingerprint_within(str(tmp_path), "w/m.data") != before


CONFIGS = FIXTURES / "architecture" / "crossfile_config"


def _findings(paths, root: Path, cache: bool = False) -> list[tuple[str, int, str, str]]:
    old = os.getcwd()
    os.chdir(root)
    try:
        result = check_paths(paths, Config(root=str(root)), use_cache=cache, jobs=1)
    finally:
        os.chdir(old)
    assert not result.internal_errors, [r.internal_error for r in result.internal_errors]
    return sorted((Path(f.path).as_posix(), f.span.line, f.code, f.message) for f in result.findings)


def test_config_classes_of_other_files_give_the_findings_of_the_same_file():
    """`config: GPTConfig` with GPTConfig imported (`from config import`, `import config as
    cfgmod`, relative imports of a package, re-exported bases, a base outside the project): the
    model is as deep as the config's defaults, and flagged as it is with the config in its file;
    the look-alikes (a shallow config, a config no file holds) are quiet (fixture expectations)."""
    found = _findings(["."], CONFIGS)
    other = [(line, code, msg) for path, line, code, msg in found if path == "model.py"]
    same = [(line, code, msg) for path, line, code, msg in found if path == "same_file.py"]
    # same_file.py is model.py with config.py pasted at its top: 24 lines further down
    assert [(line + 24, code, msg) for line, code, msg in other] == same
    assert [code for _l, code, _m in other] == ["GL102", "GL104", "GL101"]
    assert {(Path(path).name, line, code) for path, line, code, _m in found} == expectations(CONFIGS)


def test_config_values_are_plain_data_and_their_files_are_dependencies():
    from gradlint.api import _extract

    facts = _extract(CONFIGS / "model.py", "model.py")
    # config.py, and where the missing settings_nowhere module would be (creating it changes them),
    # then the __init__.py files that decide where imports start (making a package changes them)
    assert facts.depends[:3] == ("config.py", "settings_nowhere.py", "settings_nowhere/__init__.py")
    assert facts.depends[3] == "__init__.py" and all(d.endswith("__init__.py") for d in facts.depends[3:])
    facts = _extract(CONFIGS / "hf" / "modeling_deep.py", "hf/modeling_deep.py")
    assert facts.depends[:3] == ("configuration_deep.py", "configuration_utils.py", "configuration_lib.py")
    widths = {n.name: {p.fan_in for p in n.params} for n in facts.networks}
    # ShallowConfig's hidden_size is DeepConfig's default, through `super().__init__(..., **kwargs)`
    assert widths == {"DeepModel": {256}, "ShallowModel": {256}, "LibModel": {128}}
    # text in memory (stdin, a notebook) has no neighbours: the config stays unknown
    from gradlint.source import extract_python_text

    alone = extract_python_text((CONFIGS / "model.py").read_text(), "model.py")
    assert alone.depends == () and {n.name: len(n.params) for n in alone.networks}["DeepMLP"] == 0


def test_cache_entries_depend_on_the_config_files(tmp_path):
    """Check, change the config's default depth, check again with the cache: the finding follows
    the config file (the facts entry, the result entry, and the result of a file that reaches the
    model through the project index)."""
    import shutil

    root = tmp_path / "p"
    shutil.copytree(CONFIGS, root)
    first = _findings(["."], root, cache=True)
    assert ("model.py", 58, "GL101") in [(p, line, c) for p, line, c, _m in first]
    config = root / "config.py"
    config.write_text(config.read_text().replace("depth: int = field(default=20)", "depth: int = field(default=2)"))
    second = _findings(["."], root, cache=True)
    assert ("model.py", 58, "GL101") not in [(p, line, c) for p, line, c, _m in second]
    assert _findings(["model.py"], root, cache=True) == [f for f in second if f[0] == "model.py"]
    config.write_text(config.read_text().replace("depth: int = field(default=2)", "depth: int = field(default=30)"))
    third = [f for f in _findings(["model.py"], root, cache=True) if f[2] == "GL101"]
    assert len(third) == 1 and "across 30 layers" in third[0][3]
    assert third == [f for f in _findings(["model.py"], root, cache=False) if f[2] == "GL101"]
    # a config of a folder above the model's (`from ..configuration_utils`): its base's value
    # `use_bias` reaches the model; the file is a dependency through `../`
    deep = root / "hf" / "configuration_deep.py"
    deep.write_text(deep.read_text().replace("num_hidden_layers=24", "num_hidden_layers=3"))
    assert not [f for f in _findings(["hf"], root, cache=True) if "DeepModel" in f[3]]
    deep.write_text(deep.read_text().replace("num_hidden_layers=3", "num_hidden_layers=24"))
    assert [f[2] for f in _findings(["hf"], root, cache=True) if "DeepModel" in f[3]] == ["GL101"]
    # a training loop of another file: GL201 counts the blocks of the model's class, built with
    # the defaults of *its* config file, which the loop's result entry depends on too
    (root / "hf" / "modeling_tf.py").write_text(
        "import torch.nn as nn\n\nfrom .configuration_deep import DeepConfig\n\n\nclass Encoder(nn.Module):\n"
        "    def __init__(self, config: DeepConfig):\n        super().__init__()\n        self.layers = nn.ModuleList(\n"
        "            [nn.TransformerEncoderLayer(config.hidden_size, 4) for _ in range(config.num_hidden_layers)])\n\n"
        "    def forward(self, x):\n        for layer in self.layers:\n            x = layer(x)\n        return x\n")
    (root / "train.py").write_text(
        "import torch\n\nfrom hf.modeling_tf import Encoder\n\n\ndef train(config, loader):\n"
        "    model = Encoder(config)\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "    for x in loader:\n        optimizer.zero_grad()\n        model(x).sum().backward()\n        optimizer.step()\n")
    assert [(f[2], "24 blocks" in f[3]) for f in _findings(["train.py"], root, cache=True)] == [("GL201", True)]
    deep.write_text(deep.read_text().replace("num_hidden_layers=24", "num_hidden_layers=3"))
    assert _findings(["train.py"], root, cache=True) == []


def test_an_unreadable_or_missing_config_leaves_the_model_unknown(tmp_path):
    model = (CONFIGS / "model.py").read_text()
    (tmp_path / "model.py").write_text(model)
    (tmp_path / "pyproject.toml").write_text("")
    assert [f[2] for f in _findings(["."], tmp_path)] == []  # no config.py: nothing known
    for broken in ("class GPTConfig(:\n", "\xff\xfe not utf-8", "x = (" * 5000):
        (tmp_path / "config.py").write_text(broken, encoding="latin-1")
        got = _findings(["model.py"], tmp_path)
        assert [f[2] for f in got] == [], broken[:20]
    # a config whose base is a config of another file, five files deep: bounded, no finding, no crash
    (tmp_path / "config.py").write_text("from c1 import GPTConfig\n")
    for i in range(1, 7):
        base = f"from c{i + 1} import Base{i + 1} as Base\n" if i < 6 else "class Base:\n    pass\n"
        text = base + ("\n\nclass GPTConfig(Base):\n" if i == 1 else f"\n\nclass Base{i}(Base):\n")
        text += f"    n_embd: int = 512\n    n_layer: int = 12\n    init_std: float = 1.0\n    level{i}: int = {i}\n"
        (tmp_path / f"c{i}.py").write_text(text)
    found = _findings(["model.py"], tmp_path)
    assert [f[2] for f in found] == ["GL102", "GL104"]  # the values of c1's class itself hold


def test_configs_made_by_calls_build_factories_networks():
    """`Tower(MLPConfig(depth=40, width=64))` in a factory, at module level, in the `__main__`
    block: a network of its own, as deep as the call's arguments make the config of config.py;
    one that equals its class's own network is not kept."""
    from gradlint.api import _extract

    facts = _extract(CONFIGS / "factory.py", "factory.py")
    assert "config.py" in facts.depends
    shapes = {n.name: (len(n.params), {p.fan_in for p in n.params}) for n in facts.networks}
    assert shapes["make_model"] == (40, {64}) and shapes["Tower"] == (0, set())
    # MLPConfig(depth=30): its other fields are its defaults (hidden = width = 256, __post_init__)
    assert shapes["make_normed"][0] == 40 and shapes["normed"] == (30, {256})
    script = _extract(CONFIGS / "script.py", "script.py")
    assert {n.name: len(n.params) for n in script.networks} == {"Tower": 0, "model": 30}


def test_factories_find_called_names_from_their_parenthesis():
    """The names a factory calls, read backwards from each `(`: dotted names, a space or a line
    break before the parenthesis; never a name after a `.` of an expression or a number, nor
    the tail of a longer run (`x[0].f(`, `1.f(`, `a..b(`), as the forward pattern read them."""
    import re

    from gradlint.source.factories import _called

    forward = re.compile(r"(?<![\w.])([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)\s*\(")
    text = ("m = GPT(cfgmod.GPTConfig (n=1), Block\n(2)) + x[0].Head(3) + 1.f(4) + a..b(5) + _p.Q9(6)(7)"
            " + f(g(h)) + 9x(1) + é(2) + Ü.V(3) + .lead(4) + trail.(5)\n")
    assert _called(text) == {"GPT", "cfgmod.GPTConfig", "Block", "_p.Q9", "f", "g"}
    assert _called(text) == set(forward.findall(text))
    assert _called("") == set() and _called("(((") == set()


def test_a_config_call_reads_only_its_plain_arguments_and_only_config_classes(tmp_path):
    """An argument not known (`width=vocab`) leaves what the config computes from it unknown, the
    rest known; a module class of another file passed to a model (`Net(Mine(4))`, `Mine`
    deriving from a block of a third file, no forward of its own) is never read as a config."""
    from gradlint.api import _extract

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "config.py").write_text((CONFIGS / "config.py").read_text())
    (tmp_path / "base.py").write_text(
        "import torch.nn as nn\n\n\nclass Base(nn.Module):\n    def __init__(self, n):\n        super().__init__()\n"
        "        self.fc = nn.Linear(n, n)\n\n    def forward(self, x):\n        return self.fc(x)\n")
    (tmp_path / "blocks.py").write_text(
        "from base import Base\n\n\nclass Mine(Base):\n    depth = 3\n\n    def __init__(self, n):\n"
        "        super().__init__(n)\n")
    tower = (CONFIGS / "factory.py").read_text().split("class NormedTower")[0]
    (tmp_path / "model.py").write_text(
        tower + "\nfrom blocks import Mine\n\n\ndef make(vocab):\n    return Tower(MLPConfig(depth=40, width=vocab))\n\n\n"
        "class Net(nn.Module):\n    def __init__(self, block):\n        super().__init__()\n        self.block = block\n"
        "        self.layers = nn.ModuleList([nn.Linear(8, 8) for _ in range(block.depth)])\n\n"
        "    def forward(self, x):\n        for layer in self.layers:\n            x = torch.sigmoid(layer(x))\n"
        "        return self.block(x)\n\n\ndef make_net():\n    return Net(Mine(4))\n")
    facts = _extract(tmp_path / "model.py", "model.py")
    shapes = {n.name: (len(n.params), {p.fan_in for p in n.params}) for n in facts.networks}
    assert shapes["make"][0] == 40 and 64 not in shapes["make"][1] and 256 not in shapes["make"][1]
    # `make_net()` is an entry point (factories._as_built), but Mine is never read as a config:
    # `block.depth` stays unknown and no layer comes of it
    assert shapes.get("make_net", (0, set())) == (0, set())
    assert "blocks.py" in facts.depends


@pytest.mark.parametrize("written, named", [
    ("XConfig", "XConfig"), ("cfg.XConfig", "cfg.XConfig"), ("'XConfig'", "XConfig"), ("Optional[XConfig]", "XConfig"),
    ("typing.Optional['cfg.XConfig']", "cfg.XConfig"), ("Union[XConfig, None]", "XConfig"), ("XConfig | None", "XConfig"),
    ("None | 'XConfig'", "XConfig"), ("'Optional[XConfig]'", "XConfig"), ("Union[XConfig, YConfig]", None),
    ("XConfig | YConfig", None), ("list[XConfig]", None), ("'X(' ", None), ("'" + "A." * 300 + "B'", None),
    ("b'XConfig'", None), ("''", None), ("Optional[XConfig, YConfig]", None),
    ('"""' + "Optional[" * 50 + "X" + "]" * 50 + '"""', None),
])
def test_annotations_name_their_config_class(written, named):
    import libcst as cst

    from gradlint.source.configs import annotated_class

    assert annotated_class(cst.parse_expression(written)) == named


def test_library_and_project_base_classes_are_modules():
    """LightningModule subclasses and classes whose base lives in another file of the project are
    lowered too (GL201 looks their recurrent layers up across files)."""
    from gradlint.source import extract_facts, parse

    src = (
        "import lightning as L\nimport torch.nn as nn\nfrom .base import Base\n"
        "class LM(L.LightningModule):\n    def __init__(self):\n        super().__init__()\n"
        "        self.rnn = nn.LSTM(10, 20)\n    def forward(self, x):\n        return self.rnn(x)[0]\n"
        "class Deep(Base):\n    def __init__(self):\n        super().__init__()\n"
        "        self.body = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(256, 256), nn.Sigmoid())])\n"
        "    def forward(self, x):\n        return self.body(x)\n"
        "class Plain:\n    def forward(self, x):\n        return x\n"
    )
    facts = extract_facts(parse("m.py", src))
    summary = {c.name: c for c in facts.classes}
    assert summary["LM"].is_module and summary["LM"].recurrent
    assert summary["Deep"].is_module
    assert not summary["Plain"].is_module
    assert [n.name for n in facts.networks] == ["LM", "Deep"]


_TRANSLATOR = ("import torch.nn as nn\n\n\nclass Translator(nn.Module):\n    def __init__(self):\n"
               "        super().__init__()\n        self.tf = nn.Transformer({args})\n\n"
               "    def forward(self, src, tgt):\n        return self.tf(src, tgt)\n")


def test_nn_transformer_depths_passed_by_position_are_read():
    # nn.Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers, ...): 8 + 8 Post-LN blocks
    found = check_source(_TRANSLATOR.format(args="512, 8, 8, 8, 2048"), Config(select=("GL106",)))
    assert [f.code for f in found] == ["GL106"] and "16 Post-LN" in found[0].message


def test_an_encoder_decoder_counts_both_stacks_and_says_so():
    # the depths add (bench/transformer_depth.py: a 6-layer Post-LN decoder's first/last gradient
    # ratio falls from 0.96 to 0.40 as the encoder before it goes from 1 to 6 layers)
    for args, split in (("d_model=512, nhead=8", "6 + 6"), ("512, 8, 12, 2", "12 + 2"),
                        ("num_encoder_layers=3, num_decoder_layers=9", "3 + 9")):
        (found,) = check_source(_TRANSLATOR.format(args=args), Config(select=("GL106",)))
        blocks = sum(int(n) for n in split.split(" + "))
        assert found.data_dict["blocks"] == blocks and found.message.startswith(f"{blocks} Post-LN"), args
        assert f"{split} in an encoder and the decoder that reads it" in found.message, args
    # 3 + 3, and a Pre-LN 12 + 12, are not
    assert check_source(_TRANSLATOR.format(args="512, 8, 3, 3"), Config(select=("GL106",))) == []
    assert check_source(_TRANSLATOR.format(args="512, 8, 12, 12, norm_first=True"), Config(select=("GL106",))) == []
    # an encoder alone: no split to state
    (found,) = check_source(_TRANSLATOR.format(args="512, 8, 12, 0"), Config(select=("GL106",)))
    assert "decoder that reads it" not in found.message


def test_nn_transformer_shallow_by_position_or_splatted_is_quiet():
    # `nn.Transformer(128, 4, 2, 2, 256)` is 2 + 2 blocks, not the default 6 + 6
    assert check_source(_TRANSLATOR.format(args="128, 4, 2, 2, 256"), Config(select=("GL106",))) == []
    # a `*args` or `**kwargs` may hold the depths: unknown
    assert check_source(_TRANSLATOR.format(args="*cfg"), Config(select=("GL106",))) == []
    assert check_source(_TRANSLATOR.format(args="128, **cfg"), Config(select=("GL106",))) == []


def test_positions_before_a_splat_are_read_and_after_one_are_unknown():
    from gradlint.source import extract_facts, parse

    # the depths are written before the `**cfg`: 4 + 4 blocks, whose norm placement cfg may hold
    facts = extract_facts(parse("m.py", _TRANSLATOR.format(args="512, 8, 4, 4, 2048, **cfg")))
    blocks = [n for n in facts.networks[0].nodes if type(n).__name__ == "TransformerBlock"]
    assert len(blocks) == 8 and {b.norm_first for b in blocks} == {None}
    # `nn.Conv2d(*io, 3, 2)`: `io` holds the channels, so 3 is the kernel and 2 the stride, not
    # 3 output channels and a 2x2 kernel
    src = ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self, io):\n"
           "        super().__init__()\n        self.conv = nn.Conv2d(*io, 3, 2)\n\n"
           "    def forward(self, x):\n        return self.conv(x)\n")
    conv = extract_facts(parse("m.py", src)).networks[0].params[0]
    assert (conv.fan_in, conv.fan_out) == (None, None)


_ENCODER = ("import torch.nn as nn\n\n\nclass Encoder(nn.Module):\n    def __init__(self):\n"
            "        super().__init__()\n        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer({args}), 24)\n\n"
            "    def forward(self, x):\n        return self.enc(x)\n")


def test_norm_first_passed_by_position_is_read():
    # TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
    # batch_first, norm_first): the eighth argument True is Pre-LN, which GL106 leaves alone
    pre = _ENCODER.format(args="512, 8, 2048, 0.1, 'gelu', 1e-5, True, True")
    assert check_source(pre, Config(select=("GL106",))) == []
    post = _ENCODER.format(args="512, 8, 2048, 0.1, 'gelu', 1e-5, True, False")
    found = check_source(post, Config(select=("GL106",)))
    assert [f.code for f in found] == ["GL106"] and "24 Post-LN" in found[0].message


def test_groups_and_bias_passed_by_position_are_read():
    from gradlint.source import extract_facts, parse

    src = ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
           "        self.dw = nn.Conv2d(64, 64, 3, 1, 1, 1, 64, False)\n"
           "        self.lazy = nn.LazyConv2d(32, 3, 1, 1, 1, 4, False)\n"
           "        self.fc = nn.Linear(64, 10, False)\n"
           "        self.full = nn.Conv2d(64, 64, 3, 1, 1)\n"
           "        dd = {'device': None, 'dtype': None}\n"
           "        self.kw = nn.Conv2d(64, 64, 3, 1, 1, bias=False, **dd)\n\n"
           "    def forward(self, x):\n        return self.kw(self.fc(self.full(self.lazy(self.dw(x)))))\n")
    params = {p.name: p for p in extract_facts(parse("m.py", src)).networks[0].params}
    # depthwise: each output channel sees one input channel's 3x3 window
    assert (params["dw"].fan_in, params["dw"].fan_out) == (9, 576)
    assert params["lazy"].fan_out == 288
    assert {n: params[n].bias_init.scheme for n in ("dw", "lazy", "fc")} == {"dw": "none", "lazy": "none", "fc": "none"}
    # the defaults when the arguments are not given: one group, a bias
    assert params["full"].fan_in == 576 and params["full"].bias_init is None
    # a `**kwargs` (timm's `**dd`: device and dtype) holds no position
    assert params["kw"].fan_in == 576 and params["kw"].bias_init.scheme == "none"


def test_two_models_stacking_one_post_ln_block_to_different_depths_are_each_reported():
    block = """
import torch.nn as nn


class PostLNBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ff = nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)

    def forward(self, x):
        return self.ln(x + self.ff(x))
"""
    stack = """

class {name}(nn.Module):
    def __init__(self, d=64, n_layers={n}):
        super().__init__()
        self.layers = {container}{noqa}

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
"""
    listed = "nn.ModuleList([PostLNBlock(d) for _ in range(n_layers)])"
    sequential = "nn.Sequential(*[PostLNBlock(d) for _ in range(n_layers)])"

    def source(noqa: str = "") -> str:
        return block + stack.format(name="Encoder", n=16, container=listed, noqa=noqa) + stack.format(
            name="Decoder", n=12, container=sequential, noqa="") + """

class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()

    def forward(self, x):
        return self.encoder(x)
"""

    findings = check_source(source(), Config(select=("GL106",)))
    # the wrapper of the encoder is the encoder's finding; the decoder's depth is its own
    assert sorted((dict(f.data)["network"], dict(f.data)["blocks"]) for f in findings) == [("Decoder", 12), ("Encoder", 16)]
    # each where it stacks the shared block (not at the block's norm, where one location held both
    # and a noqa there silenced every model)
    lines = source().splitlines()
    at = {name: 1 + next(i for i, line in enumerate(lines) if container in line)
          for name, container in (("Encoder", listed), ("Decoder", sequential))}
    assert sorted((f.span.line, dict(f.data)["network"]) for f in findings) == sorted(
        (line, name) for name, line in at.items())
    quiet = check_source(source(noqa="  # noqa: GL106"), Config(select=("GL106",)))
    assert [f.span.line for f in quiet] == [at["Decoder"]]


def test_gl106_over_two_stacks_is_reported_at_the_first_block_not_at_one_stack():
    # 6 + 6 Post-LN layers in two ModuleLists: the 12 are no one container's (review 14)
    src = ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self, d=64):\n        super().__init__()\n"
           "        self.enc = nn.ModuleList([nn.TransformerEncoderLayer(d, 4) for _ in range(6)])\n"
           "        self.mid = nn.Linear(d, d)\n"
           "        self.dec = nn.ModuleList([nn.TransformerEncoderLayer(d, 4) for _ in range(6)])\n\n"
           "    def forward(self, x):\n        for layer in self.enc:\n            x = layer(x)\n        x = self.mid(x)\n"
           "        for layer in self.dec:\n            x = layer(x)\n        return x\n")
    (f,) = check_source(src, Config(select=("GL106",)))
    assert (f.span.line, f.span.column, dict(f.data)["blocks"]) == (7, 35, 12)


def test_gl103_message_reads_the_better_gain_as_a_gain_not_a_count():
    # "... across 16 layers, 1 with kaiming_normal_(...)" read as "one layer with kaiming"
    src = """import torch
import torch.nn as nn


class XavierReLU(nn.Module):
    def __init__(self, depth=16, width=512):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        for l in self.layers:
            nn.init.xavier_uniform_(l.weight)

    def forward(self, x):
        for l in self.layers:
            x = torch.relu(l(x))
        return x
"""
    (f,) = [f for f in check_source(src) if f.code == "GL103"]
    assert f.message.endswith("across 16 layers, against 1 with kaiming_normal_(nonlinearity='relu')"), f.message
