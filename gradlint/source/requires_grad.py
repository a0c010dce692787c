"""`x.requires_grad = ...` in a numerics walk: a mistake on a module, a fact of the value on a tensor.

`RequiresGradReadings` is a mixin of `numerics_walk.FunctionWalk`, as its expressions, calls, call
records and sites are. Setting the attribute on an nn.Module sets a plain attribute: its
parameters still train, and the walk records a `requires_grad_on_module` site. Most of the work
is telling what the holder is: a module the walk knows, a parameter whose callers pass a model
(or a submodule path below one), a submodule of a model torchvision, timm or Hugging Face builds,
a path below an instance of a class of the project, a name the file uses only as a module is used.
`self.requires_grad = flag` in a module's own method is no mistake when the method also freezes
the parameters themselves, honours the setting another way, or the class holds no layers at all
(the attribute then only keeps a setting). On a tensor the walk keeps what the setting makes of
its value, for the backward call.
"""

from __future__ import annotations

import re

import libcst as cst

from gradlint.facts.numerics import Site
from gradlint.source.engine.tensors import Where, UNKNOWN, _TRAINABLE, required_again, replace, broken_before_required
from gradlint.source.engine.walk import walk
from gradlint.source.names import dotted
from gradlint.source.numerics_sites import _param_data

# Submodules of the models torchvision and timm build, by the names those libraries give them (a
# torch.nn layer has no attribute of these names, and where one exists it is a module too).
_LIBRARY_SUBMODULES = frozenset({"layer1", "layer2", "layer3", "layer4", "conv1", "bn1", "fc", "features", "classifier",
                                 "avgpool", "encoder", "decoder", "heads", "head", "blocks", "stages", "stem",
                                 "patch_embed", "backbone", "conv_proj",
                                 # Hugging Face: bert.embeddings, bert.encoder.layer, gpt2.transformer.h,
                                 # llama.model.layers, vit.pooler; the base model a task model holds
                                 # (BertForSequenceClassification.bert, RobertaFor*.roberta...) and
                                 # the modules of a layer (attention.self, intermediate.dense)
                                 "embeddings", "layer", "layers", "h", "transformer", "pooler", "model",
                                 "bert", "roberta", "distilbert", "albert", "deberta", "electra", "vit", "wav2vec2",
                                 "hubert", "whisper", "text_model", "vision_model", "base_model", "lm_head",
                                 "pre_classifier", "word_embeddings", "position_embeddings", "wte", "wpe", "shared",
                                 "attention", "intermediate", "output", "dense", "visual"})


def _freezes_for_real(fn: cst.FunctionDef | None) -> bool:
    """The method also freezes the parameters themselves (`for p in self.parameters():
    p.requires_grad = flag`, `self.requires_grad_(flag)`): its `self.requires_grad = flag` records
    the setting beside a freeze that works, and no parameter keeps training."""
    if fn is None:
        return False
    for n in walk(fn, stop=()):
        if type(n) is cst.Call and type(n.func) is cst.Attribute and n.func.attr.value == "requires_grad_":
            return True
        if type(n) is cst.Assign and any(
                type(t.target) is cst.Attribute and t.target.attr.value == "requires_grad"
                and not (type(t.target.value) is cst.Name and t.target.value.value == "self") for t in n.targets):
            return True
    return False


# Libraries whose calls build models (`timm.create_model`, `torchvision.models.resnet50`).
_MODEL_BUILDERS = ("timm.", "torchvision.models.", "transformers.", "torch.hub.")
# Methods of nn.Module that give it a parameter or a submodule.
_ADDS_LAYERS = frozenset({"register_parameter", "add_module", "register_module"})


def _setting_name(value: cst.BaseExpression | None) -> bool:
    """A value that is a name, not a literal (`requires_grad`, not `False`): a setting handed in."""
    return type(value) is cst.Name and value.value not in ("True", "False", "None")


def _setting_used_elsewhere(fn: cst.FunctionDef | None, value: cst.BaseExpression | None) -> bool:
    """`self.requires_grad = requires_grad` where the method acts on that setting another way
    (speechbrain's `Fbank(requires_grad=False)` passes `freeze=not requires_grad` to its
    filterbank): the name, or its negation, given to a keyword about freezing or training, to
    `requires_grad_(...)`, or tested by an `if`. The attribute then records a setting the method
    honours; any other read (a log line) honours nothing."""
    if fn is None or not _setting_name(value):
        return False
    name = value.value

    def is_it(e: cst.BaseExpression) -> bool:
        if type(e) is cst.UnaryOperation and type(e.operator) is cst.Not:
            e = e.expression
        return type(e) is cst.Name and e.value == name and e is not value

    for n in walk(fn.body, stop=()):
        kind = type(n)
        if kind is cst.Arg and n.keyword is not None and is_it(n.value) and any(
                w in n.keyword.value.lower() for w in ("freeze", "frozen", "grad", "train")):
            return True
        if kind is cst.Call and type(n.func) is cst.Attribute and n.func.attr.value == "requires_grad_" and \
                any(is_it(a.value) for a in n.args):
            return True
        if kind is cst.If and is_it(n.test):
            return True
    return False


# What only a module has: its parameters, children, modules and state dict, and a child holding a
# weight or bias (`self.model.outc.conv.weight`: no tensor has an attribute that has a weight).
_MODULE_USE = r"\s*\.\s*(?:(?:named_)?(?:parameters|children|modules)\s*\(|(?:load_)?state_dict\s*\(|\w+\s*\.\s*(?:weight|bias)\b)"


def _read_as_module(key: str, text: str) -> bool:
    """Whether the file reads the dotted name `key` as only an nn.Module is read (_MODULE_USE)."""
    pattern = re.compile(r"(?<![\w.])" + r"\s*\.\s*".join(map(re.escape, key.split("."))) + _MODULE_USE)
    return pattern.search(text) is not None


class RequiresGradReadings:
    """`x.requires_grad = ...` of FunctionWalk (a mixin: it reads the walk's environment, class and
    function, and adds to its file's sites)."""

    def _holds_layers(self) -> bool:
        """Whether the class's own code gives it a parameter or a submodule (`self.fc = nn.Linear(...)`):
        a setting it stores as `self.requires_grad = requires_grad` is then about its layers. A class
        with neither (torchrl's environment wrappers: `requires_grad` asks for a differentiable
        simulator) only keeps a setting."""
        if self.cls.params or any(v.module or v.inst for v in self.cls.attrs.values()):
            return True
        # (while `__init__` is walked, the layers it sets later are not known yet: read its calls)
        for fn in self.cls.method_nodes.values():
            for n in walk(fn.body, stop=()):
                if type(n) is cst.Call:
                    if type(n.func) is cst.Attribute and n.func.attr.value in _ADDS_LAYERS:
                        return True
                    if any(q.startswith("torch.nn.") and q.rsplit(".", 1)[-1][:1].isupper() for q in self.x.q(n.func)):
                        return True
                    if type(n.func) is cst.Name and n.func.value in self.x.forward_classes:
                        return True
                # `self.backbone = timm.create_model(...)`, `self.mlp = make_mlp(n)`: a model a
                # library builds, or what a function of this file returns (not a spec object or a
                # random generator another library makes: torchrl's environment wrappers)
                elif type(n) is cst.Assign and type(n.value) is cst.Call and any(
                        type(t.target) is cst.Attribute and type(t.target.value) is cst.Name
                        and t.target.value.value == "self" for t in n.targets):
                    func = n.value.func
                    if type(func) is cst.Name and func.value in self.x.def_names or any(
                            q.startswith(_MODEL_BUILDERS) for q in self.x.q(func)):
                        return True
        return False

    def requires_grad_set(self, holder: cst.BaseExpression, value_node: cst.BaseExpression | None,
                          where: Where) -> None:
        """`x.requires_grad = ...`: on a module it sets a plain attribute; on a computed value it is
        remembered for the backward call."""
        truth = value_node is None or not (type(value_node) is cst.Name and value_node.value == "False")
        hv = self.ev(holder)
        key = dotted(holder)
        if hv.module:
            self.x.add(Site("requires_grad_on_module", "module-attribute", where.span, detail=self.x.code(holder)))
            return
        if hv.inst and not hv.params:
            self.x.add(Site("requires_grad_on_module", "module-attribute", where.span, detail=self.x.code(holder),
                            classes=tuple(sorted(hv.inst)), want="module"))
            return
        if (model := self.x.open_param(hv)) is not None:
            # a parameter: a module when the project's callers all pass one
            self.x.add(Site("requires_grad_on_module", "parameters", where.span, detail=self.x.code(holder),
                            data=tuple(_param_data("model", model))))
            return
        if (held := self._open_param_path(holder)) is not None:
            # `model.encoder` of a parameter: a module when the callers all pass a model whose
            # class owns a submodule at that path (facts.numerics.bind_parameters)
            self.x.add(Site("requires_grad_on_module", "parameters", where.span, detail=self.x.code(holder),
                            data=(*_param_data("model", held[0]), ("model_path", held[1]))))
            return
        if self._library_submodule(holder):
            # `resnet.layer1.requires_grad = False`, `bert.encoder.layer.requires_grad = False` on a
            # model torchvision, timm or Hugging Face builds (or any module): these names are
            # submodules there, never tensors
            self.x.add(Site("requires_grad_on_module", "module-attribute", where.span, detail=self.x.code(holder)))
            return
        if (owned := self._instance_path(holder)) is not None:
            # `m.backbone.requires_grad = ...` on an instance of a class of the project: a module
            # when the class holds a submodule at that path (facts.numerics.holds)
            self.x.add(Site("requires_grad_on_module", "module-attribute", where.span, detail=self.x.code(holder),
                            classes=owned[0], want="module-path", data=(("model_path", owned[1]),)))
            return
        if type(holder) is cst.Call and not holder.args and type(holder.func) is cst.Attribute and \
                dotted(holder.func.value) is not None and (got := self.ev(holder.func.value)).inst and \
                not got.params and not got.module:
            # `model.get_encoder().requires_grad = ...` on an instance of a class of the project: a
            # module when the method returns one of its submodules (facts.numerics.holds)
            self.x.add(Site("requires_grad_on_module", "module-attribute", where.span, detail=self.x.code(holder),
                            classes=tuple(sorted(got.inst)), want="getter",
                            data=(("getter", holder.func.attr.value),)))
            return
        if key and hv is UNKNOWN and key != "self" and _read_as_module(key, self._scope_text(key)):
            # nothing known of it, but the file uses it as only a module is used (`x.parameters()`,
            # `x.load_state_dict(...)`, a child's weight `x.conv.weight`): no tensor has those
            self.x.add(Site("requires_grad_on_module", "module-attribute", where.span, detail=self.x.code(holder)))
            return
        if key == "self" and self.cls is not None and not self.cls.reads_requires_grad and \
                not _freezes_for_real(self.fn_node) and not _setting_used_elsewhere(self.fn_node, value_node) and \
                not (_setting_name(value_node) and not self._holds_layers()):
            self.x.add(Site("requires_grad_on_module", "module-attribute", where.span, detail="self", classes=(self.cls.name,),
                            want="module"))
            return
        if truth and key and broken_before_required(hv):
            self.env[key] = replace(hv, rg=hv.rg | {(where, key)})
        elif truth and key and hv.leaf and hv.const and hv.tensor:
            self.env[key] = _TRAINABLE  # `W.requires_grad = True` on a factory's tensor
        elif truth and key and (again := required_again(hv)) is not None:
            self.env[key] = again  # `loss = loss.detach(); loss.requires_grad = True`

    def _scope_text(self, key: str) -> str:
        """Where a name's uses tell what it is: the function's own code for a name it binds (another
        function's loop variable `m` over modules is not this one's, over parameters), the file's
        for a global."""
        if self.fn_node is not None and key.split(".")[0] in self.env:
            return self.x.code(self.fn_node)
        return self.x.src.text

    def _library_submodule(self, node: cst.BaseExpression) -> bool:
        """`node` is a chain of submodule names (_LIBRARY_SUBMODULES) on a module that is no
        instance of a class of the project (those are judged by what their class holds)."""
        if type(node) is not cst.Attribute:
            return False
        while type(node) in (cst.Attribute, cst.Subscript):
            if type(node) is cst.Subscript:
                node = node.value  # `encoder.layer[0]`: one of the layers a ModuleList holds
                continue
            if node.attr.value not in _LIBRARY_SUBMODULES:
                return False
            node = node.value
            if type(node) is cst.Subscript:
                continue
            root = self.ev(node)  # `bert`, or `self.encoder` holding one: the chain below is its
            if root.module and not root.inst and not root.crit:
                return True
        return False

    def _instance_path(self, holder: cst.BaseExpression) -> tuple[tuple[str, ...], str] | None:
        """(the classes, the attribute path below) when `holder` is a chain of attributes on an
        instance of a class of the project (`model.backbone`, `self.net.encoder.layers`)."""
        parts: list[str] = []
        node = holder
        while type(node) is cst.Attribute:
            parts.append(node.attr.value)
            node = node.value
            if dotted(node) is None:
                return None
            v = self.ev(node)
            if v.inst and not v.params and not v.module:
                return tuple(sorted(v.inst)), ".".join(reversed(parts))
            if v is not UNKNOWN:
                return None
        return None

    def _open_param_path(self, holder: cst.BaseExpression) -> tuple[tuple[str, str, int], str] | None:
        """(the open parameter, the attribute path below it) when `holder` is a chain of attributes
        on one (`model.encoder`, `self.model.blocks` with `self.model = model` in `__init__`)."""
        parts: list[str] = []
        node = holder
        while type(node) is cst.Attribute:
            parts.append(node.attr.value)
            node = node.value
            key = dotted(node)
            if key is None:
                return None
            if key in self.env:
                ref = self.x.open_param(self.env[key])
                return (ref, ".".join(reversed(parts))) if ref is not None else None
        return None
