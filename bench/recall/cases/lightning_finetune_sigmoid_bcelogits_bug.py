"""Recall case lightning_finetune_sigmoid_bcelogits (bug): Lightning's fine-tuning example fed sigmoid outputs to binary_cross_entropy_with_logits."""
# https://github.com/Lightning-AI/pytorch-lightning/pull/7096 -- forward() ended in torch.sigmoid and the loss applied a second sigmoid.
import torch
import torch.nn.functional as F
from torch import nn
import pytorch_lightning as pl


class TransferLearningModel(pl.LightningModule):
    def __init__(self, lr=1e-3):
        super().__init__()
        self.lr = lr
        self.feature_extractor = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 1))
        self.loss_func = F.binary_cross_entropy_with_logits

    def forward(self, x):
        x = self.feature_extractor(x)
        x = x.squeeze(-1).squeeze(-1)
        x = self.fc(x)
        x = torch.sigmoid(x)
        return x

    def loss(self, logits, labels):
        return self.loss_func(input=logits, target=labels)

    def training_step(self, batch, batch_idx):
        x, y = batch
        y_logits = self.forward(x)
        y_true = y.view((-1, 1)).type_as(x)
        return self.loss(y_logits, y_true)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)
