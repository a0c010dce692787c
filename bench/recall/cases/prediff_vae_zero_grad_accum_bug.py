"""Recall case prediff_vae_zero_grad_accum (bug): PreDiff's VAE training_step called zero_grad() before every micro-batch backward while stepping once per accumulate_grad_batches."""
# https://github.com/gaozhihan/PreDiff/issues/32 -- under manual optimization g_opt.zero_grad() / d_opt.zero_grad() ran outside the `(batch_idx + 1) % self.accumulate_grad_batches == 0` guard, erasing the gradients accumulated so far, so each step used the last micro-batch only; the maintainer fixed it in #33 (the fixed file clears inside the guard after the step, as the issue proposed).
import os

import numpy as np
import pytorch_lightning as pl
import torch
from einops import rearrange
from lightning.pytorch import Trainer
from omegaconf import OmegaConf

from prediff.taming import AutoencoderKL, LPIPSWithDiscriminator
from prediff.utils.optim import warmup_lambda


class VAESEVIRPLModule(pl.LightningModule):

    def __init__(self, total_num_steps: int, accumulate_grad_batches: int = 1, oc_file: str = None):
        super(VAESEVIRPLModule, self).__init__()
        self.automatic_optimization = False
        oc = OmegaConf.load(open(oc_file, "r"))
        self.oc = oc
        model_cfg = OmegaConf.to_object(oc.model)
        self.torch_nn_module = AutoencoderKL(**model_cfg["vae"])
        self.loss = LPIPSWithDiscriminator(**model_cfg["loss"])
        self.total_num_steps = total_num_steps
        self.accumulate_grad_batches = accumulate_grad_batches
        self.batch_axis = 0

    def configure_optimizers(self):
        lr = self.oc.optim.lr
        betas = self.oc.optim.betas
        opt_ae = torch.optim.Adam(list(self.torch_nn_module.encoder.parameters()) +
                                  list(self.torch_nn_module.decoder.parameters()) +
                                  list(self.torch_nn_module.quant_conv.parameters()) +
                                  list(self.torch_nn_module.post_quant_conv.parameters()),
                                  lr=lr, betas=betas)
        opt_disc = torch.optim.Adam(self.loss.discriminator.parameters(), lr=lr, betas=betas)
        warmup_iter = int(np.round(self.oc.optim.warmup_percentage * self.total_num_steps))
        lr_scheduler_ae = torch.optim.lr_scheduler.LambdaLR(opt_ae, lr_lambda=warmup_lambda(warmup_steps=warmup_iter, min_lr_ratio=0.0))
        lr_scheduler_disc = torch.optim.lr_scheduler.LambdaLR(opt_disc, lr_lambda=warmup_lambda(warmup_steps=warmup_iter, min_lr_ratio=0.0))
        return [
            {"optimizer": opt_ae, "lr_scheduler": {"scheduler": lr_scheduler_ae, "interval": "step", "frequency": 1}},
            {"optimizer": opt_disc, "lr_scheduler": {"scheduler": lr_scheduler_disc, "interval": "step", "frequency": 1}},
        ]

    def get_last_layer(self):
        return self.torch_nn_module.decoder.conv_out.weight

    def get_input(self, batch):
        target_bchw = rearrange(batch, "b 1 h w c -> b c h w").contiguous()
        mask = None
        return target_bchw, mask

    def forward(self, target_bchw, sample_posterior=True):
        pred_bchw, posterior = self.torch_nn_module(
            sample=target_bchw,
            sample_posterior=sample_posterior,
            return_posterior=True)
        return pred_bchw, posterior

    def training_step(self, batch, batch_idx):
        g_opt, d_opt = self.optimizers()
        g_sch, d_sch = self.lr_schedulers()

        target_bchw, _ = self.get_input(batch=batch)
        pred_bchw, posterior = self(target_bchw)

        # train encoder+decoder+logvar
        aeloss, log_dict_ae = self.loss(target_bchw, pred_bchw, posterior, optimizer_idx=0, global_step=self.global_step,
                                        mask=None, last_layer=self.get_last_layer(), split="train")
        self.log("aeloss", aeloss, prog_bar=True, logger=True, on_step=True, on_epoch=True, sync_dist=False)
        self.log_dict(log_dict_ae, prog_bar=False, logger=True, on_step=True, on_epoch=False, sync_dist=False)
        g_opt.zero_grad()
        self.manual_backward(aeloss)
        if (batch_idx + 1) % self.accumulate_grad_batches == 0:
            self.clip_gradients(g_opt, gradient_clip_val=self.oc.optim.gradient_clip_val, gradient_clip_algorithm="norm")
            g_opt.step()
            g_sch.step()

        # train the discriminator
        discloss, log_dict_disc = self.loss(target_bchw, pred_bchw, posterior, optimizer_idx=1, global_step=self.global_step,
                                            mask=None, last_layer=self.get_last_layer(), split="train")
        self.log("discloss", discloss, prog_bar=True, logger=True, on_step=True, on_epoch=True, sync_dist=False)
        self.log_dict(log_dict_disc, prog_bar=False, logger=True, on_step=True, on_epoch=False, sync_dist=False)

        d_opt.zero_grad()
        self.manual_backward(discloss)
        if (batch_idx + 1) % self.accumulate_grad_batches == 0:
            self.clip_gradients(d_opt, gradient_clip_val=self.oc.optim.gradient_clip_val, gradient_clip_algorithm="norm")
            d_opt.step()
            d_sch.step()


def main(cfg_path, dm, gpus=1):
    oc_from_file = OmegaConf.load(open(cfg_path, "r"))
    total_batch_size = oc_from_file.optim.total_batch_size
    micro_batch_size = oc_from_file.optim.micro_batch_size
    max_epochs = oc_from_file.optim.max_epochs
    accumulate_grad_batches = total_batch_size // (micro_batch_size * gpus)
    total_num_steps = int(max_epochs * dm.num_train_samples / total_batch_size)
    pl_module = VAESEVIRPLModule(total_num_steps=total_num_steps,
                                 accumulate_grad_batches=accumulate_grad_batches,
                                 oc_file=cfg_path)
    trainer = Trainer(max_epochs=max_epochs, accelerator="gpu", devices=gpus,
                      default_root_dir=os.path.join("experiments", "vae"))
    trainer.fit(model=pl_module, datamodule=dm)
