"""Recall case nanowm_clip_in_training_step (bug): NanoWMTrainingModule clipped gradients inside its Lightning training_step."""
# https://github.com/simchowitzlabpublic/nano-world-model/pull/22 -- Lightning runs training_step before backward(), so the project-local clip_grad_norm_ saw no or stale gradients and the step was never clipped; the fix moves the clip into configure_gradient_clipping.
import torch
import torch.nn as nn
import torch.nn.functional as F
import pytorch_lightning as pl


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, clip_grad=True):
    """Copy from torch.nn.utils.clip_grad_norm_ (utils/nanowm_utils.py)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if len(grads) == 0:
        return torch.tensor(0.)
    total_norm = torch.norm(torch.stack([torch.norm(g.detach(), norm_type) for g in grads]), norm_type)
    if clip_grad:
        clip_coef_clamped = torch.clamp(float(max_norm) / (total_norm + 1e-6), max=1.0)
        for g in grads:
            g.detach().mul_(clip_coef_clamped)
    return total_norm


class NanoWMTrainingModule(pl.LightningModule):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.model = nn.Sequential(nn.Linear(args["dim"] + 1, 128), nn.SiLU(), nn.Linear(128, args["dim"]))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args["lr"], weight_decay=0.0)

    def configure_optimizers(self):
        return self.opt

    def training_step(self, batch, batch_idx):
        x = batch["video"]
        t = torch.rand(x.shape[0], 1)
        noise = torch.randn_like(x)
        x_t = (1 - t) * x + t * noise
        loss = F.mse_loss(self.model(torch.cat([x_t, t], dim=1)), noise - x)

        if self.global_step < self.args["gradient_clip_start_step"]:
            gradient_norm = clip_grad_norm_(self.model.parameters(), self.args["gradient_clip_norm"], clip_grad=False)
        else:
            gradient_norm = clip_grad_norm_(self.model.parameters(), self.args["gradient_clip_norm"], clip_grad=True)

        self.log("train_loss", loss, prog_bar=True)
        self.log("gradient_norm", gradient_norm)
        return loss


def fit(module, loader, max_steps):
    """What Lightning's automatic optimisation does for each batch (pl.Trainer.fit)."""
    opt = module.configure_optimizers()
    for batch_idx, batch in enumerate(loader):
        opt.zero_grad()
        loss = module.training_step(batch, batch_idx)
        loss.backward()
        module.configure_gradient_clipping(opt)
        opt.step()
        module.global_step += 1
        if module.global_step >= max_steps:
            break
