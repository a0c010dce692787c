"""Every rule example that shows a fix (`fixed=`) is a test: fixing the invalid source gives exactly
`fixed`, the result parses, and the rule no longer flags it. Serves every rule's fixes."""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config
from gradlint.fix import fix_text, reparses
from gradlint.registry import load_rules

RULES = load_rules()


def _cases():
    for code, rule in RULES.items():
        for i, ex in enumerate(rule.invalid):
            if ex.fixed is not None:
                yield pytest.param(code, ex, id=f"{code}-invalid-{i}")


CASES = list(_cases())


def _fix(code: str, source: str, files) -> str:
    config = Config(select=(code,))

    def recheck(text: str):
        return check_source(text, config, extra_files=dict(files))

    findings = recheck(source)
    assert any(f.fix is not None for f in findings if f.code == code), f"{code} offers no fix"
    # `fixed` documents what the fix does, safe or not (unsafe ones need --unsafe-fixes)
    new, applied, problems = fix_text(source, findings, unsafe=True, recheck=recheck)
    assert not problems, problems
    assert applied >= 1
    return new


@pytest.mark.parametrize("code,ex", CASES)
def test_fix_gives_the_documented_result(code, ex):
    new = _fix(code, ex.source, ex.files)
    assert new == ex.fixed
    assert reparses(new)


@pytest.mark.parametrize("code,ex", CASES)
def test_fixed_example_is_clean_and_stable(code, ex):
    findings = [f for f in check_source(ex.fixed, Config(select=(code,)), extra_files=dict(ex.files)) if f.code == code]
    assert not [f for f in findings if f.fix is not None], f"{code} still offers a fix on its fixed example"


def test_there_are_fix_examples():
    # the training rules document their fixes this way; if none are found the test above is empty
    assert {"GL202", "GL203"} <= {c for c, _ in ((p.values[0], p.values[1]) for p in CASES)}


def test_fixable_is_derived_from_examples():
    assert RULES["GL203"].fixable() and RULES["GL202"].fixable()
    assert not RULES["GL205"].fixable()
