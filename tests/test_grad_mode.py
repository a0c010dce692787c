"""One answer to "what does this with-item or decorator do to grad mode" (names.grad_mode), and
that each front-end reading it (training loops, numerics, forward outputs, detached modules) now
agrees on the spellings it once tested differently."""

from __future__ import annotations

import libcst as cst
import pytest

from gradlint.source.names import build_import_table, grad_mode, with_mode
from tests.conftest import codes_for

HEADER = "import torch\nimport torch.autograd\nfrom torch import no_grad as ng, enable_grad\n"


@pytest.mark.parametrize("item, mode", [
    ("torch.no_grad()", "off"),
    ("torch.no_grad", "off"),
    ("ng()", "off"),
    ("torch.autograd.no_grad()", "off"),
    ("torch.inference_mode()", "inference"),
    ("torch.inference_mode(True)", "inference"),
    ("torch.inference_mode(False)", None),
    ("torch.inference_mode(mode)", None),
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


@pytest.mark.parametrize("items, mode", [
    ("torch.no_grad(), torch.enable_grad()", "on"),
    ("torch.enable_grad(), torch.no_grad()", "off"),
    ("torch.no_grad(), open(path) as f", "off"),
    ("torch.no_grad(), torch.set_grad_enabled(flag)", "unknown"),
    ("open(path) as f", None),
    ("torch.inference_mode(), torch.enable_grad()", "inference"),
    ("torch.inference_mode(), torch.no_grad()", "inference"),
])
def test_with_mode_is_the_last_switch(items: str, mode: str | None) -> None:
    """torch applies the items in order: the last switch is the mode inside (measured:
    `with no_grad(), enable_grad():` records, the reverse does not), but nothing turns recording
    back on inside inference_mode (measured: requires_grad False, backward raises)."""
    module = cst.parse_module(HEADER + f"with {items}:\n    pass\n")
    assert with_mode(module.body[-1].items, build_import_table(module).qualify) == mode


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
