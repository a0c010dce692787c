"""GL306 and GL307 on ONNX exports agree with the source rules on the same modules: the norm (or
the root of the sum of squares) of a learned layer's output is not flagged, a value that can be
all zero is. Measured in torch (the last test): `h / h.norm()` of `nn.Linear(8, 8)`'s output is
finite on an all-zero input (the bias keeps h off zero); after a ReLU that zeroes a row, or of
its difference with a target equal to it, the output or the gradients are NaN."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

from gradlint.api import check_paths
from gradlint.config import Config

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")

_ONE = """

class {name}(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, {args}):
        h = {h}
        return h / {norm}
"""
# the normed value of each module, as its forward writes it
_CASES = {
    "Projection": ("x", "self.proj(x)"),
    "RootOfSquares": ("x", "self.proj(x)"),
    "Reshaped": ("x", "self.proj(x).reshape(x.shape[0], 2, 4)"),
    "AfterReLU": ("x", "torch.relu(self.proj(x))"),
    "Difference": ("x, y", "self.proj(x) - y"),
    "PlusItsInput": ("x", "x + self.proj(x)"),
    "Rescaled": ("x", "self.proj(x) * 2.0"),
}
MODULES_PY = "import torch\nfrom torch import nn\n" + "".join(
    _ONE.format(name=name, args=args, h=h,
                norm="torch.sqrt((h ** 2).sum(-1, keepdim=True))" if name == "RootOfSquares"
                else "h.norm(dim=-1, keepdim=True)")
    for name, (args, h) in _CASES.items()) + '''

class TwoProjections(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)

    def forward(self, x):
        h = self.a(x) + self.b(x)
        return h / h.norm(dim=-1, keepdim=True)


class Embedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)

    def forward(self, x):
        h = self.emb(x)
        return h / h.norm(dim=-1, keepdim=True)


class Convolution(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(8, 8, 3, padding=1)

    def forward(self, x):
        h = self.conv(x)
        return h / h.norm(dim=1, keepdim=True)
'''

QUIET = ["Projection", "RootOfSquares", "Reshaped", "TwoProjections", "Embedding", "Convolution"]
FLAGGED = ["AfterReLU", "Difference", "PlusItsInput", "Rescaled"]
SELECT = Config(select=("GL306", "GL307"))


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learned_norms")
    src = folder / "norms.py"
    src.write_text(MODULES_PY)
    spec = importlib.util.spec_from_file_location("learned_norms_under_test", src)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["learned_norms_under_test"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    yield src, mod
    sys.modules.pop("learned_norms_under_test", None)


def _inputs(name: str):
    if name == "Embedding":
        return (torch.randint(0, 10, (4, 3)),)
    if name == "Convolution":
        return (torch.randn(2, 8, 5),)
    if name == "Difference":
        return (torch.randn(4, 8), torch.randn(4, 8))
    return (torch.randn(4, 8),)


def _codes(path: Path) -> list[str]:
    config = Config(select=SELECT.select, root=str(path.parent))
    return sorted(f.code for f in check_paths([path], config, use_cache=False, jobs=1).findings)


def _source_codes(src: Path) -> dict[str, list[str]]:
    config = Config(select=SELECT.select, root=str(src.parent))
    lines = src.read_text().splitlines()
    out: dict[str, list[str]] = {}
    for f in check_paths([src], config, use_cache=False, jobs=1).findings:
        # the class a finding's line belongs to: the last `class` line above it
        cls = next(ln for ln in reversed(lines[: f.span.line]) if ln.startswith("class "))
        out.setdefault(cls.split()[1].split("(")[0].rstrip(":"), []).append(f.code)
    return out


def test_the_source_rules_say_what_the_cases_say(modules):
    src, _ = modules
    assert _source_codes(src) == {name: ["GL307"] for name in FLAGGED}


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("name", QUIET + FLAGGED)
def test_an_export_is_flagged_as_its_source(modules, name, dynamo):
    src, mod = modules
    torch.manual_seed(0)
    path = src.parent / f"{name}_{'dynamo' if dynamo else 'torchscript'}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript")
            torch.onnx.export(getattr(mod, name)().eval(), _inputs(name), str(path), dynamo=True, verbose=False)
        else:
            torch.onnx.export(getattr(mod, name)().eval(), _inputs(name), str(path), dynamo=False, opset_version=17)
    assert _codes(path) == (["GL307"] if name in FLAGGED else [])


def test_the_gradients_say_what_the_rule_says(modules):
    """The measurement behind the lists: NaN where the normed vector is all zero, which a
    projection with its bias does not reach from a zero input, and a ReLU of it or its difference
    with a target does. (PlusItsInput and Rescaled are flagged as the source rule reads them: a
    learned output plus its own input is the input again when the layer starts at zero, a
    zero-initialised adapter; any rescaling is read as a value that may be zero.)"""
    _, mod = modules

    def nan_gradient(model, *args) -> bool:
        """A NaN output or gradient (ReLU's backward masks the NaN of a zeroed row: the output
        and the loss are NaN all the same)."""
        args = tuple(a.clone().requires_grad_(True) for a in args)
        out = model(*args)
        out.sum().backward()
        grads = [out, *(p.grad for p in model.parameters()), *(a.grad for a in args)]
        return any(not torch.isfinite(g).all() for g in grads if g is not None)

    def made(name: str):
        torch.manual_seed(0)
        return getattr(mod, name)()

    zeros = torch.zeros(4, 8)
    assert not nan_gradient(made("Projection"), zeros)  # the bias keeps the output off zero
    assert not nan_gradient(made("TwoProjections"), zeros)
    m = made("Difference")
    x = torch.randn(4, 8)
    assert nan_gradient(m, x, m.proj(x).detach())  # a target equal to the projection
    # inputs whose projection is -1 everywhere (the ReLU zeroes the row), and whose projection
    # cancels them (x + proj(x) = 0): solved from the layer's own weights
    m = made("AfterReLU")
    w, b = m.proj.weight.detach(), m.proj.bias.detach()
    assert nan_gradient(m, torch.linalg.solve(w, -1.0 - b).repeat(4, 1))
