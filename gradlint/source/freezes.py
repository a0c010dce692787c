"""Which submodules a class's code freezes, read from its text: a line naming `self.m` that turns
its gradients off, or a loop over its parameters that does.

Two readers ask: which extra output of a forward is a frozen teacher's (forward.py), and whether a
module that forward detaches was frozen on purpose rather than handed to an optimizer
(numerics_sites, GL403's facts). They once kept two copies of the same pattern with different
spellings each; this is the one answer. Text, not the tree: a freeze is written in many shapes
(`freeze(self.m)`, `self.m.requires_grad_(False)`, a loop over `named_parameters()`), and each
line that names the module and turns gradients off is enough.
"""

from __future__ import annotations

import re

# A line that freezes what it names: `requires_grad_(False)`, `requires_grad = False` (on a module
# a no-op that GL404 reports, but the author's intent: frozen), a call of a helper or method named
# `freeze` or `freeze_...` (not `unfreeze`, not `freeze_bn`: BatchNorm put in eval mode still
# trains; a setting `freeze=cfg.freeze` is no call), CycleGAN's `set_requires_grad(self.netD, False)`.
_FREEZING = re.compile(r"requires_grad_\(\s*(requires_grad\s*=\s*)?False\s*\)|\brequires_grad\s*=\s*False\b"
                       r"|\bfreeze(?!_?(?:bn|batch_?norm|norm)\w*)(?:_\w+)?\s*\(|\bset_requires_grad\s*\([^)]*\bFalse\b")
# What sets a parameter's flag to False inside a loop over a module's parameters.
_SETS_FALSE = re.compile(r"requires_grad\s*=\s*False\b|requires_grad_\(\s*(requires_grad\s*=\s*)?False\s*\)")
_PATH = re.compile(r"\bself((?:\.\w+)+)")
_LOOPED = re.compile(r"\bself((?:\.\w+)+?)\.(?:named_)?parameters\(\)")


def frozen_paths(code: str) -> set[str]:
    """The attribute paths of `self` that `code` freezes (`self.teacher`, `self.enc.layer1`), each
    with the paths it starts with (`self.enc` for `self.enc.layer1.requires_grad_(False)`: part of
    it frozen is enough to call it frozen). Comments are left out (`# do not freeze: trained with
    the actor`); a loop `for p in self.m.parameters():` or `.named_parameters()` freezes `self.m`
    when one of the next three lines sets a flag to False."""
    found: set[str] = set()
    lines = [line.split("#", 1)[0] for line in code.splitlines()]
    lines = [line for line in lines if line.strip()]
    for i, line in enumerate(lines):
        if "self." not in line:
            continue
        if _FREEZING.search(line):
            for m in _PATH.finditer(line):
                attrs = m.group(1)
                if line[m.end():].lstrip().startswith("(") or attrs.endswith(".requires_grad"):
                    attrs = attrs.rsplit(".", 1)[0]  # (a method called on the module, or its flag)
                found.update(_prefixes(attrs))
        elif line.lstrip().startswith("for ") and any(_SETS_FALSE.search(later) for later in _body(lines, i)):
            for m in _LOOPED.finditer(line):
                found.update(_prefixes(m.group(1)))
    return found


def _body(lines: list[str], i: int) -> list[str]:
    """Up to three lines of the body of the `for` on line i: those indented deeper than it (the
    next loop's body is not this one's)."""
    depth = len(lines[i]) - len(lines[i].lstrip())
    out = []
    for later in lines[i + 1:i + 4]:
        if len(later) - len(later.lstrip()) <= depth:
            break
        out.append(later)
    return out


def _prefixes(attrs: str) -> list[str]:
    """`.a.b` -> ['self.a', 'self.a.b']."""
    parts = attrs.split(".")[1:]
    return ["self." + ".".join(parts[:k]) for k in range(1, len(parts) + 1)]
