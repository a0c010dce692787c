"""Rules decide from neutral facts alone: a fix built from facts that went through the cache is
the fix built from fresh ones, the probe rules judge hand-made measurements, and every rule says
what the probe measures for it."""

from __future__ import annotations

import pytest

from gradlint import cache
from gradlint.facts.probe import MeasuredChain, ProbeFacts, UnitShare
from gradlint.findings import SourceSpan
from gradlint.registry import load_rules
from gradlint.source import parse
from gradlint.source.numerics import extract

FIXABLE = [
    ("GL302", "import torch\nimport torch.nn.functional as F\n\ndef f(z):\n"
              "    z = torch.nn.Parameter(z)\n    return torch.log(F.softmax(z, -1))\n"),
    ("GL302", "import torch\nimport torch.nn.functional as F\n\ndef f(z):\n"
              "    z = torch.nn.Parameter(z)\n    return torch.log(1 - torch.sigmoid(z + 1))\n"),
    ("GL301", "import torch\nfrom torch import nn\n\ndef step(logits, target):\n"
              "    crit = nn.BCELoss()\n    return crit(logits.sigmoid(), target)\n"),
    ("GL306", "import torch\n\ndef f(w):\n    w = torch.nn.Parameter(w)\n    return torch.sqrt((w ** 2).sum())\n"),
]


@pytest.mark.parametrize("code, src", FIXABLE)
def test_a_fix_is_built_from_the_cached_facts_alone(code, src):
    fresh = extract(parse("x.py", src))
    stored = cache.loads(cache.dumps(fresh))
    rule = load_rules()[code]()
    (site,) = [s for s in fresh.sites if rule.selects(s)]
    (again,) = [s for s in stored.sites if rule.selects(s)]
    fix = rule.fix(site, fresh)
    assert fix is not None and fix == rule.fix(again, stored)


def test_a_fix_needs_a_spelling_through_the_file_imports():
    # `softmax` imported by name and no torch module imported: log_softmax cannot be spelled
    src = ("from torch import log, nn\nfrom torch.nn.functional import softmax\n\n"
           "def f(z):\n    z = nn.Parameter(z)\n    return log(softmax(z, -1))\n")
    facts = extract(parse("x.py", src))
    rule = load_rules()["GL302"]()
    (site,) = [s for s in facts.sites if rule.selects(s)]
    assert site.pieces is not None and rule.fix(site, facts) is None


def _probe(code: str, facts: ProbeFacts, **options):
    rule = load_rules()[code]
    opts = {k: o.default for k, o in rule.options.items()} | options
    return list(rule().measured(facts, opts))


def test_measured_chains_are_reported_past_the_threshold_unless_predicted():
    steep = MeasuredChain(("a", "b", "c"), 1e-5, 2.0, ("a", "b"))
    mild = MeasuredChain(("d", "e"), 0.5, 2.0, ("d", "e"))
    predicted = MeasuredChain(("f", "g"), 1e-6, 1.0, ("f", "g"), predicted_vanishing=True)
    (m,) = _probe("GL701", ProbeFacts(steps=2, chains=(steep, mild, predicted)))
    assert m.module == "a" and m.sites == ("a", "b", "c") and "below the vanishing threshold 0.001" in m.message
    assert _probe("GL701", ProbeFacts(steps=2, chains=(steep,)), **{"vanishing-threshold": 1e-6}) == []
    (e,) = _probe("GL702", ProbeFacts(steps=2, chains=(MeasuredChain(("a", "b", "c"), 1.0, 5e3, ("b", "c")),)))
    assert e.sites == ("b", "c") and e.measured == 5e3


def test_unit_shares_are_grouped_by_location_and_type_above_the_share():
    at = SourceSpan.point(7, 1)
    dead = (UnitShare("body.0", at, "ReLU", 0.9), UnitShare("body.2", at, "ReLU", 0.8),
            UnitShare("head", SourceSpan.point(9, 1), "ReLU", 0.5))
    (m,) = _probe("GL705", ProbeFacts(steps=3, dead=dead))
    assert m.sites == ("body.0", "body.2") and m.span == at and m.data["dead_fraction"] == 0.9
    assert m.message.startswith("80% to 90% of the units of 2 ReLU modules")
    saturated = (UnitShare("t", at, "Tanh", 0.95, predicted=True),)
    assert _probe("GL706", ProbeFacts(steps=3, saturated=saturated)) == []


def test_a_freeze_under_no_grad_is_info():
    facts = ProbeFacts(steps=1, param_count=4, without_grad=("backbone.weight",),
                       param_owner=(("backbone.weight", "backbone"),), cuts=((12, "torch.no_grad()"),))
    (m,) = _probe("GL707", facts)
    assert m.info and m.span == SourceSpan.point(12, 1) and m.module == "backbone"
    (m,) = _probe("GL707", ProbeFacts(steps=1, param_count=4, without_grad=("w",), cuts=((3, ".detach()"),)))
    assert not m.info


@pytest.mark.parametrize("family, measure", [("GL0", "not_measurable"), ("GL2", "not_measurable"),
                                             ("GL5", "not_measurable"), ("GL3", "first_nonfinite")])
def test_every_rule_of_a_family_says_what_the_probe_measures(family, measure):
    rules = [r for code, r in load_rules().items() if code.startswith(family)]
    assert rules and {r.probe_measure for r in rules} == {measure}
