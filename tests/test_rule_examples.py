"""Every rule's documented examples are tests: invalid ones must be flagged, valid ones must not."""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config
from gradlint.registry import load_rules
from tests.conftest import example_bytes

RULES = load_rules()


def _cases(attr: str):
    for code, rule in RULES.items():
        for i, ex in enumerate(getattr(rule, attr)):
            yield pytest.param(code, ex, id=f"{code}-{attr}-{i}")


def _run(code, ex):
    content, name = example_bytes(ex.source, ex.kind)
    return check_source(content, Config(select=(code,)), path=name, extra_files=dict(ex.files))


@pytest.mark.parametrize("code,ex", list(_cases("invalid")))
def test_invalid_example_is_flagged(code, ex):
    findings = _run(code, ex)
    assert code in [f.code for f in findings], f"{code} did not flag:\n{ex.source}"


@pytest.mark.parametrize("code,ex", list(_cases("valid")))
def test_valid_example_is_not_flagged(code, ex):
    findings = [f for f in _run(code, ex) if f.code == code]
    assert not findings, f"{code} flagged a valid example:\n{ex.source}\n{findings}"


@pytest.mark.parametrize("code", [c for c, r in RULES.items() if not r.probe_only and not r.always_on])
def test_every_static_rule_has_examples_both_ways(code):
    rule = RULES[code]
    assert rule.invalid, f"{code} has no invalid examples"
    assert rule.valid, f"{code} has no valid examples"
