"""Models exported the ways users export them (torch's TorchScript and dynamo exporters on CPU),
then optimised by onnxruntime (basic, extended and 'all' levels, saved with
SessionOptions.optimized_model_filepath) and converted to float16: the findings must survive every
variant, and folded BatchNorm must not read as a plain conv chain."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.model.ir import Activation, Norm, Opaque, Param, Residual, walk
from gradlint.onnx import extract_onnx
from gradlint.onnx.coverage import onnx_coverage

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn

LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}

MODEL_PY = '''\
import torch.nn as nn


class Deep(nn.Module):
    def __init__(self, depth=12, width=128):
        super().__init__()
        self.body = nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.Sigmoid())])
        self.head = nn.Linear(width, 2)

    def forward(self, x):
        h = self.body(x)
        return self.head(h)
'''


def export(model, args, path: Path, *, dynamo: bool = False) -> Path:
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript")
            torch.onnx.export(model, args, str(path), dynamo=True, verbose=False)
        else:
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17)
    return path


def optimise(src: Path, level: str) -> Path:
    dst = src.with_name(f"{src.stem}_{level}.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return dst


def fp16(src: Path) -> Path:
    import onnx

    float16 = pytest.importorskip("onnxruntime.transformers.float16")
    dst = src.with_name(f"{src.stem}_fp16.onnx")
    onnx.save(float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))
    return dst


def findings(path: Path, select: str = "GL"):
    result = check_paths([path], Config(select=(select,), root=str(path.parent)), use_cache=False, jobs=1)
    return result.findings


def vgg_bn(depth: int = 8):
    layers: list = []
    for i in range(depth):
        layers += [nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(8 * 8 * 8, 4))


def sigmoid_mlp(depth: int = 12, width: int = 128):
    return nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.Sigmoid())])


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return tmp_path_factory.mktemp("exports")


# -- 1. folded BatchNorm --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vgg_files(out: Path) -> dict[str, Path]:
    ts = export(vgg_bn(), (torch.randn(1, 3, 8, 8),), out / "vgg.onnx")
    dyn = export(vgg_bn(), (torch.randn(1, 3, 8, 8),), out / "vgg_dyn.onnx", dynamo=True)
    files = {"torchscript": ts, "dynamo": dyn}
    files.update({level: optimise(ts, level) for level in LEVELS})
    files["fp16"] = fp16(ts)
    return files


@pytest.mark.parametrize("variant", ["torchscript", "dynamo", "basic", "extended", "all", "fp16"])
def test_bn_cnn_exported_for_inference_gives_no_gl101(vgg_files, variant):
    # In train() the same model measures a first/last gradient ratio near 1 (BN resets the scale);
    # the folded conv chain alone would be predicted ~1e-3.
    path = vgg_files[variant]
    assert [f.code for f in findings(path, "GL1")] == []
    (net,) = extract_onnx(path, path.name).networks
    convs = [n for n in walk(net.nodes) if isinstance(n, Param) and n.op == "conv2d"]
    norms = [n for n in walk(net.nodes) if isinstance(n, Norm)]
    (cov,) = onnx_coverage(path)
    if variant == "all":
        # onnxruntime's NCHWc convs pad their weights: refused, with the reason.
        assert any(isinstance(n, Opaque) and "NCHWc" in n.what for n in net.nodes)
        assert "NCHWc" in cov.opaque[0][0] and cov.opaque[0][1] == 8
    else:
        assert len(convs) == 8 and len(norms) == 8
        assert cov.folded_norms == 8 and cov.understood == cov.on_path


def test_dynamo_names_the_folded_batchnorm(vgg_files):
    (net,) = extract_onnx(vgg_files["dynamo"], "vgg.onnx").networks
    assert [n.name for n in net.nodes if isinstance(n, Norm)][:2] == ["1", "4"]


def test_anonymous_conv_weights_make_gl101_info_with_a_note(out: Path):
    """Weights renamed (no exporter's names, no metadata): folding cannot be told."""
    import onnx

    model = onnx.load(str(export(vgg_bn(), (torch.randn(1, 3, 8, 8),), out / "vgg_anon_src.onnx")))
    renames = {t.name: f"w{i}" for i, t in enumerate(model.graph.initializer)}
    for t in model.graph.initializer:
        t.name = renames[t.name]
    for node in model.graph.node:
        node.input[:] = [renames.get(x, x) for x in node.input]
        node.name = ""
    path = out / "vgg_anon.onnx"
    onnx.save(model, str(path))
    found = [f for f in findings(path, "GL1") if f.code == "GL101"]
    assert found and all(f.severity.name == "INFO" for f in found)
    assert all("BatchNorm folded" in f.message for f in found)


def test_plain_conv_chain_with_named_weights_stays_a_warning(out: Path):
    layers: list = []
    for i in range(10):
        layers += [nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1), nn.Sigmoid()]
    path = export(nn.Sequential(*layers), (torch.randn(1, 3, 8, 8),), out / "convs.onnx")
    (f,) = [f for f in findings(path, "GL1") if f.code == "GL101"]
    assert f.severity.name == "WARNING" and "folded" not in f.message


# -- 2. onnxruntime's fused ops, every level; 3. float16 (unsorted) -------------------------------

@pytest.fixture(scope="module")
def mlp_files(out: Path) -> dict[str, Path]:
    ts = export(sigmoid_mlp(), (torch.randn(4, 128),), out / "mlp.onnx")
    dyn = export(sigmoid_mlp(), (torch.randn(4, 128),), out / "mlp_dyn.onnx", dynamo=True)
    files = {"torchscript": ts, "dynamo": dyn}
    files.update({level: optimise(ts, level) for level in LEVELS})
    files["fp16"] = fp16(ts)
    return files


def _gl101(path: Path) -> float:
    (f,) = [f for f in findings(path, "GL101")]
    assert f.severity.name == "WARNING"
    return f.data_dict["predicted"]


@pytest.mark.parametrize("variant", ["dynamo", "basic", "extended", "all", "fp16"])
def test_deep_sigmoid_mlp_keeps_gl101_in_every_variant(mlp_files, variant):
    reference = _gl101(mlp_files["torchscript"])
    assert reference < 1e-6
    if variant == "dynamo":
        # a second model: other random weights, same architecture
        assert abs(_gl101(mlp_files[variant]) / reference - 1) < 0.5
    else:
        assert abs(_gl101(mlp_files[variant]) / reference - 1) < 0.10


def test_source_and_export_agree_within_ten_percent(out: Path):
    spec_path = out / "deep_model.py"
    spec_path.write_text(MODEL_PY)
    spec = importlib.util.spec_from_file_location("deep_model", spec_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    model = mod.Deep()
    onnx_gain = _gl101(optimise(export(model, (torch.randn(4, 128),), out / "deep.onnx"), "extended"))
    (src,) = [f for f in findings(spec_path, "GL101")]
    assert abs(src.data_dict["predicted"] / onnx_gain - 1) < 0.10


def test_fused_gemm_carries_its_activation(mlp_files):
    (net,) = extract_onnx(mlp_files["extended"], "m.onnx").networks
    assert {n.op_type for n in (p.origin for p in net.nodes if isinstance(p, Param))} == {"FusedGemm"}
    assert sum(isinstance(n, Activation) and n.fn == "sigmoid" for n in net.nodes) == 12


@pytest.fixture(scope="module")
def encoder_files(out: Path) -> dict[str, Path]:
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0)
    model = nn.TransformerEncoder(layer, 12, enable_nested_tensor=False)
    ts = export(model, (torch.randn(5, 2, 32),), out / "encoder.onnx")
    files = {"torchscript": ts}
    files.update({level: optimise(ts, level) for level in ("extended", "all")})
    files["fp16"] = fp16(ts)
    return files


@pytest.mark.parametrize("variant", ["torchscript", "extended", "all", "fp16"])
def test_post_ln_encoder_keeps_gl106_after_fusion(encoder_files, variant):
    import onnx

    (f,) = findings(encoder_files[variant], "GL106")
    assert f.data_dict["blocks"] == 12
    if variant in ("extended", "all"):
        ops = {n.op_type for n in onnx.load(str(encoder_files[variant])).graph.node}
        assert "SkipLayerNormalization" in ops  # the fusion did happen


# -- 5. dynamo: module paths and source lines ------------------------------------------------------

def test_dynamo_findings_name_module_paths_and_source_lines(out: Path):
    src = out / "deep3d.py"
    src.write_text(MODEL_PY.replace("depth=12, width=128", "depth=8, width=16"))
    spec = importlib.util.spec_from_file_location("deep3d", src)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["deep3d"] = mod
    try:
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        path = export(mod.Deep(), (torch.randn(2, 5, 16),), out / "deep3d.onnx", dynamo=True)
    finally:
        sys.modules.pop("deep3d", None)
    (f,) = findings(path, "GL101")
    assert f.data_dict["modules"][:2] == ("body.0", "body.2")
    assert f.node is not None and f.node.source.endswith("deep3d.py:11")  # `h = self.body(x)`
    from gradlint.report.text import finding_line

    assert finding_line(f).endswith("deep3d.py:11)")
    assert f.node.name == "/body.0/node_MatMul_1"  # the module path, as TorchScript names nodes
    (net,) = extract_onnx(path, "deep3d.onnx").networks
    assert [p.name for p in net.params][-1] == "head"
    assert all(not n.name.startswith("node_") for n in net.nodes if isinstance(n, (Param, Activation)))


def test_residual_names_survive_fusion(encoder_files):
    (net,) = extract_onnx(encoder_files["extended"], "e.onnx").networks
    norms = [n.name for n in net.nodes if isinstance(n, Norm)]
    assert norms[:2] == ["layers.0.norm1", "layers.0.norm2"]
    assert sum(isinstance(n, Residual) for n in net.nodes) == 24


PROBE_PY = '''\
import torch
import torch.nn as nn


class SigmoidMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*[m for _ in range(10) for m in (nn.Linear(32, 32), nn.Sigmoid())])

    def forward(self, x):
        return self.body(x)


def make_model():
    return SigmoidMLP()


def example_inputs():
    return torch.randn(64, 32)
'''


def test_probe_joins_a_dynamo_export_with_3d_inputs(out: Path):
    """Linear on 3-D inputs is a MatMul on an anonymous transposed weight in a dynamo export: the
    finding still names `body.0` ... so the probe measures the same modules."""
    from gradlint.probe.join import CONFIRMED
    from gradlint.probe.run import ProbeOptions, run_probe
    from gradlint.probe.target import import_file

    target = out / "small_sigmoid_mlp.py"
    target.write_text(PROBE_PY)
    model = import_file(target).make_model()
    path = export(model, (torch.randn(2, 3, 32),), out / "sigmoid_mlp_dyn.onnx", dynamo=True)
    report = run_probe(ProbeOptions(target=f"{target}:make_model", device="cpu", steps=1, onnx=(str(path),)))
    [from_onnx] = [v for v in report.verdicts if v.finding.path.endswith(".onnx")]
    assert from_onnx.finding.code == "GL101" and from_onnx.verdict == CONFIRMED
    assert from_onnx.finding.data_dict["modules"][0] == "body.0"


HEAD_PY = '''\
import torch
import torch.nn as nn


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return torch.log(torch.softmax(self.fc(x), dim=-1))
'''


def test_dynamo_hazard_findings_point_at_the_source_line(out: Path):
    src = out / "head_model.py"
    src.write_text(HEAD_PY)
    spec = importlib.util.spec_from_file_location("head_model", src)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["head_model"] = mod
    try:
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        path = export(mod.Head(), (torch.randn(2, 8),), out / "head.onnx", dynamo=True)
    finally:
        sys.modules.pop("head_model", None)
    (f,) = findings(path, "GL302")
    assert f.node is not None and f.node.op_type == "Log" and f.node.source.endswith("head_model.py:11")
