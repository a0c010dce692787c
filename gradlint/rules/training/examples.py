"""Example programs that more than one training rule shows: timm's NativeScaler and its loop."""

from __future__ import annotations

_SCALER = '''\
import torch
from timm.utils import dispatch_clip_grad


class NativeScaler:
    def __init__(self):
        self._scaler = torch.amp.GradScaler("cuda")

    def __call__(self, loss, optimizer, clip_grad=None, parameters=None, need_update=True):
        self._scaler.scale(loss).backward()
        if need_update:
            if clip_grad is not None:
{clip}
            self._scaler.step(optimizer)
            self._scaler.update()


model = torch.nn.LSTM(64, 64)
optimizer = torch.optim.AdamW(model.parameters())
loss_scaler = NativeScaler()
for i, (x, y) in enumerate(loader):
    need_update = (i + 1) % accum == 0
    loss_scaler(criterion(model(x)[0], y), optimizer,{clip_arg}
                parameters=model.parameters(), need_update=need_update)
    if need_update:
        optimizer.zero_grad()
'''
_UNSCALE = "                self._scaler.unscale_(optimizer)"
_CLIP = "                dispatch_clip_grad(parameters, clip_grad)"


def timm_scaler_loop(*, clip_before_unscale: bool = False, passes_clip: bool = True) -> str:
    """timm's NativeScaler (unscale_, then clip, inside __call__) and a loop that calls it; the
    clip is passed (`clip_grad=args.clip_grad`) unless `passes_clip` is false."""
    lines = (_CLIP, _UNSCALE) if clip_before_unscale else (_UNSCALE, _CLIP)
    return _SCALER.format(clip="\n".join(lines), clip_arg=" clip_grad=args.clip_grad," if passes_clip else "")
