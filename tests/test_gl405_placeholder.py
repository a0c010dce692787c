"""GL405 on Functions whose forward returns only a placeholder (an extra graph edge whose gradient
carries nothing: fairscale's pipeline phonies, torchrec's async collectives), and on backwards
that return a list built only of None."""

from __future__ import annotations

import pytest

from tests.conftest import codes_for

HEAD = "import torch\nfrom torch.autograd import Function\n\n"


def gl405(source: str) -> list[str]:
    return codes_for(HEAD + source, select="GL405")


# -- must not flag -----------------------------------------------------------------------------

PLACEHOLDERS = {
    "constant tensor": '''
class WithoutActivations(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *x):
        return torch.tensor(1.0)

    @staticmethod
    def backward(ctx, grad):
        return ctx.grad_from_pipeline
''',
    "empty tensor of an input": '''
class SplitOp(Function):
    @staticmethod
    def forward(ctx, x, dummy):
        ctx.save_for_backward(x)
        empty = x.new_empty(0)
        return empty

    @staticmethod
    def backward(ctx, grad_empty):
        (x,) = ctx.saved_tensors
        return None, 2 * x
''',
    "torch.empty(0)": '''
class Edge(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.empty(0, device=x.device)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return x.cos()
''',
    "phony made for the device": '''
def get_phony(device, requires_grad):
    return torch.empty(0, device=device, requires_grad=requires_grad)

class PortalBlue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, portal, tensor):
        ctx.portal = portal
        phony = get_phony(tensor.device, requires_grad=False)
        return phony.detach()

    @staticmethod
    def backward(ctx, grad_phony):
        grad = ctx.portal.use_grad()
        return None, grad
''',
    "named dummy the forward does not compute": '''
class All2All_Req(Function):
    @staticmethod
    def forward(ctx, pg, myreq, a2ai, x):
        out = torch.empty_like(x)
        myreq.req = launch(out, x, pg)
        myreq.tensor = out
        ctx.myreq = myreq
        return myreq.dummy_tensor

    @staticmethod
    def backward(ctx, *unused):
        myreq = ctx.myreq
        myreq.req.wait()
        grad_input = myreq.tensor.view(-1)
        return (None, None, None, grad_input)
''',
}

NONE_LISTS = {
    "list of None, extended with None, as a tuple": '''
class Recompute(torch.autograd.Function):
    @staticmethod
    def forward(ctx, phony, x):
        ctx.save_for_backward(x)
        return phony

    @staticmethod
    def backward(ctx, *grad_output):
        ctx.recomputed.append(ctx.function(ctx.saved_tensors))
        grad_input = [None, None]
        grad_input.extend(None for _ in ctx.saved_tensors)
        return tuple(grad_input)
''',
    "[None] * n returned as it is": '''
class Mark(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x)
        return x * y

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        out = [None] * 2
        out.append(None)
        return out
''',
}


@pytest.mark.parametrize("source", list(PLACEHOLDERS.values()) + list(NONE_LISTS.values()),
                         ids=list(PLACEHOLDERS) + list(NONE_LISTS))
def test_not_flagged(source):
    assert gl405(source) == []


# -- must still flag ---------------------------------------------------------------------------

FLAGGED = {
    "forward computes its output": '''
class Clip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(-1, 1)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return (x.abs() < 1).float()
''',
    "empty buffer a kernel fills": '''
class Kernel(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        out = torch.empty_like(x)
        ext.launch(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.ones_like(x)
''',
    "named dummy but computed from the input": '''
class Twice(Function):
    @staticmethod
    def forward(ctx, x):
        dummy = x * 2
        return dummy

    @staticmethod
    def backward(ctx, g):
        return torch.ones_like(g) * 2
''',
    "attribute named dummy the forward assigns": '''
class Req(Function):
    @staticmethod
    def forward(ctx, myreq, x):
        myreq.dummy_tensor = x * 2
        ctx.myreq = myreq
        return myreq.dummy_tensor

    @staticmethod
    def backward(ctx, g):
        return None, ctx.myreq.tensor
''',
    "placeholder beside a real output": '''
class Pair(Function):
    @staticmethod
    def forward(ctx, x):
        return x.exp(), torch.tensor(1.0)

    @staticmethod
    def backward(ctx, g, g_phony):
        return ctx.scale
''',
    "list of None that a gradient is put in": '''
class Partial(Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x)
        return x * y

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        grads = [None, None]
        grads[0] = x.cos()
        return tuple(grads)
''',
    "list of None extended with a gradient": '''
class Partial(Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x)
        return x * y

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        grads = [None]
        grads.extend([x.cos()])
        return tuple(grads)
''',
}


@pytest.mark.parametrize("source", list(FLAGGED.values()), ids=list(FLAGGED))
def test_flagged(source):
    assert gl405(source) == ["GL405"]
