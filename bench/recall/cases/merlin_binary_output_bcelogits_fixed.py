"""Recall case merlin_binary_output_bcelogits (fixed): the default loss of BinaryOutput (which ends in Sigmoid) is nn.BCELoss."""
# https://github.com/NVIDIA-Merlin/models/pull/1175 -- BinaryOutput(LazyLinear(1), Sigmoid()) produced probabilities and DEFAULT_LOSS_CLS = nn.BCEWithLogitsLoss applied a second sigmoid in the loss the Lightning training_step computes; the fix makes the default loss nn.BCELoss.
from typing import Dict, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import AUROC, Accuracy, Metric, Precision, Recall


class ModelOutput(nn.Sequential):
    """Base class for prediction heads: a sequence of modules plus the loss and metrics to train them."""

    def __init__(self, *module: nn.Module, loss: Optional[nn.Module] = None, metrics: Sequence[Metric] = (),
                 logits_temperature: float = 1.0):
        super().__init__(*module)
        self.loss = loss
        self.metrics = metrics
        self.logits_temperature = logits_temperature


class BinaryOutput(ModelOutput):
    """A prediction block for binary classification."""

    DEFAULT_LOSS_CLS = nn.BCELoss
    DEFAULT_METRICS_CLS = (Accuracy, AUROC, Precision, Recall)

    def __init__(self, loss: Optional[nn.Module] = None, metrics: Sequence[Metric] = ()):
        super().__init__(
            nn.LazyLinear(1),
            nn.Sigmoid(),
            loss=loss or self.DEFAULT_LOSS_CLS(),
            metrics=metrics or [m(task="binary") for m in self.DEFAULT_METRICS_CLS],
        )


class MLPBlock(nn.Sequential):
    def __init__(self, units: Sequence[int], activation=nn.ReLU):
        layers = []
        for dim in units:
            layers.append(nn.LazyLinear(dim))
            layers.append(activation())
        super().__init__(*layers)


def _fix_shape_and_dtype(output, target):
    if len(output.shape) == len(target.shape) + 1 and output.shape[-1] == 1:
        output = output.squeeze(-1)
    return output, target.type_as(output)


def compute_loss(predictions: Union[torch.Tensor, Dict[str, torch.Tensor]],
                 targets: Union[torch.Tensor, Dict[str, torch.Tensor]],
                 model_outputs: Sequence[ModelOutput]) -> torch.Tensor:
    """Sum the loss of every model output (merlin/models/torch/models/base.py)."""
    results = torch.tensor(0.0)
    for model_out in model_outputs:
        _predictions = predictions
        _targets = targets
        if isinstance(predictions, dict):
            _predictions = predictions[model_out.target]
        if isinstance(targets, dict):
            _targets = targets[model_out.target]
        _predictions, _targets = _fix_shape_and_dtype(_predictions, _targets)
        results = results + model_out.loss(_predictions, _targets)
    return results


class Model(pl.LightningModule):
    """A Merlin model: a body of blocks followed by one or more ModelOutputs, trained with Lightning."""

    def __init__(self, *blocks: nn.Module, optimizer=torch.optim.Adam):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.optimizer = optimizer

    def forward(self, inputs):
        outputs = inputs
        for block in self.blocks:
            outputs = block(outputs)
        return outputs

    def model_outputs(self):
        return [m for m in self.blocks if isinstance(m, ModelOutput)]

    def training_step(self, batch, batch_idx):
        features, targets = batch
        predictions = self(features)
        loss = compute_loss(predictions, targets, self.model_outputs())
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return self.optimizer(self.parameters())


def train(train_loader, max_epochs=3):
    model = Model(MLPBlock([32, 16]), BinaryOutput())
    trainer = pl.Trainer(max_epochs=max_epochs)
    trainer.fit(model, train_loader)
    return model
