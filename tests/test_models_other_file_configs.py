"""A model class of one project file built with a config in another (issue 9, items 4 and 6): a
training script's `GPT(GPTConfig(n_layer=48))`, in a function or at module level, as nanoGPT's
train.py writes it. The config's values go to the class re-run in its own file, and a finding is
reported at the script's call."""

from __future__ import annotations

from pathlib import Path

from gradlint import api
from gradlint.config import Config

MODEL = '''
from dataclasses import dataclass
import torch
import torch.nn as nn


@dataclass
class GPTConfig:
    n_layer: int = 2
    n_embd: int = 64


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x):
        return self.proj(torch.sigmoid(self.fc(x)))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.h = nn.ModuleList([MLP(config) for _ in range(config.n_layer)])
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, x):
        for block in self.h:
            x = block(x)
        return x
'''

# nanoGPT's train.py, reduced: globals a configurator may override, a model built in an `if`
TRAIN = '''
import os
import torch
from model import GPT, GPTConfig

n_layer = 48
n_embd = 64
init_from = 'scratch'
exec(open('configurator.py').read())
model_args = dict(n_layer=n_layer, n_embd=n_embd)
if init_from == 'scratch':
    print("Initializing a new model from scratch")
    gptconf = GPTConfig(**model_args)
    model = GPT(gptconf)
elif init_from == 'resume':
    checkpoint = torch.load('ckpt.pt')
    gptconf = GPTConfig(**checkpoint['model_args'])
    model = GPT(gptconf)
'''

FACTORY = '''
import torch
from model import GPT, GPTConfig


def make():
    return GPT(GPTConfig(n_layer=48))
'''


def project(tmp_path: Path, **files: str) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "model.py").write_text(MODEL)
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(text)
    return tmp_path


def findings(root: Path, *paths: str) -> list[tuple[str, str, int, str]]:
    result = api.check_paths([str(root / p) for p in paths], Config(root=str(root)), use_cache=False, jobs=1)
    assert not result.internal_errors
    return sorted((f.code, Path(f.path).name, f.span.line if f.span else 0, f.message) for f in result.findings)


def test_a_training_script_building_a_deep_model_from_a_config_is_flagged_at_its_call(tmp_path):
    root = project(tmp_path, train=TRAIN, factory=FACTORY)
    found = findings(root, ".")
    assert [(c, f, line) for c, f, line, _m in found] == [("GL101", "factory.py", 7), ("GL101", "train.py", 14)]
    assert all("across 96 layers" in m for *_x, m in found)
    assert "in make" in found[0][3] and "in model" in found[1][3]
    # the model file alone says nothing: its class is built with a config it does not know
    assert findings(root, "model.py") == []
    # each script alone (a pre-commit run on it) gives what the project's run gives it
    assert findings(root, "train.py") == [x for x in found if x[1] == "train.py"]
    assert findings(root, "factory.py") == [x for x in found if x[1] == "factory.py"]


def test_the_configs_values_reach_the_model_and_look_alikes_stay_quiet(tmp_path):
    shapes = {
        # a shallow model: the config's value, not the class's default, decides
        "shallow": FACTORY.replace("n_layer=48", "n_layer=2"),
        # a config the script does not build: its values are not known
        "given": FACTORY.replace("def make():\n    return GPT(GPTConfig(n_layer=48))",
                                 "def make(config):\n    return GPT(config)"),
        # built with one depth or another by a condition the script cannot decide
        "open": FACTORY.replace("    return GPT(GPTConfig(n_layer=48))",
                                "    cfg = GPTConfig(n_layer=48) if os.environ.get('DEEP') else GPTConfig(n_layer=2)\n"
                                "    return GPT(cfg)").replace("import torch", "import os\nimport torch"),
        # the other branch of nanoGPT's train.py: a config from a checkpoint
        "resume": TRAIN.replace("init_from = 'scratch'", "init_from = 'resume'"),
    }
    root = project(tmp_path, **shapes)
    assert findings(root, *(f"{name}.py" for name in shapes)) == []


def test_a_same_named_model_class_elsewhere_in_the_project_is_not_taken(tmp_path):
    """Names resolve through the script's own imports: another file's GPT (one of two blocks,
    whatever the config says) does not stand in for the one the script builds, nor the reverse."""
    root = project(tmp_path, factory=FACTORY.replace("from model import", "from shallow import"))
    (root / "shallow.py").write_text(MODEL.replace("range(config.n_layer)", "range(2)"))
    assert findings(root, ".") == []
    (root / "deep.py").write_text(FACTORY)  # `from model import GPT`: the deep one
    assert [(c, f) for c, f, *_x in findings(root, ".")] == [("GL101", "deep.py")]


def test_a_class_of_another_file_that_is_no_module_is_no_network(tmp_path):
    """`accelerator = Accelerator(ProjectConfiguration(...))`: a class of another file built with a
    config, but no module (no forward, no module base), is not a model of the script."""
    from gradlint.source import extract_python

    root = project(tmp_path)
    (root / "tools.py").write_text(
        "from dataclasses import dataclass\n\n\n@dataclass\nclass RunConfig:\n    steps: int = 10\n\n\n"
        "class Runner:\n    def __init__(self, config):\n        self.config = config\n")
    script = root / "script.py"
    script.write_text("import torch\nfrom tools import Runner, RunConfig\nfrom model import GPT, GPTConfig\n\n"
                      "runner = Runner(RunConfig(steps=5))\nmodel = GPT(GPTConfig(n_layer=3))\n")
    facts = extract_python(script, "script.py")
    assert [n.name for n in facts.networks] == ["model"]


# The model file's own config is deep: its class, with its defaults, is flagged in model.py itself.
DEEP_DEFAULTS = MODEL.replace("n_layer: int = 2", "n_layer: int = 48").replace(
    "class GPT(nn.Module):\n    def __init__(self, config):", "class GPT(nn.Module):\n    def __init__(self, config: GPTConfig):")


def test_a_script_building_the_class_as_its_file_models_it_adds_no_second_finding(tmp_path):
    """One problem, one finding: a script whose model is the class of another file exactly as that
    file models it (the config's defaults, given or written again) restates model.py's finding, so
    it is reported there only, whether the script is checked with the project or alone. A script
    that builds another depth or width has a finding of its own."""
    assert DEEP_DEFAULTS != MODEL and "config: GPTConfig" in DEEP_DEFAULTS
    root = project(tmp_path, defaults=FACTORY.replace("GPTConfig(n_layer=48)", "GPTConfig()"), same=FACTORY,
                   deeper=FACTORY.replace("n_layer=48", "n_layer=60"),
                   wider=FACTORY.replace("n_layer=48", "n_embd=1024"))
    (root / "model.py").write_text(DEEP_DEFAULTS)
    found = findings(root, ".")
    assert [(c, f) for c, f, _line, _m in found] == [("GL101", "deeper.py"), ("GL101", "model.py"), ("GL101", "wider.py")]
    assert "across 120 layers" in found[0][3]
    assert "across 96 layers" in found[1][3] and "in GPT" in found[1][3]
    assert found[2][3] != found[1][3]  # the same depth, another gain per layer
    for name in ("defaults", "same", "deeper", "wider", "model"):
        assert findings(root, f"{name}.py") == [x for x in found if x[1] == f"{name}.py"], name
    # what the engine understood is still shown for the script (`gradlint model`)
    from gradlint.describe import describe_paths

    shown = describe_paths([str(root / "defaults.py")], Config(root=str(root))).models
    assert any(m["name"] == "make" and sum(1 for n in m["nodes"] if n["kind"] == "param") == 96 for m in shown)


def test_the_parse_of_a_config_file_starts_from_the_tree_of_its_summary_only_for_its_text(tmp_path):
    import ast

    from gradlint.source import parsed

    path = tmp_path / "configuration.py"
    path.write_text("X = 1\n")
    same = ("X = 1\n", ast.parse("X = 1\n"))
    assert parsed(path, str(path), same).positions.tree is same[1]
    other = ("X = 2\n", ast.parse("X = 2\n"))  # the file changed since: its own tree
    src = parsed(path, str(path), other)
    assert src.positions.tree is not other[1] and src.positions.tree.body[0].value.value == 1


def test_a_package_made_or_unmade_sends_the_cached_config_lookup_stale(tmp_path, monkeypatch):
    """Where `from cfg import Cfg` is looked for follows from the `__init__.py` files around the
    model (a package's imports start above it): adding or removing one changed which cfg.py it
    reaches, and the cache kept the old answer."""
    from gradlint.api import check_paths
    from gradlint.config import Config

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.py").write_text(
        "import torch.nn as nn\nfrom cfg import Cfg\n\n\nclass Tower(nn.Module):\n    def __init__(self, cfg: Cfg):\n"
        "        super().__init__()\n        self.body = nn.Sequential(*[m for _ in range(cfg.depth) for m in "
        "(nn.Linear(cfg.width, cfg.width), nn.Sigmoid())])\n\n    def forward(self, x):\n        return self.body(x)\n")
    config_class = "from dataclasses import dataclass\n\n\n@dataclass\nclass Cfg:\n    depth: int = {}\n    width: int = 256\n"
    (tmp_path / "a" / "cfg.py").write_text(config_class.format(20))
    (tmp_path / "cfg.py").write_text(config_class.format(1))

    def codes(use_cache: bool) -> list[str]:
        return [f.code for f in check_paths(["a/model.py"], Config(root=str(tmp_path)), use_cache=use_cache, jobs=1).findings]

    assert codes(True) == codes(False) == ["GL101"]  # (a/cfg.py: twenty sigmoid layers)
    (tmp_path / "a" / "__init__.py").write_text("")
    assert codes(True) == codes(False) == []  # (./cfg.py: one)
    (tmp_path / "a" / "__init__.py").unlink()
    assert codes(True) == codes(False) == ["GL101"]
