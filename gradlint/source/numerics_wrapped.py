"""A module handed to a trainer with the criterion it is trained with (skorch's convention).

`NeuralNetClassifier(Net, criterion=nn.CrossEntropyLoss)` (skorch's `NeuralNet` and its
subclasses, and wrappers that keep its arguments, such as ray-skorch's `RayTrainNeuralNet`):
the trainer's own loop applies the criterion to the module's output. Read as a loss applied to
that output, where the module is a class of this file, given by the first positional argument
or `module=`, as a class or an instance, and the trainer is not a class of this file (a trainer
the project defines is read where its own code applies the criterion). skorch takes the log of the output itself only for
`NLLLoss` (NeuralNetClassifier's default); the criteria named here get the output as it is.
"""

from __future__ import annotations

import libcst as cst

from gradlint.facts.numerics import Site

# The criteria read here (what a trainer passes the module's output to unchanged), by the kind
# the evaluator gives them (V.crit / V.crit_class): the loss named and what it must not be given.
_LOSSES = {"ce": ("cross_entropy", "softmax"), "bce_logits": ("binary_cross_entropy_with_logits", "sigmoid"),
           "bce": ("binary_cross_entropy", "sigmoid")}


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
    loss = _LOSSES.get(crit.crit_class or crit.crit or "")
    if loss is None:
        return
    cls = _module_class(walk, module_node)
    if cls is None:
        return
    walk.x.add(Site("probability_into_loss", "model-output", walk.x.span(node), detail=loss[0], classes=(cls,),
                    want=loss[1], data=(("loss", loss[0]), ("input", walk.x.code(module_node)[:80]),
                                        ("trainer", walk.x.code(node.func)[:60]))))


def _module_class(walk, value: cst.BaseExpression) -> str | None:
    """The class of this file a module argument names (`Net`) or makes (`Net(...)`)."""
    if type(value) is cst.Name:
        name = value.value
        if name in walk.x.local_classes and name not in walk.env and name not in walk.globals:
            return name
        return None
    got = walk.ev(value)
    # (a class of another file: its instance's criterion is judged where a trainer the project
    # can read applies it, through what its callers pass, facts.numerics.bind_parameters)
    return next(iter(got.inst)) if len(got.inst) == 1 and next(iter(got.inst)) in walk.x.local_classes else None
