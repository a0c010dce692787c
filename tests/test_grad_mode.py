"""One answer to "what does this with-item or decorator do to grad mode" (names.grad_mode), and
that each front-end reading it (training loops, numerics, forward outputs, detached modules) now
agrees on the spellings it once tested differently."""

from __future__ import annotations

import libcst as cst
import pytest

from gradlint.source.names import build_import_table, grad_mode
from tests.conftest import codes_for

HEADER = "import torch\nimport torch.autograd\nfrom torch import no_grad as ng, enable_grad\n"


@pytest.mark.parametrize("item, mode", [
    ("torch.no_grad()", "off"),
    ("torch.no_grad", "off"),
    ("ng()", "off"),
    ("torch.autograd.no_grad()", "off"),
    ("torch.inference_mode()", "off"),
    ("torch.inference_mode(True)", "off"),
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
    ("no_grad()", None),  # (not imported: a name of the file's own)
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
