"""What the architecture rules share: per-file analyses (computed once), locations, chain wording."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, GraphNode, Severity, SourceSpan
from gradlint.model.inline import finder, inline, restated_class
from gradlint.model.ir import Network, Origin, Param
from gradlint.model.propagation import Analysis, Chain, analyse
from gradlint.registry import RuleContext

RELU_FAMILY = frozenset({"relu", "leaky_relu", "relu6", "prelu", "elu", "celu", "selu"})
SQUASHING = frozenset({"tanh", "sigmoid", "hardtanh", "softsign"})

ACTIVATION_NAMES = {
    "relu": "ReLU", "leaky_relu": "LeakyReLU", "relu6": "ReLU6", "prelu": "PReLU", "elu": "ELU", "celu": "CELU",
    "selu": "SELU", "gelu": "GELU", "silu": "SiLU", "mish": "Mish", "tanh": "Tanh", "sigmoid": "Sigmoid",
    "hardtanh": "Hardtanh", "softsign": "Softsign", "softplus": "Softplus", "hardsigmoid": "Hardsigmoid",
    "hardswish": "Hardswish", "identity": "no activation", "logsigmoid": "LogSigmoid", "tanhshrink": "Tanhshrink",
    "softmax": "Softmax",
}


def networks(ctx: RuleContext) -> list[Network]:
    """The file's networks with the blocks of other project files inlined; once per file. A
    network that only restates a project class of another file as that file models it (a script's
    `GPT(GPTConfig())` with the config's defaults) is left out: its findings are that file's, made
    there by the same rules, and a copy here would report one problem twice (as the networks of
    one file that share layers get one finding: flagged_chains)."""
    found = ctx.facts.__dict__.get("_inlined")
    if found is None:
        find = finder(ctx.index)
        found = [inline(n, find) for n in ctx.facts.networks if restated_class(n, ctx.index) is None]
        ctx.facts.__dict__["_inlined"] = found
    return found


def analyses(ctx: RuleContext) -> list[tuple[Network, Analysis]]:
    """Every network of the file with its analysis; computed once per file for all rules."""
    cache = ctx.facts.__dict__.setdefault("_analyses", None)
    if cache is None:
        cache = []
        for network in networks(ctx):
            try:
                cache.append((network, analyse(network)))
            except (ValueError, ArithmeticError, KeyError):
                # A network the maths cannot handle is skipped, never guessed about.
                continue
        ctx.facts.__dict__["_analyses"] = cache
    return cache


def location(origin: Origin) -> tuple[SourceSpan | None, GraphNode | None]:
    if isinstance(origin, GraphNode):
        return None, origin
    if isinstance(origin, SourceSpan):
        return origin, None
    return None, None


def flagged_chains(ctx: RuleContext, flagged, worse) -> Iterator[tuple[Network, Chain, tuple[str, ...]]]:
    """The chains `flagged` selects, one per place of their first layer: networks built the same
    way share it (a file's factories of one class, `vgg11()` ... `vgg19()`, whose layers all come
    from one line of `make_layers`; a block class lowered on its own and inlined in its parent),
    and one finding there is enough. The worst chain (`worse(a, b)`: a is worse than b) speaks for
    the place, with the names of the other networks; between chains as bad, the network whose
    name sorts first, so that the finding is the same whatever order the classes are written in."""
    groups: dict = {}
    for network, analysis in analyses(ctx):
        for chain in analysis.chains:
            if not flagged(chain):
                continue
            where = chain.first.origin
            # a chain with no place of its own is one finding per distinct chain
            key = where if where is not None else tuple((s.layer.origin, s.layer.init) for s in chain.steps)
            group = groups.get(key)
            if group is None:
                groups[key] = [network, chain, {network.name}]
                continue
            group[2].add(network.name)
            if worse(chain, group[1]) or (not worse(group[1], chain) and network.name < group[0].name):
                group[0], group[1] = network, chain
    for network, chain, names in groups.values():
        yield network, chain, tuple(sorted(n for n in names if n != network.name))


def also_in(others: tuple[str, ...]) -> str:
    """` (and in 3 more networks: vgg11, vgg13, vgg16)` after a network's name; empty for none."""
    if not others:
        return ""
    shown = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
    return f" (and in {len(others)} more network{'s' if len(others) > 1 else ''}: {shown})"


def networks_text(names: list[str]) -> str:
    """`small`, `small and large`, `a, b and 3 more networks`."""
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]}, {names[1]} and {len(names) - 2} more networks"


def describe_init(layer: Param) -> str:
    init = layer.init
    if init.scheme == "torch-linear":
        return "PyTorch default init"
    if init.scheme == "torch-embedding":
        return "PyTorch default init (N(0, 1))"
    if init.scheme == "unknown":
        # (an ONNX weight gradlint did not read: refused external data, an op it cannot follow)
        return "weights not read"
    if init.scheme == "measured":
        var = init.get("variance")
        return f"weights with std {float(var) ** 0.5:.3g}" if isinstance(var, (int, float)) else "measured weights"
    args = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v:g}" for k, v in init.params
                     if not (k == "mean" and v == 0.0))
    return f"{init.scheme}_({args})"


def chain_cause(chain: Chain) -> str:
    acts: list[str] = []
    for step in chain.steps[:-1]:
        names = [ACTIVATION_NAMES.get(a.fn, a.fn) for a in step.activations] or ["no activation"]
        names += [f"{'AlphaDropout' if kind == 'alpha' else 'Dropout'}({p:g})" for kind, p in step.dropouts]
        label = "+".join(names)
        if label not in acts:
            acts.append(label)
    inits: list[str] = []
    measured: list[float] = []
    for step in chain.steps:
        var = step.layer.init.get("variance") if step.layer.init.scheme == "measured" else None
        if isinstance(var, (int, float)):
            # An ONNX model's layers each have their own std: a range, not one entry per layer
            # (a 30-layer export once made a 600-character message).
            measured.append(float(var) ** 0.5)
            continue
        d = describe_init(step.layer)
        if d not in inits:
            inits.append(d)
    if len(measured) == 1:
        inits.insert(0, f"weights with std {measured[0]:.3g}")
    elif measured:
        inits.insert(0, f"weights with std {min(measured):.3g} to {max(measured):.3g}")
    acts, inits = _summarise(acts), _summarise(inits)
    factors = [s.factor for s in chain.steps[1:] if s.factor is not None]
    per = ""
    if factors:
        geo = 1.0
        for f in factors:
            geo *= f
        geo **= 1 / len(factors)
        per = f": χ {'≤' if chain.bound else '≈'} {geo:.2g} per layer"
        if any(step.dropouts for step in chain.steps):
            per += " in train mode, dropout's scaling included"
    return f"{', '.join(acts)}, {'; '.join(inits)}{per}"


def _summarise(items: list[str], keep: int = 3) -> list[str]:
    """At most `keep` + 1 entries: the first ones, a count of the rest, and the last."""
    if len(items) <= keep + 1:
        return items
    return items[: keep - 1] + [f"{len(items) - keep} more"] + items[-1:]


def maybe_folded(ctx: RuleContext, chain: Chain) -> bool:
    """True when an ONNX chain runs through convs into which the export may have folded a
    BatchNorm (the graph cannot tell): in training the chain may be normalised."""
    return any(layer_maybe_folded(ctx, s.layer) for s in chain.steps)


def layer_maybe_folded(ctx: RuleContext, layer: Param) -> bool:
    names = getattr(ctx.facts.graph, "maybe_folded", None) if ctx.facts.graph is not None else None
    return bool(names) and isinstance(layer.origin, GraphNode) and layer.origin.name in names


FOLDED_NOTE = ("; the convs' weights may have a BatchNorm folded in at export (which a trained model "
               "would normalise away): export with `training=torch.onnx.TrainingMode.TRAINING` to check")



def gain_findings(ctx: RuleContext, threshold: float, flagged, worse, consequence: str) -> Iterator[Finding]:
    """GL101's and GL102's findings: one per place of the chains `flagged` selects (flagged_chains),
    each with its predicted gain, depth and cause, the networks it is in, and `consequence` (each
    rule's own words); info, with a note, where a BatchNorm may have been folded into the convs."""
    for network, chain, others in flagged_chains(ctx, flagged, worse):
        span, node = location(chain.first.origin)
        folded = maybe_folded(ctx, chain)
        extra = {"maybe_folded": True} if folded else {}
        yield ctx.finding(
            f"predicted gradient gain {'at most ' if chain.bound else ''}{fmt(chain.gain)} across {chain.depth} layers "
            f"({chain_cause(chain)}) in {network.name}{also_in(others)}: {consequence}"
            + (FOLDED_NOTE if folded else ""),
            span, node=node, data=chain_data(network, chain, threshold=threshold, **extra),
            severity=Severity.INFO if folded else None,
        )

def chain_data(network: Network, chain: Chain, **extra) -> dict:
    data = {"network": network.name, "modules": tuple(s.layer.name for s in chain.steps),
            "predicted": chain.gain, "depth": len(chain.steps)}
    data.update(extra)
    return data


def fmt(x: float) -> str:
    """4.1e-10, 0.35, 6.4e3: two significant digits, exponents without padding."""
    if x == 0 or 1e-2 <= abs(x) < 1e3:
        return f"{x:.2g}"
    mantissa, exp = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exp)}"
