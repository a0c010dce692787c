"""GL3xx fixes: every invalid example with `fixed=` and every fixtures/*/*.in.py -> .out.py pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradlint.api import check_source
from gradlint.config import Config
from gradlint.fix import fix_source
from gradlint.registry import load_rules

ROOT = Path(__file__).resolve().parent.parent
RULES = load_rules()
FAMILY = ("GL3", "GL4")


def _fixed_examples():
    for code, rule in RULES.items():
        if not code.startswith(FAMILY):
            continue
        for i, ex in enumerate(rule.invalid):
            if ex.fixed is not None:
                yield pytest.param(code, ex, id=f"{code}-{i}")


@pytest.mark.parametrize("code,ex", list(_fixed_examples()))
def test_example_fix_gives_the_documented_source(code, ex):
    findings = check_source(ex.source, Config(select=(code,)), extra_files=dict(ex.files))
    new, applied, skipped = fix_source(ex.source, findings, unsafe=True)
    assert applied and not skipped
    assert new == ex.fixed
    # the fixed source no longer has the finding
    assert code not in [f.code for f in check_source(new, Config(select=(code,)))]


def _pairs():
    for family in ("numerics", "paths"):
        for path in sorted((ROOT / "fixtures" / family).glob("*.in.py")):
            yield pytest.param(path, id=path.name)


@pytest.mark.parametrize("path", list(_pairs()))
def test_fix_fixture(path: Path):
    source = path.read_text()
    expected = path.with_name(path.name[: -len(".in.py")] + ".out.py").read_text()
    findings = check_source(source, Config(select=("GL3", "GL4")), path=path.name)
    unsafe = "unsafe" in path.name
    new, applied, _ = fix_source(source, findings, unsafe=unsafe)
    assert applied
    assert new == expected


def test_safe_fixes_only_without_unsafe_flag():
    src = ("import torch\nimport torch.nn.functional as F\n\n"
           "def f(z, t):\n"
           "    z = torch.nn.Parameter(z)\n"
           "    a = torch.log(F.softmax(z, dim=1))\n"
           "    b = F.binary_cross_entropy(torch.sigmoid(z), t)\n"
           "    c = torch.sqrt((z ** 2).sum(-1))\n"
           "    return a, b, c\n")
    findings = check_source(src, Config(select=("GL3",)))
    assert {f.code for f in findings} == {"GL301", "GL302", "GL306"}
    safe_only, applied, _ = fix_source(src, findings, unsafe=False)
    assert [f.code for f in applied] == ["GL302"]
    assert "F.log_softmax(z, dim=1)" in safe_only and "torch.sigmoid(z)" in safe_only
    both, applied, _ = fix_source(src, findings, unsafe=True)
    assert sorted(f.code for f in applied) == ["GL301", "GL302", "GL306"]
    assert "F.binary_cross_entropy_with_logits(z, t)" in both
    assert "torch.sqrt((z ** 2).sum(-1) + 1e-12)" in both


def test_logsigmoid_fix_needs_a_reachable_name():
    # `from torch import sigmoid, log` gives no spelling of logsigmoid: no fix, still a finding.
    src = "from torch import sigmoid, log\n\ndef f(z):\n    return log(sigmoid(z))\n"
    findings = check_source(src, Config(select=("GL302",)))
    assert [f.code for f in findings] == ["GL302"]
    assert findings[0].fix is None


MODEL_LOGSIGMOID = ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                    "        self.fc = nn.Linear(4, 4)\n\n    def forward(self, x):\n{local}"
                    "        return torch.log(torch.sigmoid(self.fc(x)))\n")


@pytest.mark.parametrize("where, local", [
    ("def helper(x):\n    import torch.nn.functional as F\n    return F.relu(x)\n\n\n", ""),
    ("if __name__ == '__main__':\n    import torch.nn.functional as F\n\n\n", ""),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch.nn.functional as F\n\n\n", ""),
    ("import torch.nn.functional as F\n\n\n", "        B, F = x.shape\n"),
], ids=["in a function", "under __main__", "under TYPE_CHECKING", "shadowed by a local"])
def test_fixes_name_only_what_the_module_imports_at_its_top(where, local):
    """The import table holds every import of the file: the fix wrote `F.logsigmoid` where no
    `F` is bound (an import inside another function, under `if`), or where a local hides it."""
    src = "import torch\nfrom torch import nn\n" + where + MODEL_LOGSIGMOID.format(local=local)
    findings = check_source(src, Config(select=("GL302",)))
    new, applied, _ = fix_source(src, findings)
    assert [f.code for f in applied] == ["GL302"]
    assert "return nn.functional.logsigmoid(self.fc(x))" in new


@pytest.mark.parametrize("expr", [
    "torch.log(torch.softmax(z, -1), out=buf)",
    "torch.log(torch.softmax(z, -1)  # noqa: E501\n    )",
    "torch.log(  # the probabilities\n        torch.sigmoid(z))",
    "z.softmax(\n        -1  # classes\n    ).log()",
], ids=["out", "comment after", "comment before", "comment in the args"])
def test_log_fix_only_when_it_drops_nothing_of_the_call(expr):
    """The fix rewrites the whole log call from the probability's arguments: another argument of
    the log (`out=buf`, left unwritten) or a comment in the call was lost."""
    src = f"import torch\n\n\ndef f(z, buf):\n    z = torch.nn.Parameter(z)\n    return {expr}\n"
    findings = check_source(src, Config(select=("GL302",)))
    assert [f.code for f in findings] == ["GL302"]
    assert findings[0].fix is None


def test_softmax_fix_keeps_from_import_style():
    src = ("from torch.nn.functional import softmax, log_softmax\nimport torch\n\n"
           "def f(z):\n    return torch.log(softmax(z, dim=-1))\n")
    findings = check_source(src, Config(select=("GL302",)))
    new, applied, _ = fix_source(src, findings)
    assert new.endswith("    return log_softmax(z, dim=-1)\n")


def test_gl301_fix_only_when_the_criterion_serves_this_call_alone():
    src = ("import torch\nfrom torch import nn\n\n"
           "def step(z, t, p2, t2):\n"
           "    crit = nn.BCELoss()\n"
           "    a = crit(torch.sigmoid(z), t)\n"
           "    b = crit(p2, t2)\n"
           "    return a + b\n")
    (f,) = check_source(src, Config(select=("GL301",)))
    assert f.fix is None  # switching crit to BCEWithLogitsLoss would break the second call
    inline = "import torch\nfrom torch import nn\n\ndef step(z, t):\n    return nn.BCELoss()(torch.sigmoid(z), t)\n"
    (g,) = check_source(inline, Config(select=("GL301",)))
    new, applied, _ = fix_source(inline, [g], unsafe=True)
    assert new.endswith("    return nn.BCEWithLogitsLoss()(z, t)\n")
