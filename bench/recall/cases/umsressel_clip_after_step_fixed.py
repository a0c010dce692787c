"""Recall case umsressel_clip_after_step (fixed): clip_grad_norm_ runs before optimizer.step()."""
# https://github.com/taesunwhang/UMS-ResSel/issues/3 -- in domain post-training the gradients were clipped only after the optimizer had already applied them, so max_gradient_norm never took effect; the maintainer moved the clip before optimizer.step() (commit 825214d).
import logging
from datetime import datetime

import torch
from torch import nn, optim


class BertDPT(nn.Module):
    """Stand-in for post_train.pretrained_dpt.BertDPT: returns the (electra, mlm, nsp) loss tuple."""

    def __init__(self, hparams):
        super(BertDPT, self).__init__()
        self.hparams = hparams
        self.encoder = nn.Embedding(hparams.vocab_size, hparams.hidden_size)
        self.mlm_head = nn.Linear(hparams.hidden_size, hparams.vocab_size)
        self.nsp_head = nn.Linear(hparams.hidden_size, 2)
        self.criterion = nn.CrossEntropyLoss(ignore_index=-1)

    def forward(self, batch):
        hidden = self.encoder(batch["input_ids"])
        mlm_logits = self.mlm_head(hidden)
        nsp_logits = self.nsp_head(hidden[:, 0])
        mlm_loss = self.criterion(mlm_logits.view(-1, mlm_logits.size(-1)), batch["masked_lm_labels"].view(-1))
        nsp_loss = self.criterion(nsp_logits, batch["next_sentence_labels"].view(-1))
        return None, mlm_loss, nsp_loss


class PostTraining(object):
    def __init__(self, hparams):
        self.hparams = hparams
        self._logger = logging.getLogger(__name__)

    def _build_model(self):
        self.model = BertDPT(self.hparams)
        self.model = self.model.to(self.device)

        # Use Multi-GPUs
        if -1 not in self.hparams.gpu_ids and len(self.hparams.gpu_ids) > 1:
            self.model = nn.DataParallel(self.model, self.hparams.gpu_ids)

        self.optimizer = optim.Adam(self.model.parameters(), lr=self.hparams.learning_rate)
        self.iterations = len(self.train_dataset) // self.hparams.virtual_batch_size

    def train(self, train_dataset, train_dataloader):
        self.device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        self.train_dataset = train_dataset
        self.train_dataloader = train_dataloader
        self._build_model()
        self.start_epoch = 1

        train_begin = datetime.utcnow()  # New
        global_iteration_step = 0
        accu_electra_loss, accu_mlm_loss, accu_nsp_loss = 0, 0, 0
        accumulate_batch, accu_count = 0, 0

        for epoch in range(self.start_epoch, self.hparams.num_epochs):
            self.model.train()

            for batch_idx, batch in enumerate(self.train_dataloader):
                buffer_batch = batch.copy()
                for key in batch:
                    buffer_batch[key] = buffer_batch[key].to(self.device)

                losses = self.model(buffer_batch)
                electra_loss, mlm_loss, nsp_loss = losses

                if electra_loss is not None:
                    electra_loss = electra_loss.mean()
                    accu_electra_loss += electra_loss.item()

                if mlm_loss is not None:
                    mlm_loss = mlm_loss.mean()
                    accu_mlm_loss += mlm_loss.item()

                if nsp_loss is not None:
                    nsp_loss = nsp_loss.mean()
                    accu_nsp_loss += nsp_loss.item()

                loss = None
                for task_tensor_loss in [electra_loss, mlm_loss, nsp_loss]:
                    if task_tensor_loss is not None:
                        loss = loss + task_tensor_loss if loss is not None else task_tensor_loss

                loss.backward()
                accu_count += 1

                # TODO: virtual batch implementation
                accumulate_batch += buffer_batch["input_ids"].shape[0]
                if self.hparams.virtual_batch_size == accumulate_batch \
                        or batch_idx == (len(self.train_dataset) // self.hparams.train_batch_size):  # last batch

                    nn.utils.clip_grad_norm_(self.model.parameters(), self.hparams.max_gradient_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()

                    global_iteration_step += 1
                    description = "[{}][Epoch: {:3d}][Iter: {:6d}][MLM_Loss: {:6f}][NSP_Loss: {:6f}][lr: {:7f}]".format(
                        datetime.utcnow() - train_begin,
                        epoch,
                        global_iteration_step,
                        (accu_mlm_loss / accu_count), (accu_nsp_loss / accu_count),
                        self.optimizer.param_groups[0]['lr'])
                    self._logger.info(description)

                    accumulate_batch, accu_count = 0, 0
                    accu_electra_loss, accu_mlm_loss, accu_nsp_loss = 0, 0, 0
