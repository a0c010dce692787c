"""nn.Module classes -> model IR (placeholder until the lowering lands)."""

from __future__ import annotations


def extract(src):
    return (), ()
