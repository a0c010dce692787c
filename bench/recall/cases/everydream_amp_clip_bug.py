"""Recall case everydream_amp_clip (bug): EveryDream2trainer applied clip_grad_norm to AMP-scaled gradients."""
# https://github.com/victorchall/EveryDream2trainer/pull/175 -- --clip_grad_norm was applied to scaled gradients, so 1.0 effectively halted training.
import torch


class EveryDreamOptimizer:
    def __init__(self, unet, text_encoder, optimizers, grad_accum, epoch_len, clip_grad_norm=None):
        self.unet_params = list(unet.parameters())
        self.te_params = list(text_encoder.parameters())
        self.optimizers = optimizers
        self.grad_accum = grad_accum
        self.epoch_len = epoch_len
        self.clip_grad_norm = clip_grad_norm
        self.scaler = torch.cuda.amp.GradScaler(enabled=True, init_scale=2**17.5)

    def step(self, loss, step, global_step):
        self.scaler.scale(loss).backward()
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters=self.unet_params, max_norm=self.clip_grad_norm)
            torch.nn.utils.clip_grad_norm_(parameters=self.te_params, max_norm=self.clip_grad_norm)
        if ((global_step + 1) % self.grad_accum == 0) or (step == self.epoch_len - 1):
            for optimizer in self.optimizers:
                self.scaler.step(optimizer)
            self.scaler.update()
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)
