"""Recall case k2_tot_scores_backward (fixed): backward scales the posteriors by each FSA's output gradient."""
# https://github.com/k2-fsa/k2/issues/341 -- backward returned arc posteriors without multiplying by the output gradient, so training got the sign of updates wrong.
import torch


class _GetTotScoresFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fsas, log_semiring, arc_scores):
        arc_post = torch.log_softmax(arc_scores, dim=-1)
        tot_scores = torch.logsumexp(arc_scores, dim=-1)
        ctx.save_for_backward(arc_post)
        return tot_scores

    @staticmethod
    def backward(ctx, tot_scores_grad):
        (arc_post,) = ctx.saved_tensors
        return None, None, arc_post.exp() * tot_scores_grad.unsqueeze(-1)


def get_tot_scores(fsas, arc_scores, log_semiring=True):
    return _GetTotScoresFunction.apply(fsas, log_semiring, arc_scores)


def train_step(model, fsas, feats, optimizer):
    arc_scores = model(feats)
    tot_scores = get_tot_scores(fsas, arc_scores)
    loss = -tot_scores.sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
