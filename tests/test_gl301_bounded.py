"""GL301 and a sigmoid of a bounded argument (fixtures/numerics/bounded_sigmoid): cosines of
normalised rows and values clamped within ±16 are quiet; a Linear's output, a clamp at ±20 and a
sigmoid a method of the class returns of one are flagged (bench/measure_sigmoid_bce.py)."""

from __future__ import annotations

import re
from pathlib import Path

from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.rules.numerics.gl301_sigmoid_into_bceloss import SAFE_PROBS
from gradlint.source.engine import bounds

FOLDER = Path(__file__).resolve().parent.parent / "fixtures" / "numerics" / "bounded_sigmoid"
EXPECT = re.compile(r"#\s*expect:\s*(GL\d{3})")


def _findings(folder: Path):
    result = check_paths([folder], Config(select=("GL3", "GL4"), root=str(folder)), use_cache=False, jobs=1)
    assert not result.internal_errors, result.internal_errors
    return result.findings


def test_bounded_sigmoids_are_quiet_and_unbounded_ones_flagged():
    path = FOLDER / "graph_ae.py"
    expected = {(i, m.group(1)) for i, line in enumerate(path.read_text().splitlines(), 1)
                if (m := EXPECT.search(line))}
    assert {code for _, code in expected} == {"GL301"} and len(expected) == 4
    assert {(f.span.line, f.code) for f in _findings(FOLDER)} == expected


def test_a_bounded_but_wide_sigmoid_names_its_interval():
    wide = next(f for f in _findings(FOLDER) if "clamp(-20, 20)" in
                (FOLDER / "graph_ae.py").read_text().splitlines()[f.span.line - 1])
    assert "reaches [2.06e-09, 1]" in wide.message and "within ±16" in wide.message


def test_the_rule_and_the_front_end_round_the_same_probabilities():
    # the rule's safe interval is the front-end's interval of a sigmoid of [-16, 16], float32 ends
    assert bounds.sigmoid((-16.0, 16.0)) == SAFE_PROBS
    lo, hi = bounds.sigmoid((-1.0, 1.0))
    assert abs(lo - 0.26894142) < 1e-7 and abs(hi - 0.73105858) < 1e-7
    assert bounds.sigmoid((17.0, 17.0)) == (1.0, 1.0)  # 1 + exp(-17) is 1.0 in float32: BCE's zero gradient
    assert bounds.sigmoid((16.5, 16.5))[1] < 1.0
    assert bounds.sigmoid(None) is None


def test_a_method_returning_a_sigmoid_of_what_it_is_passed(tmp_path):
    # cogdl's VGAE: `mat = self.decode(z)` with `def decode(self, x): return
    # torch.sigmoid(torch.matmul(x, x.t()))`, z an encoder's output: flagged at the loss
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "m.py").write_text(
        "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"
        "class GAE(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.enc = nn.Linear(16, 8)\n\n"
        "    def decode(self, x):\n        return torch.sigmoid(torch.matmul(x, x.t()))\n\n"
        "    def make_loss(self, data, adj):\n"
        "        z = self.enc(data)\n"
        "        mat = self.decode(z)\n"
        "        return F.binary_cross_entropy(mat, adj, reduction='sum')\n")
    assert [(f.span.line, f.code) for f in _findings(tmp_path)] == [(17, "GL301")]
