"""freezes.frozen_paths: the one reading of "which submodules does this class freeze", shared by the
forward front-end (a frozen teacher's output) and the GL403 facts (a detached module frozen on
purpose)."""

from __future__ import annotations

import pytest

from gradlint.source.freezes import frozen_paths


@pytest.mark.parametrize("code, frozen", [
    ("self.teacher.requires_grad_(False)", {"self.teacher"}),
    ("self.teacher.requires_grad_(requires_grad=False)", {"self.teacher"}),
    ("self.enc.layer1.requires_grad = False", {"self.enc", "self.enc.layer1"}),
    ("freeze(self.backbone)", {"self.backbone"}),
    ("self.backbone.freeze()", {"self.backbone"}),
    ("for p in self.a.parameters():\n    p.requires_grad = True\nfor p in self.t.parameters():\n"
     "    p.requires_grad = False", {"self.t"}),  # (the next loop's body is not the first's)
    ("freeze_layers(self.backbone, 3)", {"self.backbone"}),
    ("self.set_requires_grad([self.netD_A, self.netD_B], False)", {"self.netD_A", "self.netD_B"}),
    ("for p in self.teacher.parameters():\n    p.requires_grad = False", {"self.teacher"}),
    ("for n, p in self.teacher.named_parameters():\n    if 'bias' in n:\n        continue\n"
     "    p.requires_grad = False", {"self.teacher"}),
    ("for p in list(self.a.parameters()) + list(self.b.parameters()):\n    p.requires_grad_(False)",
     {"self.a", "self.b"}),
])
def test_frozen(code: str, frozen: set[str]) -> None:
    assert frozen_paths(code) == frozen


@pytest.mark.parametrize("code", [
    "self.teacher.eval()",
    "self.teacher.train(False)",
    "unfreeze(self.backbone)",
    "self.backbone = build(cfg, freeze=False)",
    "self.backbone.requires_grad_(True)",
    "# freeze(self.backbone) once it converges\nx = self.backbone(x)",
    "for p in self.teacher.parameters():\n    p.requires_grad = True",
    "for p in self.teacher.parameters():\n    total += p.numel()\n    a = 1\n    b = 2\n    c = 3\n"
    "    p.requires_grad = False",  # (too far below the loop to be its body's)
    "self.requires_grad = False",
    "freeze_bn(self.backbone)",
    "self.backbone.freeze_bn()",
    "self.adj = Adj(d, freeze=cfg.freeze)",
])
def test_not_frozen(code: str) -> None:
    assert frozen_paths(code) == set()
