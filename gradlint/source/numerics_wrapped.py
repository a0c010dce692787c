"""A module handed to a trainer with the criterion it is trained with (skorch's convention).

`NeuralNetClassifier(Net, criterion=nn.CrossEntropyLoss)` (skorch's `NeuralNet` and its
subclasses, and wrappers that keep its arguments, such as ray-skorch's `RayTrainNeuralNet`):
the trainer's own loop applies the criterion to the module's output. Read as a loss applied to
that output, where the module is a class of this file, given by the first positional argument
or `module=`, as a class or an instance, and the trainer is not a class of this file (a trainer
the project defines is read where its own code applies the criterion). skorch takes the log of
the output itself only for `NLLLoss` (NeuralNetClassifier's default); the cross-entropies read
here get the output as it is.
"""

from __future__ import annotations

import libcst as cst

from gradlint.facts.numerics import LOSS_NAMES, Site


def module_with_criterion(walk, node: cst.Call) -> None:
    """At a call passing `criterion=` and a module class or instance of this file: the site of
    that criterion applied to the module's output (`walk`: the function walk evaluating it)."""
    crit_node = module_node = None
    for a in node.args:
        if a.keyword is None:
            continue
        if a.keyword.value == "criterion":
            crit_node = a.value
        elif a.keyword.value == "module":
            module_node = a.value
    if crit_node is None or walk.hazard_quiet():
        return
    if type(node.func) is cst.Name and node.func.value in walk.x.local_classes:
        return  # a trainer of this file: its own code is read where it applies the criterion
    if module_node is None and node.args and node.args[0].keyword is None and not node.args[0].star:
        module_node = node.args[0].value
    if module_node is None:
        return
    crit = walk.ev(crit_node)
    kind = crit.crit_class or crit.crit  # (the kind the evaluator gives a criterion: ce, bce, bce_logits)
    if kind not in LOSS_NAMES:
        return
    cls = _module_class(walk, module_node)
    if cls is None:
        return
    loss = LOSS_NAMES[kind]
    # (what the loss must not be given: as SiteChecks.check_loss asks of `crit(model(x), y)`)
    want = "softmax" if kind == "ce" else "sigmoid"
    walk.x.add(Site("probability_into_loss", "model-output", walk.x.span(node), detail=loss, classes=(cls,),
                    want=want, data=(("loss", loss), ("input", walk.x.code(module_node)[:80]),
                                     ("trainer", walk.x.code(node.func)[:60]))))


def _module_class(walk, value: cst.BaseExpression) -> str | None:
    """The class of this file a module argument names (`Net`) or makes (`Net(...)`)."""
    if type(value) is cst.Name:
        name = value.value
        if name in walk.x.local_classes and name not in walk.env and name not in walk.globals:
            return name
        return None
    # (a class of another file: its instance's criterion is judged where a trainer the project
    # can read applies it, through what its callers pass, facts.numerics.bind_parameters)
    made = walk.ev(value).inst
    return next(iter(made)) if len(made) == 1 and made <= walk.x.local_classes else None
