"""GL106 on exported decoders and encoder-decoders counts the blocks the source reader counts for
the same model: nn.TransformerDecoder and nn.Transformer exported by torch's TorchScript and
dynamo exporters. A decoder reads its memory in every block's cross-attention; that fan-out is
not the residual stream the blocks are stacked on."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.model.propagation import analyse
from gradlint.onnx import extract_onnx

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")

MODELS_PY = '''\
import torch.nn as nn


class Decoder12(nn.Module):
    def __init__(self, depth=12, norm_first=False):
        super().__init__()
        layer = nn.TransformerDecoderLayer(32, 4, 64, dropout=0.0, norm_first=norm_first)
        self.decoder = nn.TransformerDecoder(layer, depth)

    def forward(self, tgt, memory):
        return self.decoder(tgt, memory)


class Decoder6(Decoder12):
    def __init__(self, depth=6, norm_first=False):
        super().__init__(depth, norm_first)


class PreLNDecoder12(Decoder12):
    def __init__(self, depth=12, norm_first=True):
        super().__init__(depth, norm_first)


class Transformer6x6(nn.Module):
    def __init__(self, encoder=6, decoder=6, norm_first=False):
        super().__init__()
        self.transformer = nn.Transformer(32, 4, encoder, decoder, 64, dropout=0.0, norm_first=norm_first)

    def forward(self, src, tgt):
        return self.transformer(src, tgt)


class Transformer3x3(Transformer6x6):
    def __init__(self, encoder=3, decoder=3, norm_first=False):
        super().__init__(encoder, decoder, norm_first)


class Transformer12x2(Transformer6x6):
    def __init__(self, encoder=12, decoder=2, norm_first=False):
        super().__init__(encoder, decoder, norm_first)


class PreLNTransformer6x6(Transformer6x6):
    def __init__(self, encoder=6, decoder=6, norm_first=True):
        super().__init__(encoder, decoder, norm_first)
'''

# Post-LN blocks each model stacks: what the source reader counts (asserted below too); an
# encoder-decoder's two stacks add up (model/blocks.block_count).
EXPECTED = {"Decoder12": 12, "Decoder6": 6, "PreLNDecoder12": 0,
            "Transformer6x6": 12, "Transformer3x3": 6, "Transformer12x2": 14, "PreLNTransformer6x6": 0}
EVERY_BLOCK = Config(select=("GL106",), rule_options=(("GL106", (("post-norm-depth", 1),)),))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, object]:
    folder = tmp_path_factory.mktemp("decoders")
    src = folder / "decoders.py"
    src.write_text(MODELS_PY)
    spec = importlib.util.spec_from_file_location("decoders_under_test", src)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["decoders_under_test"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    yield src, mod
    sys.modules.pop("decoders_under_test", None)


def _blocks(path: Path, config: Config = EVERY_BLOCK) -> dict[str, int]:
    result = check_paths([path], replace(config, root=str(path.parent)), use_cache=False, jobs=1)
    return {f.data_dict["network"]: f.data_dict["blocks"] for f in result.findings}


def _export(models, name: str, dynamo: bool) -> Path:
    src, mod = models
    inputs = (torch.randn(7, 2, 32), torch.randn(5, 2, 32))  # (tgt, memory) or (src, tgt)
    path = src.parent / f"{name}_{'dynamo' if dynamo else 'torchscript'}.onnx"
    with warnings.catch_warnings():
        # (nn.Transformer warns that its encoder cannot use nested tensors)
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = getattr(mod, name)().eval()
        if dynamo:
            pytest.importorskip("onnxscript")
            torch.onnx.export(model, inputs, str(path), dynamo=True, verbose=False)
        else:
            torch.onnx.export(model, inputs, str(path), dynamo=False, opset_version=17)
    return path


def test_the_source_reader_counts_what_the_cases_say(models):
    src, _ = models
    assert _blocks(src) == {k: v for k, v in EXPECTED.items() if v}


CASES = [(name, False) for name in EXPECTED] + [("Decoder12", True), ("Transformer6x6", True)]


@pytest.mark.parametrize("name,dynamo", CASES, ids=[f"{n}-{'dynamo' if d else 'torchscript'}" for n, d in CASES])
def test_an_export_counts_the_blocks_its_source_counts(models, name, dynamo):
    path = _export(models, name, dynamo)
    counted = _blocks(path)
    assert list(counted.values()) == ([EXPECTED[name]] if EXPECTED[name] else [])
    # with the default post-norm-depth (12): flagged exactly when 12 or more are stacked
    flagged = _blocks(path, Config(select=("GL106",)))
    assert list(flagged.values()) == ([EXPECTED[name]] if EXPECTED[name] >= 12 else [])
    # the chains GL101/GL102 judge stay inside the encoder or the decoder
    (net,) = extract_onnx(path, path.name).networks
    for chain in analyse(net).chains:
        stacks = {s.layer.name.split(".layers.")[0] for s in chain.steps}
        assert len(stacks) == 1, [s.layer.name for s in chain.steps]


def test_both_readers_state_an_encoder_decoders_stacks(models):
    # the ONNX lowering marks the target input after the encoder's path; the source reader marks
    # nn.Transformer's decoder alike: each finding states the two depths that add up
    src, _ = models
    path = _export(models, "Transformer12x2", False)
    for where in (src, path):
        result = check_paths([where], replace(Config(select=("GL106",)), root=str(where.parent)), use_cache=False, jobs=1)
        messages = [f.message for f in result.findings if f.data_dict["blocks"] == 14]
        assert len(messages) == 1 and "12 + 2 in an encoder and the decoder that reads it" in messages[0], where
