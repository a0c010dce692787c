"""Code whose tensors never carry a training gradient, judged by its name or its path: evaluation,
metric, sampling and initialisation functions, data and preprocessing classes, data pipelines.
The numerics walk keeps such code quiet (its sites are not hazards of training).
"""

from __future__ import annotations

import re

from gradlint.source.numerics_sites import _tokens

# Functions whose output is never part of a training graph (their whole body is quiet).
_QUIET_TOKENS = frozenset(
    "eval evaluate evaluation validate validation val valid test predict prediction inference infer "
    "metric metrics accuracy benchmark sample sampling generate visualize visualise plot "
    "init quantize dequantize quant pack unpack convert".split())
_QUIET_NAMES = frozenset({"__init__", "reset_parameters", "init_weights", "_init_weights", "__getitem__",
                          "extra_repr", "__repr__"})
# Class-name words of data, metric and preprocessing classes (whole words: a Transformer is
# not a Transform).
_QUIET_CLASS_WORDS = frozenset(
    "metric metrics dataset datasets transform transforms augment augmentation augmenter sampler collator "
    "processor processing extractor tokenizer warper".split())


def _quiet_class(name: str) -> bool:
    return bool({t.lower() for t in _tokens(name)} & _QUIET_CLASS_WORDS)


def quiet_function(name: str) -> bool:
    if name in _QUIET_NAMES:
        return True
    return bool({t.lower() for t in _tokens(name)} & _QUIET_TOKENS)


_DATA_PATH = re.compile(r"(^|/)(transforms?|datasets?|data|dataloaders?|preprocessing|augment\w*)(/|\.py$)|"
                        r"(^|/)\w*(transforms?|dataset|augment\w*|collate|processing_\w+|image_processing\w*|"
                        r"feature_extraction\w*|tokenization\w*)\.py$")


def _data_pipeline(path: str) -> bool:
    """Data loading and preprocessing code (datasets, transforms, processors): no gradient flows there.
    An optimizer's own file is quiet too (its maths runs under no_grad)."""
    return bool(_DATA_PATH.search(path.replace("\\", "/")))
