"""GL401 requires-grad-on-loss: `loss.requires_grad = True` on a computed value that is then backpropagated."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule
from gradlint.facts.numerics import Site


class RequiresGradOnLoss(SiteRule):
    """
    ## What it does
    Flags `loss.requires_grad = True` and `loss.requires_grad_()` on a computed value (not a
    factory-made leaf, not an `nn.Parameter`, not a function input) that is later passed to
    `backward()` (directly, `scaler.scale(loss).backward()`, `accelerator.backward(loss)`...).

    Not flagged: leaves made by factories (`torch.zeros(...)`, `torch.tensor(...)`,
    `x.detach().clone()`), parameters, and inputs made to require grad for saliency maps or
    adversarial examples (they are not the backpropagated value).

    ## Why is this bad?
    PyTorch raises "element 0 of tensors does not require grad and does not have a grad_fn"
    when the loss is cut from the parameters. Setting `requires_grad = True` silences the
    error instead of fixing the cut: `backward()` then runs and no parameter receives a
    gradient. Where the graph is not cut, the line cannot help either: PyTorch refuses it
    ("you can only change requires_grad flags of leaf variables"). Measured in torch 2.13: a
    loss computed under `no_grad()`, with `requires_grad = True`, backwards
    without error and leaves `w.grad` None; on a loss computed with grad the assignment raises.
    (A loss detached with `.detach()` and made to require grad again is GL402's.)

    ## Example
    ```python
    loss = compute_loss(out, y)
    loss.requires_grad = True
    loss.backward()
    ```

    ## Use instead
    ```python
    loss = compute_loss(out, y)  # find where the graph is cut (.item(), torch.tensor, detach)
    loss.backward()
    ```
    """

    code = "GL401"
    kinds = frozenset({"requires_grad_on_loss"})
    name = "requires-grad-on-loss"
    severity = Severity.ERROR
    summary = "requires_grad set on a computed loss (hides a broken graph)"

    invalid = [
        Example("import torch\n\ndef step(model, crit, x, y, opt):\n"
                "    loss = crit(model(x), y)\n"
                "    loss.requires_grad = True\n"
                "    loss.backward()\n    opt.step()\n"),
        Example("import torch\n\ndef step(out, y, scaler):\n"
                "    loss = (out - y).abs().mean()\n"
                "    loss.requires_grad_()\n"
                "    scaler.scale(loss).backward()\n"),
        Example("import torch\n\ndef step(out, y, accelerator, k):\n"
                "    loss = torch.nn.functional.mse_loss(out, y)\n"
                "    loss.requires_grad_(True)\n"
                "    accelerator.backward(loss / k)\n"),
    ]
    valid = [
        Example("import torch\n\ndef step(w):\n    loss = torch.zeros(())\n    loss.requires_grad = True\n"
                "    loss.backward()\n", note="a factory leaf"),
        Example("import torch\n\ndef saliency(model, images, labels):\n"
                "    images.requires_grad = True\n"
                "    loss = torch.nn.functional.cross_entropy(model(images), labels)\n"
                "    loss.backward()\n    return images.grad.abs()\n", note="saliency input"),
        Example("import torch\n\ndef pgd(model, x, y, eps):\n"
                "    x_adv = x.detach() + 0.001 * torch.randn_like(x)\n"
                "    x_adv.requires_grad_()\n"
                "    loss = torch.nn.functional.cross_entropy(model(x_adv), y)\n"
                "    loss.backward()\n    return x_adv.grad\n", note="adversarial input"),
        Example("import torch\nfrom torch import nn\n\nw = nn.Parameter(torch.ones(3))\nw.requires_grad = True\n",
                note="a parameter"),
        Example("import torch\n\ndef step(model, crit, x, y):\n    loss = crit(model(x), y)\n    loss.backward()\n"),
    ]

    def message(self, site: Site, ctx: RuleContext) -> str:
        line = dict(site.data).get("backward_line")
        at = f" (backpropagated at line {line})" if line else ""
        return (f"requires_grad set on computed `{site.detail}`{at}: where its graph is cut this silences "
                "PyTorch's error and no parameter gets a gradient (where it is intact PyTorch raises here: only "
                "leaves may change requires_grad); remove it and find where the graph is cut")
