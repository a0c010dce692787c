"""One answer to "what does this with-item or decorator do to grad mode" (names.grad_mode), and
that each front-end reading it (training loops, numerics, forward outputs, detached modules) now
agrees on the spellings it once tested differently."""

from __future__ import annotations

import libcst as cst
import pytest

from gradlint.source.names import build_import_table, grad_mode, grad_state, with_items
from tests.conftest import codes_for

HEADER = "import torch\nimport torch.autograd\nfrom torch import no_grad as ng, enable_grad\n"


@pytest.mark.parametrize("item, mode", [
    ("torch.no_grad()", "off"),
    ("torch.no_grad", "off"),
    ("ng()", "off"),
    ("torch.autograd.no_grad()", "off"),
    ("torch.inference_mode()", "inference"),
    ("torch.inference_mode(True)", "inference"),
    ("torch.inference_mode(False)", "resume"),
    ("torch.inference_mode(mode)", "unknown"),
    ("torch.set_grad_enabled(False)", "off"),
    ("torch.set_grad_enabled(mode=False)", "off"),
    ("torch.set_grad_enabled(True)", "on"),
    ("torch.set_grad_enabled(self.training)", "unknown"),
    ("torch.set_grad_enabled", None),
    ("torch.enable_grad()", "on"),
    ("enable_grad()", "on"),
    ("torch.autocast('cuda')", None),
    ("no_grad()", "off"),  # (not named by the imports, `from torch import *`: read by its last name)
    ("helpers.no_grad()", "off"),
    ("torch.autograd.inference_mode()", "inference"),
    ("nograd()", None),
    ("open(path)", None),
])
def test_grad_mode_of_each_spelling(item: str, mode: str | None) -> None:
    module = cst.parse_module(HEADER + f"with {item}:\n    pass\n")
    table = build_import_table(module)
    with_stmt = module.body[-1]
    assert grad_mode(with_stmt.items[0].item, table.qualify) == mode


ACOS = ("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\nclass M(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.f = nn.Linear(8, 8)\n\n"
        "    @torch.no_grad()\n    def forward(self, a, b):\n{body}")


def test_numerics_reads_enable_grad_inside_no_grad() -> None:
    recorded = "        with torch.no_grad():\n            with torch.enable_grad():\n" \
               "                return torch.acos(F.cosine_similarity(self.f(a), b))\n"
    quiet = "        with torch.no_grad():\n            return torch.acos(F.cosine_similarity(self.f(a), b))\n"
    plain = ACOS.replace("    @torch.no_grad()\n", "")
    assert codes_for(plain.format(body=recorded), select="GL308") == ["GL308"]
    assert codes_for(plain.format(body=quiet), select="GL308") == []


def test_numerics_reads_set_grad_enabled_decorator() -> None:
    body = "        return torch.acos(F.cosine_similarity(self.f(a), b))\n"
    off = ACOS.replace("@torch.no_grad()", "@torch.set_grad_enabled(False)").format(body=body)
    computed = ACOS.replace("@torch.no_grad()", "@torch.set_grad_enabled(TRAIN)").format(body=body)
    assert codes_for(off, select="GL308") == []
    assert codes_for(computed, select="GL308") == ["GL308"]


@pytest.mark.parametrize("outside, items, inside", [
    (None, "torch.no_grad(), torch.enable_grad()", None),
    (None, "torch.enable_grad(), torch.no_grad()", "off"),
    (None, "torch.no_grad(), open(path) as f", "off"),
    (None, "torch.no_grad(), torch.set_grad_enabled(flag)", "off"),
    (None, "open(path) as f", None),
    (None, "torch.inference_mode(), torch.enable_grad()", "inference"),
    (None, "torch.inference_mode(), torch.no_grad()", "inference"),
    (None, "torch.no_grad(), torch.inference_mode(False)", None),
    ("inference", "torch.enable_grad()", "inference"),
    ("inference", "torch.set_grad_enabled(True)", "inference"),
    ("inference", "torch.inference_mode(False)", None),
    ("off", "torch.enable_grad()", None),
    ("off", "open(path) as f", "off"),
])
def test_grad_state_folds_the_switches_in_order(outside, items: str, inside) -> None:
    """torch enters the items in order, the last switch decides (measured: `with no_grad(),
    enable_grad():` records, the reverse does not); inside inference_mode only
    inference_mode(False) records again (measured: enable_grad there leaves requires_grad False,
    inference_mode(False) sets it, under no_grad too)."""
    module = cst.parse_module(HEADER + f"with {items}:\n    pass\n")
    assert grad_state(outside, with_items(module.body[-1]), build_import_table(module).qualify) == inside


def test_unsure_switch_records_for_readers_that_want_it() -> None:
    module = cst.parse_module(HEADER + "with torch.no_grad(), torch.set_grad_enabled(flag):\n    pass\n")
    table = build_import_table(module)
    assert grad_state(None, with_items(module.body[-1]), table.qualify, unsure_records=True) is None


def test_stacked_decorators_nearest_the_def_last() -> None:
    """`@no_grad() @enable_grad() def f` records (measured), `@enable_grad() @no_grad()` does not."""
    on = "import torch\nfrom torch import nn\n\nmodel = nn.Linear(4, 3)\n\n\n@torch.no_grad()\n@torch.enable_grad()\n" \
         "def f(x):\n    return torch.log(torch.softmax(model(x), -1))\n"
    off = on.replace("@torch.no_grad()\n@torch.enable_grad()", "@torch.enable_grad()\n@torch.no_grad()")
    assert codes_for(on, select="GL302") == ["GL302"]
    assert codes_for(off, select="GL302") == []


def test_set_grad_enabled_statement_in_a_nested_block() -> None:
    script = "import torch\nfrom torch import nn\n\nmodel = nn.Linear(4, 3)\n\nif __name__ == '__main__':\n" \
             "    torch.set_grad_enabled(False)\n    probs = torch.log(torch.softmax(model(torch.ones(4)), -1))\n"
    assert codes_for(script, select="GL302") == []
    assert codes_for(script.replace("    torch.set_grad_enabled(False)\n", ""), select="GL302") == ["GL302"]


def test_training_loop_reads_set_grad_enabled_statement() -> None:
    loop = ("import torch\nimport torch.nn as nn\n\nmodel = nn.Linear(4, 1)\n"
            "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n\n\ndef train(loader):\n"
            "    torch.set_grad_enabled(False)\n    for x, y in loader:\n        opt.zero_grad()\n"
            "        loss = ((model(x) - y) ** 2).mean()\n        loss.backward()\n        opt.step()\n")
    assert codes_for(loop, select="GL207") == ["GL207"]
    assert codes_for(loop.replace("    torch.set_grad_enabled(False)\n", ""), select="GL207") == []


def test_numerics_reads_enable_grad_inside_a_no_grad_decorated_function() -> None:
    recorded = "        with torch.enable_grad():\n            return torch.acos(F.cosine_similarity(self.f(a), b))\n"
    assert codes_for(ACOS.format(body=recorded), select="GL308") == ["GL308"]
    quiet = "        return torch.acos(F.cosine_similarity(self.f(a), b))\n"
    assert codes_for(ACOS.format(body=quiet), select="GL308") == []


def test_numerics_with_items_in_order() -> None:
    plain = ACOS.replace("    @torch.no_grad()\n", "")
    last_on = "        with torch.no_grad(), torch.enable_grad():\n            return torch.acos(F.cosine_similarity(self.f(a), b))\n"
    last_off = "        with torch.enable_grad(), torch.no_grad():\n            return torch.acos(F.cosine_similarity(self.f(a), b))\n"
    assert codes_for(plain.format(body=last_on), select="GL308") == ["GL308"]
    assert codes_for(plain.format(body=last_off), select="GL308") == []


def test_numerics_quiet_under_inference_mode_whatever_is_inside() -> None:
    inside = "        with torch.enable_grad():\n            return torch.acos(F.cosine_similarity(self.f(a), b))\n"
    decorated = ACOS.replace("@torch.no_grad()", "@torch.inference_mode()").format(body=inside)
    assert codes_for(decorated, select="GL308") == []
    plain = ACOS.replace("    @torch.no_grad()\n", "")
    both = "        with torch.inference_mode(), torch.enable_grad():\n" \
           "            return torch.acos(F.cosine_similarity(self.f(a), b))\n"
    assert codes_for(plain.format(body=both), select="GL308") == []


def test_training_loops_read_inference_mode_as_final() -> None:
    loop = ("import torch\nimport torch.nn as nn\n\nmodel = nn.Linear(4, 1)\n"
            "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n\n\ndef train(loader):\n    for x, y in loader:\n"
            "        opt.zero_grad()\n        with {items}:\n            loss = ((model(x) - y) ** 2).mean()\n"
            "            loss.backward()\n        opt.step()\n")
    assert codes_for(loop.format(items="torch.inference_mode(), torch.enable_grad()"), select="GL207") == ["GL207"]
    assert codes_for(loop.format(items="torch.no_grad(), torch.enable_grad()"), select="GL207") == []
