"""Functions a framework calls once per batch (source.loop_drivers) and GL205 on them.

Measured (torch 2.13, pytorch-ignite 0.5.5, lightning 2.6.6, lr 0 so the model stays put): with no
clear, the weight gradient's norm over five batches grew 2.2, 3.5, 5.8, 5.3, 6.1 under Ignite's
Engine and 1.8, 3.0, 4.8, 4.6, 4.8 under Lightning's manual optimisation (each step holds the sum
of every earlier batch's gradient); with `opt.zero_grad()` first it stays at one batch's.
"""

from __future__ import annotations

from pathlib import Path

from gradlint.api import check_source
from gradlint.config import Config
from gradlint.source import extract_facts, parse

IGNITE = """\
import torch
from ignite.engine import Engine

model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)


def update(engine, batch):
{clear}    x, y = batch
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


trainer = Engine(update)
"""

LIGHTNING = """\
import torch
import lightning.pytorch as pl


class Lit(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
{manual}
    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
{clear}        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.manual_backward(loss)
        opt.step()
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
"""
MANUAL = "        self.automatic_optimization = False\n"


def gl205(text: str) -> list:
    return [f for f in check_source(text, Config(select=("GL205",))) if f.code == "GL205"]


def driven(text: str) -> dict[str, str]:
    t = extract_facts(parse("t.py", text)).training
    return {t.functions[fid].name: what for fid, what in t.driven}


def test_ignite_process_function_without_clear():
    found = gl205(IGNITE.format(clear=""))
    assert [f.span.line for f in found] == [12]
    assert "Ignite's `Engine` calls `update` once per iteration" in found[0].message


def test_ignite_process_function_that_clears():
    assert not gl205(IGNITE.format(clear="    optimizer.zero_grad()\n"))


def test_ignite_accumulation_clearing_every_k():
    text = IGNITE.replace("""    optimizer.step()
""", """    if engine.state.iteration % 4 == 0:
        optimizer.step()
        optimizer.zero_grad()
""").format(clear="")
    assert not gl205(text)


def test_ignite_nested_process_function_and_keyword():
    text = """\
import torch
from ignite.engine import Engine as E


def create_trainer(model, optimizer):
    def _update(engine, batch):
        model(batch).sum().backward()
        optimizer.step()

    return E(process_function=_update)
"""
    assert driven(text) == {"_update": "ignite"}
    assert len(gl205(text)) == 1


def test_engine_of_another_library_drives_nothing():
    text = IGNITE.replace("from ignite.engine import Engine", "from mylib import Engine").format(clear="")
    assert driven(text) == {}
    assert not gl205(text)


def test_ignite_evaluator_without_step_is_not_a_training_step():
    text = """\
import torch
from ignite.engine import Engine


def evaluate(engine, batch):
    with torch.no_grad():
        return model(batch)


evaluator = Engine(evaluate)
"""
    assert not gl205(text)


def test_lightning_manual_training_step_without_clear():
    found = gl205(LIGHTNING.format(manual=MANUAL, clear=""))
    assert [f.span.line for f in found] == [16]
    assert "manual optimisation" in found[0].message


def test_lightning_manual_training_step_that_clears():
    assert not gl205(LIGHTNING.format(manual=MANUAL, clear="        opt.zero_grad()\n"))


def test_lightning_manual_subclass_of_a_manual_module():
    text = LIGHTNING.format(manual=MANUAL, clear="").replace("class Lit(pl.LightningModule):", "class Base(pl.LightningModule):")
    text = text.replace("    def training_step", "\nclass Lit(Base):\n    def training_step", 1)
    assert driven(text) == {"training_step": "lightning-manual"}
    assert len(gl205(text)) == 1


def test_lightning_automatic_optimisation_is_not_driven():
    # (Lightning's automatic loop clears the gradients itself; training_step there has no step)
    text = LIGHTNING.format(manual="", clear="")
    assert driven(text) == {}
    assert not gl205(text)


GAN = """\
import torch
import lightning.pytorch as pl


class GAN(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.G = torch.nn.Linear(4, 4)
        self.D = torch.nn.Linear(4, 1)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        g_opt, d_opt = self.optimizers()
        z = torch.randn(8, 4)
        g_opt.zero_grad()
        self.manual_backward(-self.D(self.G(z)).mean())
        g_opt.step()
{clear}        self.manual_backward(self.D(self.G(z).detach()).mean() - self.D(batch).mean())
        d_opt.step()
"""


def test_lightning_manual_gan_clearing_one_optimizer():
    found = gl205(GAN.format(clear=""))
    assert [f.span.line for f in found] == [19]
    assert "only `g_opt` is cleared" in found[0].message


def test_lightning_manual_gan_clearing_both():
    assert not gl205(GAN.format(clear="        d_opt.zero_grad()\n"))


def test_lightning_manual_clear_on_one_branch_only():
    text = LIGHTNING.format(manual=MANUAL, clear="").replace("""        self.manual_backward(loss)
        opt.step()
""", """        if self.hparams.amp:
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        else:
            self.manual_backward(loss)
            opt.step()
""")
    found = gl205(text)
    assert [f.span.line for f in found] == [21]
    assert "`training_step`'s only clear of the gradients (line 16)" in found[0].message


def test_lightning_manual_accumulation_clearing_every_k():
    text = LIGHTNING.format(manual=MANUAL, clear="").replace("""        opt.step()
""", """        if (batch_idx + 1) % 4 == 0:
            opt.step()
            opt.zero_grad()
""")
    assert not gl205(text)


def test_ignite_clear_in_an_event_handler():
    text = IGNITE.format(clear="") + """

@trainer.on(Events.ITERATION_STARTED)
def clear(engine):
    optimizer.zero_grad()
"""
    assert not gl205(text)


def test_lightning_manual_clear_in_a_batch_hook():
    text = LIGHTNING.format(manual=MANUAL, clear="") + """
    def on_train_batch_start(self, batch, batch_idx):
        self.optimizers().zero_grad()
"""
    assert not gl205(text)


def test_gl201_reads_a_framework_step_function_as_repeated():
    # (a recurrent model stepped per batch with no clip, as in a written loop)
    text = IGNITE.format(clear="    optimizer.zero_grad()\n").replace("torch.nn.Linear(4, 1)", "torch.nn.LSTM(4, 1)")
    text = text.replace("model(x)", "model(x)[0]")
    found = [f for f in check_source(text, Config(select=("GL201",))) if f.code == "GL201"]
    assert [f.span.line for f in found] == [13]
    clipped = text.replace("    optimizer.step()", "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n    optimizer.step()")
    assert not [f for f in check_source(clipped, Config(select=("GL201",))) if f.code == "GL201"]


SUPERVISED = """\
import torch
from ignite.{where} import {fn}


class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(8, 16, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0][:, -1]


model = Tagger()
trainer = {fn}(model, torch.optim.Adam(model.parameters()), torch.nn.MSELoss(){more})
trainer.run(loader, max_epochs=5)
"""


def gl201(text: str) -> list:
    return [f for f in check_source(text, Config(select=("GL201",))) if f.code == "GL201"]


def test_ignite_ready_made_trainers_never_clip():
    for where, fn, more in (("engine", "create_supervised_trainer", ""),
                            ("contrib.engines", "create_supervised_tbptt_trainer", ", tbtt_step=8")):
        found = gl201(SUPERVISED.format(where=where, fn=fn, more=more))
        assert [f.span.line for f in found] == [15], fn
        assert f"Ignite's `{fn}`, which never clips, trains `model`" in found[0].message


def test_ignite_ready_made_trainer_of_a_model_without_risk():
    text = SUPERVISED.format(where="engine", fn="create_supervised_trainer", more="")
    assert not gl201(text.replace("torch.nn.GRU(8, 16, batch_first=True)", "torch.nn.Linear(8, 16)")
                     .replace("self.rnn(x)[0][:, -1]", "self.rnn(x)"))


def test_a_create_supervised_trainer_of_another_library_is_no_ignite_trainer():
    text = SUPERVISED.format(where="engine", fn="create_supervised_trainer", more="")
    assert not gl201(text.replace("from ignite.engine import", "from mylib import"))


# Accumulation in a function a framework calls per batch. Measured (torch 2.13, ignite 0.5.5,
# lightning 2.6.6, lr 0, four different batches, k = 4): with the clear at every call and the
# step under `engine.state.iteration % 4 == 0` (`(batch_idx + 1) % 4 == 0`), the step's gradient
# is the last micro-batch's exactly (cosine 1.0; norm 0.61 where the accumulated one is 1.74);
# with a clip at 1.0 at every call, the stepped gradient points along the last micro-batch's
# (cosine 0.96 / 0.98) and not along the clipped sum (0.49 / 0.41); clipped inside the guard, it
# is the clipped sum (cosine 1.0).
ACCUMULATING = IGNITE.replace("""    optimizer.step()
""", """    if engine.state.iteration % 4 == 0:
{clip_in}        optimizer.step()
        optimizer.zero_grad()
""").replace("    loss.backward()\n", "    loss.backward()\n{clip_out}")

LIGHTNING_ACCUMULATING = LIGHTNING.replace("""        opt.step()
""", """        if (batch_idx + 1) % 4 == 0:
{clip_in}            opt.step()
            opt.zero_grad()
""").replace("        self.manual_backward(loss)\n", "        self.manual_backward(loss)\n{clip_out}")


def select(text: str, code: str) -> list:
    return [f for f in check_source(text, Config(select=(code,))) if f.code == code]


def test_gl208_ignite_clear_at_every_call_and_a_step_every_k():
    text = ACCUMULATING.format(clear="    optimizer.zero_grad()\n", clip_in="", clip_out="")
    found = select(text, "GL208")
    assert [f.span.line for f in found] == [9]
    assert "only when `engine.state.iteration % 4 == 0`" in found[0].message
    assert not select(ACCUMULATING.format(clear="", clip_in="", clip_out=""), "GL208")


def test_gl208_lightning_manual_clear_at_every_batch_and_a_step_every_k():
    text = LIGHTNING_ACCUMULATING.format(manual=MANUAL, clear="        opt.zero_grad()\n", clip_in="", clip_out="")
    found = select(text, "GL208")
    assert [f.span.line for f in found] == [13]
    assert not select(LIGHTNING_ACCUMULATING.format(manual=MANUAL, clear="", clip_in="", clip_out=""), "GL208")


def test_gl208_an_accumulating_step_function_no_framework_calls_is_read_at_its_loop():
    # (with no loop and no framework around it, the function's guard is read where it is called)
    text = ACCUMULATING.format(clear="    optimizer.zero_grad()\n", clip_in="", clip_out="").replace(
        "trainer = Engine(update)", "")
    assert not select(text, "GL208")


def test_gl206_ignite_clip_at_every_call_and_a_step_every_k():
    clip = "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
    found = select(ACCUMULATING.format(clear="", clip_in="", clip_out=clip), "GL206")
    assert [f.span.line for f in found] == [12]
    assert not select(ACCUMULATING.format(clear="", clip_in="    " + clip, clip_out=""), "GL206")


def test_gl206_lightning_manual_clip_at_every_batch_and_a_step_every_k():
    clip = "        self.clip_gradients(opt, gradient_clip_val=1.0, gradient_clip_algorithm=\"norm\")\n"
    text = LIGHTNING_ACCUMULATING.format(manual=MANUAL, clear="", clip_in="", clip_out=clip)
    found = select(text, "GL206")
    assert [f.span.line for f in found] == [16]
    assert not select(LIGHTNING_ACCUMULATING.format(manual=MANUAL, clear="", clip_in="    " + clip, clip_out=""), "GL206")


# Measured (as above, same batch, lr 0): the gradient norm at each step grew 2.1, 4.1, 6.2, 8.2,
# 10.3 with `Engine(lambda engine, batch: step(batch))` and 2.3, 4.6, 6.9, 9.2, 11.5 with
# `Engine(get_step(model, optimizer))`, neither clearing; a LightningModule with
# `automatic_optimization = False` in its class body, or a property returning False, ran
# `training_step` under manual optimisation (1.6, 3.3, 4.9...; 3.5, 7.0, 10.4...).
def test_ignite_lambda_process_function_calls_the_step():
    text = IGNITE.format(clear="").replace("def update(engine, batch):", "def update(batch):").replace(
        "Engine(update)", "Engine(lambda engine, batch: update(batch))")
    assert driven(text) == {"update": "ignite"}
    assert [f.span.line for f in gl205(text)] == [12]


def test_ignite_process_function_a_factory_returns():
    text = """\
import torch
from ignite.engine import Engine


def get_step(model, optimizer):
    def step(engine, batch):
        model(batch).sum().backward()
        optimizer.step()
    return step


model = torch.nn.Linear(4, 1)
trainer = Engine(get_step(model, torch.optim.SGD(model.parameters(), lr=0.1)))
"""
    assert driven(text) == {"step": "ignite"}
    assert [f.span.line for f in gl205(text)] == [8]
    # a factory that returns something else (Ignite's own supervised_training_step) drives nothing of the file
    other = text.replace("    return step", "    return supervised_training_step(model, optimizer, loss_fn)")
    assert driven(other) == {}


def test_lightning_manual_as_a_class_attribute_or_a_property():
    base = LIGHTNING.format(manual="", clear="")
    attribute = base.replace("class Lit(pl.LightningModule):\n", "class Lit(pl.LightningModule):\n    automatic_optimization = False\n\n")
    prop = base.replace("    def training_step", "    @property\n    def automatic_optimization(self):\n        return False\n\n    def training_step")
    for text in (attribute, prop):
        assert driven(text) == {"training_step": "lightning-manual"}
        assert len(gl205(text)) == 1
    # a property that can say True keeps automatic optimisation
    assert driven(prop.replace("        return False", "        return self.hparams.manual")) == {}


def test_ignite_clear_in_a_lambda_handler():
    # measured: with `lambda engine: optimizer.zero_grad()` on ITERATION_COMPLETED the stepped
    # gradient's norm stayed at one batch's (2.06 at each of five steps)
    text = IGNITE.format(clear="") + \
        "trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: optimizer.zero_grad())\n"
    assert not gl205(text)
    # a lambda handler that clears nothing (logging) leaves the finding
    assert len(gl205(text.replace("optimizer.zero_grad()", "print(engine.state.output)"))) == 1


MANUAL_BASE = """\
import torch
import lightning.pytorch as pl


class ManualBase(pl.LightningModule):
    def __init__(self):
        super().__init__()
{manual}
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
"""

CHILD = """\
import torch
from base import ManualBase


class Regressor(ManualBase):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
{clear}        x, y = batch
        self.manual_backward(torch.nn.functional.mse_loss(self.net(x), y))
        opt.step()
"""


def test_lightning_manual_set_by_a_base_class_of_another_file(tmp_path):
    # measured: Regressor's training_step ran under manual optimisation set in base.py; with no
    # clear the stepped gradient's norm grew 1.8, 3.5, 5.3, 7.0, 8.8; with `opt.zero_grad()` it
    # stayed at one batch's
    from gradlint.api import check_paths

    def found(manual: str, clear: str) -> list:
        root = tmp_path / f"p{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        (root / "pyproject.toml").write_text("")
        (root / "base.py").write_text(MANUAL_BASE.format(manual=manual))
        (root / "model.py").write_text(CHILD.format(clear=clear))
        result = check_paths([root], Config(select=("GL205",), root=str(root)), use_cache=False, jobs=1)
        assert not result.internal_errors
        return [(Path(f.path).name, f.span.line) for f in result.findings if f.code == "GL205"]

    assert found(MANUAL, "") == [("model.py", 14)]
    assert found(MANUAL, "        opt.zero_grad()\n") == []
    # a base under automatic optimisation: Lightning clears and steps itself
    assert found("", "") == []


FABRIC = """\
import torch
from lightning.fabric import Fabric


def train(loader):
    fabric = Fabric()
    model = torch.nn.LSTM(4, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = fabric.setup(model, optimizer)
    for x, y in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x)[0], y)
        fabric.backward(loss)
{clip}        optimizer.step()
"""


def test_gl201_a_model_handed_back_by_fabric_setup_or_accelerate_prepare():
    # measured: `fabric.setup(model, optimizer)` returns a _FabricModule whose parameters are the
    # LSTM's own tensors, and an optimizer over them; the loop trains the LSTM
    assert [f.span.line for f in gl201(FABRIC.format(clip=""))] == [14]
    assert not gl201(FABRIC.format(clip="        fabric.clip_gradients(model, optimizer, max_norm=1.0)\n"))
    accelerate = FABRIC.replace("from lightning.fabric import Fabric", "from accelerate import Accelerator").replace(
        "Fabric()", "Accelerator()").replace("fabric.setup(", "fabric.prepare(")
    assert [f.span.line for f in gl201(accelerate.format(clip=""))] == [14]
    # Fabric's setup and accelerate's prepare hand back their arguments in order, whatever the names
    renamed = FABRIC.format(clip="").replace("model = torch.nn.LSTM", "net = torch.nn.LSTM").replace(
        "optimizer = torch.optim.SGD(model.parameters()", "opt = torch.optim.SGD(net.parameters()").replace(
        "fabric.setup(model, optimizer)", "fabric.setup(net, opt)")
    assert [f.span.line for f in gl201(renamed)] == [14]
    # another function's result under other names is not read as its arguments handed back
    assert not gl201(renamed.replace("fabric.setup(net, opt)", "wrap(net, opt)"))


# Measured (lr 0, the same batch): with the only clear under `if batch_idx == 0:` (Lightning
# manual), `if engine.state.iteration == 1:` (Ignite) or `if i == 0:` (a written loop), the stepped
# gradient grew 1.0, 2.1, 3.1, 4.1, 5.1 and 2.5, 5.1, 7.6, 10.1: cleared once, then summed.
def test_gl205_a_clear_held_to_the_first_batch():
    lightning = LIGHTNING.format(manual=MANUAL, clear="        if batch_idx == 0:\n            opt.zero_grad()\n")
    found = gl205(lightning)
    assert [f.span.line for f in found] == [18]
    assert "only clear of the gradients (line 14) runs only when `batch_idx == 0`" in found[0].message
    ignite = IGNITE.format(clear="    if engine.state.iteration == 1:\n        optimizer.zero_grad()\n")
    assert [f.span.line for f in gl205(ignite)] == [14]
    loop = """\
import torch

model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for i, (x, y) in enumerate(loader):
    if i == 0:
        opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
"""
    assert [f.span.line for f in gl205(loop)] == [9]


def test_gl205_a_first_batch_clear_with_another_clear_or_a_test_of_no_counter():
    # cleared again after the step: every step applies one batch's gradients
    again = LIGHTNING.format(manual=MANUAL, clear="        if batch_idx == 0:\n            opt.zero_grad()\n").replace(
        "        opt.step()\n", "        opt.step()\n        opt.zero_grad()\n")
    assert not gl205(again)
    # a test of something that is no counter of the batches (a setting) is not read as one pass
    setting = LIGHTNING.format(manual=MANUAL, clear="        if self.hparams.zero == 1:\n            opt.zero_grad()\n")
    assert not gl205(setting)
    # an accumulation: the step under a test of its own, the clear at the window's first batch
    window = LIGHTNING.format(manual=MANUAL, clear="        if batch_idx % 4 == 0:\n            opt.zero_grad()\n").replace(
        "        opt.step()\n", "        if (batch_idx + 1) % 4 == 0:\n            opt.step()\n")
    assert not gl205(window)


def test_ignite_ready_made_trainer_with_a_clip_in_an_event_handler():
    # measured (ignite 0.5.5): create_supervised_trainer on an LSTM with a clip at 1.0 in an
    # ITERATION_COMPLETED handler stepped gradients of norm 11.7 at every step: the handler runs
    # after the step, and the next iteration clears what it clipped
    text = SUPERVISED.format(where="engine", fn="create_supervised_trainer", more="") + """

@trainer.on(Events.ITERATION_COMPLETED)
def clip(engine):
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
"""
    assert [f.span.line for f in gl201(text)] == [15]


def test_gl208_a_driven_function_that_accumulates_into_a_buffer_of_its_own():
    # measured (lightning 2.6.6, k = 4): clearing at every batch, adding `.grad` into a buffer and
    # writing the buffer back before the step applies the accumulated gradient (cosine 1.0)
    text = LIGHTNING_ACCUMULATING.format(manual=MANUAL, clear="        opt.zero_grad()\n", clip_in="", clip_out="""\
        for b, p in zip(self.buf, self.net.parameters()):
            b.add_(p.grad)
""").replace("""            opt.step()
""", """            for b, p in zip(self.buf, self.net.parameters()):
                p.grad = b.clone()
                b.zero_()
            opt.step()
""")
    assert not select(text, "GL208")


STEPS = """\
import torch

model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)


def update(engine, batch):
{clear}    x, y = batch
    torch.nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()
"""

TRAIN = """\
from ignite.engine import Engine, Events
{imports}

trainer = Engine({given})
{handler}"""


def _project(tmp_path, files: dict[str, str], select=("GL205",)) -> list:
    from gradlint.api import check_paths

    root = tmp_path / f"p{len(list(tmp_path.iterdir()))}"
    root.mkdir()
    (root / "pyproject.toml").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    result = check_paths([root], Config(select=select, root=str(root)), use_cache=False, jobs=1)
    assert not result.internal_errors
    return [(Path(f.path).name, f.span.line, f.code) for f in result.findings]


def test_ignite_process_function_of_another_file(tmp_path):
    # measured (/tmp programs, Ignite 0.5.5, lr 0): `Engine(update)` in train.py with `update`
    # imported from steps.py, no clear: the weight gradient's norm grew 2.64, 4.68, 6.55, 5.81,
    # 6.26 over five batches; with `lambda e: optimizer.zero_grad()` on ITERATION_COMPLETED it
    # stayed at one batch's
    def found(clear="", imports="from steps import update", given="update", handler="") -> list:
        return _project(tmp_path, {"steps.py": STEPS.format(clear=clear),
                                   "train.py": TRAIN.format(imports=imports, given=given, handler=handler)})

    assert found() == [("steps.py", 10, "GL205")]
    assert found(imports="import steps", given="steps.update") == [("steps.py", 10, "GL205")]
    assert found(given="lambda engine, batch: update(engine, batch)") == [("steps.py", 10, "GL205")]
    # cleared in the function, or by a handler of the file that drives it
    assert found(clear="    optimizer.zero_grad()\n") == []
    assert found(imports="from steps import update, optimizer",
                 handler="trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: optimizer.zero_grad())\n") == []
    # an `update` of another module (or none) is not this one
    assert found(imports="from other import update") == []
    # a name the calling function is given may be anything
    assert found(imports="", given="fn").__len__() == 0


def test_ignite_process_function_of_another_file_message(tmp_path):
    from gradlint.api import check_paths

    root = tmp_path
    (root / "pyproject.toml").write_text("")
    (root / "steps.py").write_text(STEPS.format(clear=""))
    (root / "train.py").write_text(TRAIN.format(imports="from steps import update", given="update", handler=""))
    result = check_paths([root / "steps.py"], Config(select=("GL205",), root=str(root)), use_cache=False, jobs=1)
    assert [f.message for f in result.findings] and "Ignite's `Engine` in `train` calls `update`" in result.findings[0].message


TWO_OPTIMIZERS = """\
import torch
from ignite.engine import Engine, Events

gen = torch.nn.Linear(4, 1)
disc = torch.nn.Linear(4, 1)
opt_g = torch.optim.SGD(gen.parameters(), lr=0.1)
opt_d = torch.optim.SGD(disc.parameters(), lr=0.1)


def update(engine, batch):
    x, y = batch
    torch.nn.functional.mse_loss(gen(x), y).backward()
    opt_g.step()


trainer = Engine(update)
trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: {cleared}.zero_grad())
"""


def test_ignite_lambda_handler_clearing_another_optimizer():
    # measured (Ignite 0.5.5, lr 0): with `lambda engine: opt_d.zero_grad()` and `update`
    # stepping opt_g of another model, gen's gradient norm grew 1.0, 1.42, 2.5, 2.68, 5.93;
    # clearing opt_g it stayed at one batch's
    found = gl205(TWO_OPTIMIZERS.format(cleared="opt_d"))
    assert [f.span.line for f in found] == [13]
    assert "lambda clears only `opt_d`" in found[0].message
    assert not gl205(TWO_OPTIMIZERS.format(cleared="opt_g"))
    # what a lambda clears is not known to be another: it may clear the stepped one
    assert not gl205(TWO_OPTIMIZERS.format(cleared="self.opt"))
    assert not gl205(TWO_OPTIMIZERS.replace("opt_d = torch.optim.SGD(disc.parameters(), lr=0.1)",
                                            "opt_d = opt_g").format(cleared="opt_d"))
    assert not gl205(TWO_OPTIMIZERS.format(cleared="gen"))


FABRIC_16 = """\
import torch
import lightning as L


class Trainer:
    def __init__(self):
        self.fabric = L.Fabric({args})

    def fit(self, model, optimizer, loader):
        model, optimizer = self.fabric.setup(model, optimizer)
        for x, y in loader:
            optimizer.zero_grad()
            self.fabric.backward(torch.nn.functional.mse_loss(model(x), y))
            {clip}
            optimizer.step()
"""


def test_gl203_fabric_16_mixed_and_a_torch_clip():
    # measured (lightning 2.6.6, CPU): with the GradScaler the 16-mixed plugin holds on a GPU
    # (init_scale 1024), clip_grad_norm_ after fabric.backward saw 2602 = 1024 x the true 2.54
    def gl203(args: str, clip: str = "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)") -> list:
        text = FABRIC_16.format(args=args, clip=clip)
        return [f for f in check_source(text, Config(select=("GL203",))) if f.code == "GL203"]

    for args in ('precision="16-mixed"', 'precision="16"', "precision=16", 'accelerator="cuda", precision="16-mixed"',
                 'accelerator="gpu", devices=2, strategy="ddp", precision="16-mixed"'):
        found = gl203(args)
        assert [f.span.line for f in found] == [14], args
        assert "self.fabric.clip_gradients(model, optimizer, max_norm=...)" in found[0].message
    assert "clip_val=..." in gl203('precision="16-mixed"', "torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)")[0].message
    for args in ('precision="bf16-mixed"', "", 'accelerator="cpu", precision="16-mixed"', 'precision="32-true"',
                 'precision="16-mixed", plugins=[plugin]', 'precision="16-mixed", strategy="deepspeed"',
                 "precision=cfg.precision", 'precision="16-mixed", **kw'):
        assert not gl203(args), args
    assert not gl203('precision="16-mixed"', "self.fabric.clip_gradients(model, optimizer, max_norm=1.0)")


EVERY_K = """\
import torch

for i, (x, y) in enumerate(loader):
    loss = criterion(model(x), y)
    loss.backward()
{step}
{clear}
"""


def test_gl205_cleared_every_k_batches_while_stepping_every_batch():
    # measured (torch 2.13 and Ignite 0.5.5, k = 4, lr 0): the stepped gradient's norm went 2.53,
    # 3.19, 4.82, 4.89, then 0.73 after the clear, 3.67, 5.09, 6.68: each step applies the sum
    # since the last clear; stepping under the same test (accumulation) is right
    step, clear = "    optimizer.step()", "    if (i + 1) % k == 0:\n        optimizer.zero_grad()"
    found = gl205(EVERY_K.format(step=step, clear=clear))
    assert [f.span.line for f in found] == [6]
    assert "runs only when `(i + 1) % k == 0`" in found[0].message
    # written right: the step under the same test, or the clear at every batch as well
    assert not gl205(EVERY_K.format(step="", clear=clear + "\n        optimizer.step()"))
    assert not gl205(EVERY_K.format(step="    if (i + 1) % k == 0:\n        optimizer.step()", clear=clear))
    assert not gl205(EVERY_K.format(step=step, clear=clear + "\n    optimizer.zero_grad()"))
    assert not gl205(EVERY_K.format(step=step, clear=clear + "\n    else:\n        optimizer.zero_grad(set_to_none=True)"))
    assert not gl205(EVERY_K.format(step="    if (i + 1) % k != 0:\n        continue\n    optimizer.step()",
                                    clear="    optimizer.zero_grad()"))
    # Ignite: the engine's iteration as the counter
    text = IGNITE.replace("    optimizer.step()\n", "    optimizer.step()\n    if engine.state.iteration % 4 == 0:\n"
                                                      "        optimizer.zero_grad()\n").format(clear="")
    assert [f.span.line for f in gl205(text)] == [12]


MIXIN = """\
import torch


class StepMixin:
    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
{clear}        x, y = batch
        self.manual_backward(torch.nn.functional.mse_loss(self.net(x), y))
        opt.step()
"""

LIT = """\
import torch
import lightning.pytorch as pl
from mixins import StepMixin


class Lit(StepMixin, pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
{manual}
{own}
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
"""


def test_lightning_manual_training_step_inherited_from_a_mixin_of_another_file(tmp_path):
    # measured (Lightning 2.6.6, lr 0): Lit(StepMixin, pl.LightningModule) with manual
    # optimisation ran the mixin's training_step; with no clear the stepped gradient's norm grew
    # 2.23, 3.48, 5.82, 5.33, 6.13
    def found(clear="", manual=MANUAL, own="") -> list:
        return _project(tmp_path, {"mixins.py": MIXIN.format(clear=clear),
                                   "model.py": LIT.format(manual=manual, own=own)})

    assert found() == [("mixins.py", 9, "GL205")]
    assert found(clear="        opt.zero_grad()\n") == []
    # automatic optimisation: Lightning clears and steps itself (the mixin's manual calls are its own business)
    assert found(manual="") == []
    # the subclass defines its own training_step: the mixin's never runs there
    assert found(own="    def training_step(self, batch, batch_idx):\n        return None\n") == []


def test_lightning_manual_training_step_inherited_from_a_mixin_of_the_same_file():
    text = MIXIN.format(clear="") + """

class Lit(StepMixin, LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
"""
    assert [f.span.line for f in gl205(text)] == [9]
    assert not gl205(text.replace("self.automatic_optimization = False", "pass"))
