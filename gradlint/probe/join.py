"""The join: a verdict for each static finding from the measurements, and the probe's own findings.

Pure functions on plain data (no torch): the static findings, the `Measurements`, the gradient
check's result, and the model's module classes by path. What is measured for a static finding is
what its rule declares (`Rule.probe_measure`); the probe's own findings are decided and worded by
the probe rules (gradlint/rules/probe) from the `ProbeFacts` assembled here.

Verdicts for a predicted gain (GL101 vanishing, GL102 exploding) with thresholds t_v (1e-3)
and t_e (1e3), m the measured gain:
- vanishing: confirmed when m < t_v; refuted when m ≥ 10·t_v (clearly not vanishing);
  inconclusive in between, or when the modules cannot be found or measured.
- exploding: confirmed when m > t_e; refuted when m ≤ t_e/10; inconclusive in between.
A finding's own 'threshold' (the configured one) replaces the default.
GL104 (saturated activation, predicted pre-activation std): confirmed when the measured std
is ≥ 3, refuted when < 1, inconclusive in between. GL105 (dead init): confirmed when a named
layer's weight gradient is exactly zero. GL405/GL406 (custom backward): confirmed
when the Function fails the gradient check, refuted when it passes. GL0xx, GL2xx (the user's
training loop, which the probe does not run), GL5xx and GL107 (the recurrence is inside
nn.RNN, out of reach of module hooks): not measurable. A GL3xx numerics hazard is confirmed
when the probe's first NaN/Inf (GL703) appears in the module whose class holds its line; a
run without NaN does not refute it (the probe sees a few batches), so it stays inconclusive. Any other finding that names a chain
('network', 'modules') and a 'predicted' gain: confirmed when the measured gain is within 10× of
the prediction, refuted when it is more than 100× away. Everything else: inconclusive.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from gradlint.facts.probe import GradcheckFailure, MeasuredChain, ProbeFacts, UnitShare
from gradlint.findings import Finding, Severity, SourceSpan, make_data
from gradlint.probe.measure import MIN_CHAIN, measured_chains  # noqa: F401  (re-exported)

CONFIRMED, REFUTED, INCONCLUSIVE, NOT_MEASURABLE, FOUND = (
    "confirmed", "refuted", "inconclusive", "not measurable", "found")
SATURATED_STD, HEALTHY_STD = 3.0, 1.0
GAINS = ("vanishing_gain", "exploding_gain")


@dataclass
class Verdict:
    """One finding of the probe's report: a static finding with its verdict, or a probe finding."""

    finding: Finding
    verdict: str
    predicted: float | None = None
    measured: float | None = None
    detail: str = ""
    sites: tuple[str, ...] = ()  # the measured sites (for the plot)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Thresholds:
    vanishing: float = 1e-3
    exploding: float = 1e3


def join_path(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix and path else prefix or path


def instances(module_classes: dict[str, str], network: str | None) -> list[str]:
    """Paths of every submodule (the root included, as '') whose class is `network`."""
    return [p for p, cls in module_classes.items() if cls == network]


def onnx_scope(name: str) -> str:
    """torch.onnx names a node after its module scope, '/body/body.0/Gemm': the module path is
    the last scope ('body.0'). Other names pass through unchanged."""
    if name.startswith("/"):
        parts = name.split("/")
        if len(parts) >= 3:
            return parts[-2]
    return name


def chain_gain(data: dict[str, Any], meas: Any, module_classes: dict[str, str], worst: bool = False,
               whole_model: bool = False, shorter: bool = False) -> tuple[float | None, str, tuple[str, ...], int]:
    """Measured gain of a finding's chain: (gain, why not, sites, instances measured). With
    several instances of the network class (a block used 4 times), the geometric mean. `worst`:
    the largest gain over every sub-chain (exploding), else first to last. Only instances of
    the finding's own class are measured: another class's layers with the same paths prove
    nothing about it. `whole_model`: the paths may be the model's own (an ONNX export, the factory).
    `shorter`: when the model holds only the first layers of the chain (its factory built the
    class with a smaller depth than the defaults the static pass read), measure those; the
    sites are then fewer than the finding's modules (`shortened`)."""
    modules = tuple(onnx_scope(str(m)) for m in data.get("modules") or ())
    network = data.get("network")
    if len(modules) < 1:
        return None, "the finding names no modules", (), 0
    roots = instances(module_classes, network)
    if not roots and whole_model and all(m in module_classes for m in (modules[0], modules[-1])):
        roots = [""]  # an ONNX graph named after the export: paths relative to the model itself
    if not roots:
        return None, f"no module of class {network!r} in the model", (), 0
    gains, sites = [], ()
    for root in roots:
        first, last = join_path(root, modules[0]), join_path(root, modules[-1])
        if first not in module_classes or last not in module_classes:
            continue
        if worst and hasattr(meas, "worst_gain"):
            g = meas.worst_gain([join_path(root, m) for m in modules])[0]
        else:
            g = meas.grad_ratio(first, last)
        if g is not None and g >= 0 and math.isfinite(g):
            gains.append(g)
            if not sites:
                sites = tuple(join_path(root, m) for m in modules)
    if not gains and shorter:
        for root in roots:
            present = list(itertools.takewhile(lambda m: join_path(root, m) in module_classes, modules))
            if len(present) >= 2:
                return chain_gain({**data, "modules": tuple(present)}, meas, module_classes, worst, whole_model)
    if not gains:
        return None, f"modules {modules[0]}..{modules[-1]} of {network} not found or not measured", (), 0
    if min(gains) == 0:  # no gradient at all reaches the first layer: the extreme of vanishing
        return 0.0, "", sites, len(gains)
    return math.exp(sum(math.log(g) for g in gains) / len(gains)), "", sites, len(gains)


def gain_verdict(kind: str, measured: float | None, th: Thresholds) -> str:
    if measured is None or not math.isfinite(measured):
        return INCONCLUSIVE
    if kind == "vanishing":
        return CONFIRMED if measured < th.vanishing else REFUTED if measured >= 10 * th.vanishing else INCONCLUSIVE
    return CONFIRMED if measured > th.exploding else REFUTED if measured <= th.exploding / 10 else INCONCLUSIVE


def _inside(f: Finding, region: NanRegion) -> bool:
    import os

    same = os.path.normpath(f.path) == os.path.normpath(region.path)
    return same and region.first_line <= f.span.line <= region.last_line


def prediction_verdict(predicted: float | None, measured: float | None) -> str:
    """For a finding that predicts a gain without a threshold of its own (GL103...): the
    prediction holds within 10×, fails beyond 100×."""
    if predicted is None or measured is None or predicted <= 0 or measured <= 0:
        return INCONCLUSIVE
    off = abs(math.log10(measured / predicted))
    return CONFIRMED if off <= 1 else REFUTED if off > 2 else INCONCLUSIVE


@dataclass(frozen=True)
class NanRegion:
    """The source lines of the class whose forward made the first NaN/Inf (GL703)."""

    path: str
    first_line: int
    last_line: int
    module: str


def judge_static(findings: list[Finding], meas: Any, module_classes: dict[str, str], gradcheck: Any,
                 thresholds: dict[str, Thresholds], nan_region: NanRegion | None = None,
                 class_lines: dict[str, tuple[int, int]] | None = None, factory: str | None = None,
                 ) -> list[Verdict]:
    """A verdict per static finding. A finding's modules are looked up under the instances of
    its own class (`network`); under the model itself only for an ONNX export or a finding
    about the target's factory: another class's layers with the same paths prove nothing."""
    out = []
    class_lines = class_lines or {}
    for f in findings:
        data = f.data_dict
        measure = probe_measure(f.code)
        whole = _onnx(f) or data.get("network") in (None, factory)
        th = thresholds.get(f.code, Thresholds())
        if _num(data.get("threshold")) is not None:
            # The finding carries the threshold it was judged by (the user's configuration).
            limit = float(data["threshold"])
            th = Thresholds(limit, th.exploding) if measure == "vanishing_gain" else Thresholds(th.vanishing, limit)
        if measure in GAINS:
            worst = measure == "exploding_gain"
            gain, why, sites, n = chain_gain(data, meas, module_classes, worst=worst, whole_model=whole, shorter=True)
            kind = "exploding" if worst else "vanishing"
            verdict = gain_verdict(kind, gain, th)
            extra = {"instances": n} if n else {}
            if gain is not None and len(sites) < len(data.get("modules") or ()):
                # Fewer layers than the class's defaults give: crossing the threshold over them
                # confirms the finding; not crossing it says nothing about the defaults.
                verdict = CONFIRMED if verdict == CONFIRMED else INCONCLUSIVE
                why = (f"measured over the first {len(sites)} of the {len(data['modules'])} layers: "
                       "the model was built with fewer than the class's defaults")
                extra["shortened"] = True
            v = Verdict(f, verdict, _num(data.get("predicted")), gain, why, sites, extra)
        elif measure == "activation_std":
            v = _judge_saturation(f, data, meas, module_classes, whole)
        elif measure == "zero_weight_gradient":
            v = _judge_dead_init(f, data, meas, module_classes, whole)
        elif measure == "gradient_check":
            v = _judge_function(f, data, gradcheck)
        elif measure in ("loss_parameters_cut", "parameters_cut", "parameters_still_trained"):
            v = _judge_cut(f, measure, meas, module_classes, class_lines)
        elif measure == "first_nonfinite" and nan_region is not None and _inside(f, nan_region):
            v = Verdict(f, CONFIRMED, detail=f"NaN/Inf measured in `{nan_region.module}`, the module this code belongs to")
        elif measure == "not_measurable":
            v = Verdict(f, NOT_MEASURABLE, _num(data.get("predicted")))
        elif data.get("modules") and _num(data.get("predicted")) is not None:
            gain, why, sites, n = chain_gain(data, meas, module_classes, whole_model=whole)
            v = Verdict(f, prediction_verdict(_num(data.get("predicted")), gain), _num(data.get("predicted")),
                        gain, why, sites, {"instances": n} if n else {})
        else:
            v = Verdict(f, INCONCLUSIVE, _num(data.get("predicted")), detail="the probe does not measure this")
        out.append(v)
    return out


def probe_measure(code: str) -> str | None:
    """What the probe measures for a finding of this rule (Rule.probe_measure)."""
    from gradlint.registry import get_rule

    rule = get_rule(code)
    return rule.probe_measure if rule is not None else None


def _onnx(f: Finding) -> bool:
    """A finding of an ONNX export: its file, or torch.onnx's scoped node names ('/body/body.0/Gemm')."""
    names = f.data_dict.get("modules") or ()
    return f.path.lower().endswith(".onnx") or any(str(m).startswith("/") for m in names)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _judge_saturation(f: Finding, data: dict[str, Any], meas: Any, module_classes: dict[str, str],
                      whole_model: bool) -> Verdict:
    """The measured std of the named layers' outputs (the pre-activations), averaged over the
    layers ('modules' when the finding covers a loop or a graph, else 'module') and instances."""
    predicted = _num(data.get("predicted_std"))
    names = [onnx_scope(str(m)) for m in (data.get("modules") or (data.get("module"),)) if m]
    roots = instances(module_classes, data.get("network"))
    if not roots and whole_model and names and all(n in module_classes for n in names):
        roots = [""]  # an ONNX export: paths relative to the model itself
    stds, sites = [], []
    for root in roots:
        for name in names:
            site = join_path(root, name)
            value = meas.mean(meas.act_std, site)
            if value is not None and math.isfinite(value):
                stds.append(value)
                sites.append(site)
    if not stds:
        why = (f"no module of class {data.get('network')!r} in the model" if not roots
               else f"module {data.get('module')!r} not found or not measured")
        return Verdict(f, INCONCLUSIVE, predicted, None, why)
    m = sum(stds) / len(stds)
    verdict = CONFIRMED if m >= SATURATED_STD else REFUTED if m < HEALTHY_STD else INCONCLUSIVE
    return Verdict(f, verdict, predicted, m, "measured pre-activation std", tuple(sites),
                   extra={"roots": tuple(r for r in roots if r or data.get("network") in module_classes.values())})


def _judge_dead_init(f: Finding, data: dict[str, Any], meas: Any, module_classes: dict[str, str],
                     whole_model: bool) -> Verdict:
    """A dead init predicts exactly zero gradients: confirmed when a named layer's weight gradient is
    exactly 0 on every step; otherwise inconclusive (constant, symmetric weights still get a
    gradient: the hazard is that all units get the same one, which norms do not show)."""
    norms, sites = [], []
    for root in instances(module_classes, data.get("network")) or ([""] if whole_model else []):
        for m in data.get("modules") or ():
            sites.append(join_path(root, str(m)))
            for pname, owner in getattr(meas, "param_owner", {}).items():
                if owner == sites[-1] and pname.endswith("weight"):
                    values = [x for x in meas.param_grad_norm.get(pname, []) if x is not None]
                    norms.append(max(values) if values else 0.0)  # never got a gradient: None
    if not norms:
        return Verdict(f, INCONCLUSIVE, detail="the named layers were not found or measured")
    smallest = min(norms)
    if smallest == 0:
        return Verdict(f, CONFIRMED, None, 0.0, "a named layer's weight gradient is exactly 0", tuple(sites))
    return Verdict(f, INCONCLUSIVE, None, smallest, "every named layer's weight gradient is nonzero")


def enclosing_class(line: int, class_lines: dict[str, tuple[int, int]]) -> str | None:
    """The innermost class of the target's file whose source holds `line`."""
    best = None
    for name, (first, last) in class_lines.items():
        if first <= line <= last and (best is None or last - first < best[1]):
            best = (name, last - first)
    return best[0] if best else None


def _judge_cut(f: Finding, measure: str, meas: Any, module_classes: dict[str, str],
               class_lines: dict[str, tuple[int, int]]) -> Verdict:
    """Parameters cut from the loss (in the training loop's loss: 'loss_parameters_cut'; in a
    forward: 'parameters_cut'), or a freeze that freezes nothing ('parameters_still_trained'):
    judged by the parameters of the instances of the class whose source holds the finding."""
    cls = enclosing_class(f.span.line, class_lines)
    roots = instances(module_classes, cls) if cls else []
    if not roots:
        if measure == "loss_parameters_cut":
            return Verdict(f, NOT_MEASURABLE, detail="the training loop's loss is not the probe's")
        return Verdict(f, INCONCLUSIVE, detail="not inside a module class of the model")
    owned = [p for p, owner in getattr(meas, "param_owner", {}).items() if _under(owner, set(roots))]
    if not owned:
        return Verdict(f, INCONCLUSIVE, detail=f"{cls} has no trainable parameters")
    without = [p for p in owned if p in set(getattr(meas, "without_grad", []))]
    sites = tuple(roots)
    if measure == "parameters_still_trained":
        if without:
            return Verdict(f, REFUTED, None, float(len(without)), f"{len(without)} parameter(s) of {cls} got no gradient", sites)
        return Verdict(f, CONFIRMED, None, 0.0, f"every parameter of {cls} still gets a gradient", sites)
    if without:
        return Verdict(f, CONFIRMED, None, float(len(without)),
                       f"{len(without)} of {len(owned)} parameter(s) of {cls} got no gradient", sites)
    return Verdict(f, REFUTED, None, 0.0, f"every parameter of {cls} gets a gradient", sites)


def _judge_function(f: Finding, data: dict[str, Any], gradcheck: Any) -> Verdict:
    checked = getattr(gradcheck, "checked_functions", {}) or {}
    deliberate = getattr(gradcheck, "deliberate", {}) or {}
    for name, kind in deliberate.items():
        short = name.split(".")[-1]
        if f"`{short}`" in f.message or f"`{short}." in f.message or data.get("function") == name:
            return Verdict(f, INCONCLUSIVE, detail=f"{kind}: its backward is deliberately not the derivative")
    name = next((str(data[k]) for k in ("function", "class", "name") if data.get(k)), None)
    if name is None:
        # The messages name the Function in backticks: `Square` or `Square.backward`.
        short = {n.split(".")[-1] for n in checked}
        name = next((n for n in short if f"`{n}`" in f.message or f"`{n}." in f.message), None)
    if name is None or name.split(".")[-1] not in {n.split(".")[-1] for n in checked}:
        return Verdict(f, INCONCLUSIVE, detail="the Function was not called during the probe")
    passed = all(ok for n, ok in checked.items() if n.split(".")[-1] == name.split(".")[-1])
    return Verdict(f, REFUTED if passed else CONFIRMED, detail="gradient check " + ("passed" if passed else "failed"))


# --- the probe's own findings -------------------------------------------------------------

@dataclass
class Context:
    """What making a probe finding needs: where to put it and how to locate a module."""

    path: str
    locate: Callable[[str | None], SourceSpan]  # module path (None: the model) -> span
    rules: dict[str, Any]
    # each probe rule's options (the configuration's, else the rule's defaults)
    options: dict[str, Any] = field(default_factory=dict)


def _finding(ctx: Context, code: str, message: str, module: str | None, data: dict[str, Any],
             span: SourceSpan | None = None) -> Finding:
    rule = ctx.rules[code]
    return Finding(code=code, name=rule.name, message=message, severity=rule.severity, path=ctx.path,
                   span=span or ctx.locate(module), fix_title=rule.fix_title, data=make_data(data))


def probe_facts(ctx: Context, meas: Any, gradcheck: Any, static: list[Verdict]) -> ProbeFacts:
    """The measurements as the probe rules read them, with what the static findings already
    predicted (their verdicts, by what their rules measure)."""
    predicted_sites: dict[str, set[str]] = {"vanishing": set(), "exploding": set()}
    saturation_roots: set[str] = set()
    saturation_layers: set[str] = set()
    for v in static:
        measure = probe_measure(v.finding.code)
        if measure == "vanishing_gain" or (measure == "zero_weight_gradient" and v.verdict == CONFIRMED):
            # A dead init's zero gradient is its own finding, not a surprise vanishing chain.
            predicted_sites["vanishing"].update(v.sites)
        elif measure == "exploding_gain":
            predicted_sites["exploding"].update(v.sites)
        elif measure == "activation_std" and v.verdict != REFUTED:
            # The static pass saw saturation in this network: its other activations are no news.
            saturation_roots.update(v.extra.get("roots", ()))
            saturation_layers.update(v.sites)

    # modules that start with a weight at zero on purpose (a zero head, zero_init_residual, a
    # layer scale of 0): every layer before them gets exactly zero gradient until the first
    # update, so a chain through one has no gain to measure at initialisation (GL701 said "gain 0")
    zeroed = {meas.param_owner.get(n, "") for n in meas.zero_weights()}
    chains = []
    for chain in measured_chains(meas):
        gain = meas.grad_ratio(chain[0], chain[-1])
        worst, pair = meas.worst_gain(chain) if hasattr(meas, "worst_gain") else (gain, None)
        if zeroed and any(((site := meas.site(c)) is not None and site.module in zeroed) or c in zeroed for c in chain):
            gain = worst = None
        chains.append(MeasuredChain(tuple(chain), gain, worst, pair or (chain[0], chain[-1]),
                                    predicted_vanishing=bool(predicted_sites["vanishing"] & set(chain)),
                                    predicted_exploding=bool(predicted_sites["exploding"] & set(chain))))

    def share(site: str, fraction: float, predicted: bool = False) -> UnitShare:
        s = meas.site(site)
        return UnitShare(site, ctx.locate(s.module if s else site), s.type_name if s else "?", fraction, predicted)

    # The layer in front of each saturating activation, to match the static findings' named layers.
    in_front: dict[str, str] = {}
    last = None
    for s in meas.sites:
        if s.kind in ("param", "conv", "norm"):
            last = s.name
        elif s.kind == "saturating" and last is not None:
            in_front[s.name] = last
    saturated = []
    for site, values in meas.saturated.items():
        vals = [v for v in values if v is not None]
        if not vals:
            continue
        s = meas.site(site)
        predicted = _under(s.module if s else site, saturation_roots) or in_front.get(site) in saturation_layers
        saturated.append(share(site, sum(vals) / len(vals), predicted))

    failures = tuple(GradcheckFailure(f.kind, f.name, f.type_name, f.autograd, f.numeric, f.detail, f.span)
                     for f in getattr(gradcheck, "failures", []) or [])
    return ProbeFacts(
        steps=meas.steps, chains=tuple(chains), first_loss=meas.loss[0] if meas.loss else None,
        nonfinite=meas.nonfinite, gradcheck_failures=failures, param_count=len(meas.param_owner),
        without_grad=tuple(getattr(meas, "without_grad", []) or []),
        param_owner=tuple(meas.param_owner.items()), loss_cut=bool(meas.loss_cut),
        cuts=tuple(tuple(c) for c in getattr(meas, "cuts", []) or []),
        dead=tuple(share(site, fraction) for site, fraction in meas.dead.items()), saturated=tuple(saturated))


def probe_findings(ctx: Context, meas: Any, gradcheck: Any, static: list[Verdict]) -> list[Verdict]:
    """The probe rules' findings on these measurements, each placed in the user's source."""
    facts = probe_facts(ctx, meas, gradcheck, static)
    out: list[Verdict] = []
    for code, rule in ctx.rules.items():
        if not getattr(rule, "probe_only", False) or not hasattr(rule, "measured"):
            continue
        options = ctx.options.get(code) or {k: o.default for k, o in rule.options.items()}
        for m in rule().measured(facts, options):
            finding = _finding(ctx, code, m.message, m.module, m.data, m.span)
            if m.info:
                finding = dataclasses.replace(finding, severity=Severity.INFO)
            out.append(Verdict(finding, FOUND, None, m.measured, sites=m.sites))
    return out


def _under(module: str, roots: set[str]) -> bool:
    return any(r == "" or module == r or module.startswith(r + ".") for r in roots)


def confirmed_or_found(verdicts: list[Verdict]) -> bool:
    """Whether the probe exits 1: a static finding confirmed, or a probe finding above info."""
    return any(v.verdict == CONFIRMED or (v.verdict == FOUND and v.finding.severity > Severity.INFO)
               for v in verdicts)
