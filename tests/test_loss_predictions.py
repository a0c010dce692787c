"""Which parameters of a loss class's forward hold the prediction (gradlint.facts.losses)."""

from __future__ import annotations

import pytest

from gradlint.facts.losses import predictions


@pytest.mark.parametrize("params,expected", [
    (("input", "target"), {"input"}),
    (("target", "estimate"), {"estimate"}),  # ESPnet's order
    (("est_targets", "targets"), {"est_targets"}),  # pytorch_stoi: made by the model, whatever else
    (("source_feats", "target_feats"), {"source_feats"}),  # a target domain reads as ground truth
    (("y", "y_hat"), {"y_hat"}),
    (("y_pred", "y_true"), {"y_pred"}),
    (("attention_mask", "outputs_before_postnet", "labels"), {"outputs_before_postnet"}),
    (("prompt_masks", "pred_masks", "labels"), {"pred_masks"}),
    (("outputs_after_postnet", "outputs_before_postnet", "duration_outputs", "spectrogram_labels"),
     {"outputs_after_postnet", "outputs_before_postnet", "duration_outputs"}),
    (("gt", "labels"), set()),
    ((), set()),
])
def test_the_prediction_is_the_first_non_target_or_named_as_made(params, expected):
    assert predictions(params) == expected
