"""Recall case lingua_clip_accum (bug): lingua's train loop clipped at every accumulation step."""
# https://github.com/facebookresearch/lingua/pull/59 -- clip_grad_norm_ ran after each micro-batch backward, not once before optimizer.step().
import torch


def train(args, model, data_loader, optimizer, scheduler, train_state):
    while train_state.step < args.steps:
        batch = next(data_loader)
        input_ids, labels = batch["input_ids"], batch["labels"]
        loss = model(input_ids, labels)
        loss = loss / args.grad_acc_steps
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            model.parameters(), max_norm=args.optim.clip, foreach=True
        )
        train_state.acc_step += 1
        train_state.acc_step = train_state.acc_step % args.grad_acc_steps
        if train_state.acc_step == 0:
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            train_state.step += 1
    return grad_norm
