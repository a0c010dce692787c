"""Recall case milescredit_amp_clip (fixed): scaler.unscale_(optimizer) before clipping."""
# https://github.com/NCAR/miles-credit/pull/141 -- with the GradScaler on, clip_grad_norm_ saw gradients x loss scale (no unscale_).
import torch


class Trainer:
    def __init__(self, model, rank, module=False):
        self.model = model
        self.rank = rank
        self.module = module

    def train_one_epoch(self, epoch, conf, trainloader, optimizer, criterion, scaler, scheduler):
        grad_max_norm = conf["trainer"]["grad_max_norm"]
        amp = conf["trainer"]["amp"]
        self.model.train()
        for i, batch in enumerate(trainloader):
            x, y = batch["x"].to(self.rank), batch["y"].to(self.rank)
            with torch.autocast(device_type="cuda", enabled=amp):
                y_pred = self.model(x)
                loss = criterion(y, y_pred).mean()
            scaler.scale(loss).backward()
            if grad_max_norm > 0.0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), grad_max_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad()
            scheduler.step()


def fit(model, conf, trainloader):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.cuda.amp.GradScaler(enabled=conf["trainer"]["amp"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    Trainer(model, 0).train_one_epoch(0, conf, trainloader, optimizer, torch.nn.MSELoss(reduction="none"), scaler, scheduler)
