"""Recall case rae_zero_grad_microbatch (bug): RAE's train.py cleared gradients inside the micro-batch loop."""
# https://github.com/bytetriper/RAE/issues/67 -- optimizer.zero_grad() ran per micro-batch, wiping the earlier micro-batches' gradients before the step.
import torch


def train(model, loader, optimizer, num_steps, grad_accum_steps, device):
    data_iter = iter(loader)
    for step in range(num_steps):
        model.train()
        for micro_step in range(grad_accum_steps):
            optimizer.zero_grad(set_to_none=True)
            x, y = next(data_iter)
            x, y = x.to(device), y.to(device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                loss = model(x, y) / grad_accum_steps
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
