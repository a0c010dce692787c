"""GL206 on Accelerate's `with accelerator.accumulate(model):`, where the optimizer steps only on syncing micro-batches.

Measured (bench/measure_accumulate_clip.py, accelerate 1.16.0, torch 2.13 CPU, k = 4): inside
accumulate() only the 4th micro-batch synced and only its `optimizer.step()` moved the weights;
`accelerator.clip_grad_norm_` on every micro-batch clipped the partial sums (norms seen 4.92,
7.40, 3.08, 3.00 against 4.92, 7.81, 8.90, 9.06 unclipped), and the update's cosine to the sum
clipped once was 0.31; under `if accelerator.sync_gradients:` it matched to 1.5e-08. The clip,
step and zero_grad written after the `with` block, in the same loop body, gave the same numbers:
the flag `accumulate()` sets on entry stays set when the block exits.
"""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config
from gradlint.source import extract_facts, parse
from gradlint.facts.training import Block

LOOP = """\
import argparse

import torch
from accelerate import Accelerator

parser = argparse.ArgumentParser()
parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
args = parser.parse_args()
accelerator = Accelerator({made})


def train(model, loader, optimizer):
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    for batch in loader:
        with accelerator.accumulate(model):
            loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
            accelerator.backward(loss)
{clip}            optimizer.step()
            optimizer.zero_grad()
"""

EVERY = "            accelerator.clip_grad_norm_(model.parameters(), 1.0)\n"
CLIP_LINE = 18


def gl206(text: str) -> list:
    return [f for f in check_source(text, Config(select=("GL206",))) if f.code == "GL206"]


def loop(clip: str = EVERY, made: str = "gradient_accumulation_steps=args.gradient_accumulation_steps") -> str:
    return LOOP.format(clip=clip, made=made)


# -- facts ------------------------------------------------------------------------------------


def _with_blocks(block: Block):
    for it in block.items:
        if isinstance(it, Block):
            if it.kind == "with":
                yield it
            yield from _with_blocks(it)


def test_facts_the_with_block_names_what_it_accumulates_and_the_accelerator_its_steps():
    t = extract_facts(parse("t.py", loop(made="gradient_accumulation_steps=4"))).training
    withs = [w for fn in t.functions for w in _with_blocks(fn.body)]
    assert [w.accumulates for w in withs] == ["accelerator"]
    (acc,) = [a for a in t.assigns if a.kind == "accelerator"]
    assert acc.accum_steps.number == 4 and acc.accum_steps.source == "literal"
    t = extract_facts(parse("t.py", loop(made=""))).training
    assert [a.accum_steps for a in t.assigns if a.kind == "accelerator"] == [None]


def test_facts_a_with_of_anything_else_accumulates_nothing():
    text = "import torch\nwith torch.no_grad():\n    loss.backward()\nwith ctx.accumulate:\n    loss.backward()\n"
    t = extract_facts(parse("t.py", text)).training
    assert [w.accumulates for fn in t.functions for w in _with_blocks(fn.body)] == ["", ""]


# -- flagged ----------------------------------------------------------------------------------


def test_clip_on_every_micro_batch_inside_accumulate():
    (f,) = gl206(loop())
    assert f.span.line == CLIP_LINE
    assert "inside `accelerator.accumulate(...)`" in f.message
    assert "`optimizer.step()` steps only when `accelerator.sync_gradients`" in f.message
    assert "clip under `if accelerator.sync_gradients:`" in f.message


@pytest.mark.parametrize("made", ["", "gradient_accumulation_steps=4", "**kwargs",
                                  "gradient_accumulation_plugin=plugin"], ids=["env-may-set-it", "four", "kwargs", "plugin"])
def test_flagged_whatever_accumulation_the_accelerator_is_built_with_but_a_written_1(made):
    assert [f.span.line for f in gl206(loop(made=made))] == [CLIP_LINE]


def test_a_written_1_that_the_file_changes_later_is_no_1():
    text = loop(made="gradient_accumulation_steps=1").replace(
        "def train(", "accelerator.gradient_accumulation_steps = args.gradient_accumulation_steps\n\n\ndef train(")
    assert [f.span.line for f in gl206(text)] == [CLIP_LINE + 3]


@pytest.mark.parametrize("guard", ["if args.max_grad_norm:", "if not accelerator.sync_gradients:",
                                   "if accelerator.sync_gradients or args.clip_always:"],
                         ids=["another-test", "the-wrong-way", "or"])
def test_a_guard_that_does_not_hold_the_clip_to_the_syncing_micro_batch(guard):
    clip = f"            {guard}\n    " + EVERY
    assert [f.span.line for f in gl206(loop(clip))] == [CLIP_LINE + 1]


def test_an_accelerator_passed_as_a_parameter():
    text = """\
def train(accelerator, model, loader, optimizer, max_norm):
    for batch in loader:
        with accelerator.accumulate(model):
            accelerator.backward(model(batch).loss)
            accelerator.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
            optimizer.zero_grad()
"""
    assert [f.span.line for f in gl206(text)] == [5]


def test_a_step_function_called_inside_accumulate_is_read_at_the_loop_once():
    text = """\
from accelerate import Accelerator

accelerator = Accelerator(gradient_accumulation_steps=8)


def train_step(model, batch, optimizer):
    accelerator.backward(model(batch).loss)
    accelerator.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()


def train(model, loader, optimizer):
    for batch in loader:
        with accelerator.accumulate(model):
            train_step(model, batch, optimizer)
"""
    assert [f.span.line for f in gl206(text)] == [8]


def test_a_method_no_loop_of_the_file_calls_that_enters_accumulate_itself():
    text = """\
class Trainer:
    def training_step(self, batch):
        with self.accelerator.accumulate(self.model):
            self.accelerator.backward(self.model(batch).loss)
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad()
"""
    (f,) = gl206(text)
    assert f.span.line == 5 and "`self.accelerator.sync_gradients`" in f.message


# -- quiet ------------------------------------------------------------------------------------


@pytest.mark.parametrize("guard", [
    "if accelerator.sync_gradients:",
    "if accelerator.sync_gradients and args.max_grad_norm > 0:",
    "if args.max_grad_norm is not None and accelerator.sync_gradients:",
    "if accelerator.gradient_state.sync_gradients:",
    "if (step + 1) % args.gradient_accumulation_steps == 0:",
], ids=["sync", "sync-and", "and-sync", "gradient-state", "own-count"])
def test_a_clip_held_to_the_syncing_micro_batch(guard):
    clip = f"            {guard}\n    " + EVERY
    assert gl206(loop(clip).replace("for batch in loader:", "for step, batch in enumerate(loader):")) == []


def test_the_rest_after_if_not_sync_continue():
    clip = "            if not accelerator.sync_gradients:\n                continue\n" + EVERY
    assert gl206(loop(clip)) == []


def test_a_name_bound_to_the_sync_flag():
    clip = "            sync = accelerator.sync_gradients\n            if sync:\n    " + EVERY
    assert gl206(loop(clip)) == []


@pytest.mark.parametrize("bound", [
    ["sync = accelerator.sync_gradients and args.max_grad_norm > 0"],
    ["sync = args.max_grad_norm is not None and (accelerator.sync_gradients and args.clip)"],
    ["synced = accelerator.sync_gradients", "sync = synced and args.max_grad_norm > 0"],
], ids=["and", "nested-and", "through-a-name"])
def test_a_name_bound_to_an_and_that_holds_the_sync_flag(bound):
    clip = "".join(f"            {b}\n" for b in bound) + "            if sync:\n    " + EVERY
    assert gl206(loop(clip)) == []


@pytest.mark.parametrize("bound", [
    ["sync = accelerator.sync_gradients or args.clip_always"],
    ["sync = not accelerator.sync_gradients"],
    ["sync = args.max_grad_norm > 0 and args.clip"],
    ["sync = accelerator.sync_gradients == args.flag"],
], ids=["or", "not", "no-flag", "comparison"])
def test_a_name_bound_to_what_does_not_imply_the_sync_flag(bound):
    clip = "".join(f"            {b}\n" for b in bound) + "            if sync:\n    " + EVERY
    assert [f.span.line for f in gl206(loop(clip))] == [CLIP_LINE + len(bound) + 1]


def test_a_name_also_bound_elsewhere_to_what_does_not_imply_the_flag():
    text = loop("            if sync:\n    " + EVERY).replace(
        "    for batch in loader:\n", "    sync = True\n    for batch in loader:\n").replace(
        "            accelerator.backward(loss)\n",
        "            accelerator.backward(loss)\n            sync = accelerator.sync_gradients and args.clip\n")
    assert [f.span.line for f in gl206(text)] == [CLIP_LINE + 3]


def test_facts_what_a_bound_value_implies():
    text = "a = x.f and (y and z > 0)\nb = x.f or y\nc = not x.f\nd = x.f\ne = g(x.f)\n"
    t = extract_facts(parse("t.py", text + "loss.backward()\n")).training
    assert {a.target: a.implies for a in t.assigns} == {"a": ("x.f", "y"), "b": (), "c": (), "d": ("x.f",), "e": ()}


@pytest.mark.parametrize("made", ["gradient_accumulation_steps=1", "gradient_accumulation_steps=ACCUM"],
                         ids=["literal", "constant"])
def test_an_accelerator_built_to_sync_every_micro_batch(made):
    text = loop(made=made).replace("args = parser.parse_args()\n", "args = parser.parse_args()\nACCUM = 1\n")
    assert gl206(text) == []


AFTER = """\
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
"""


def after_the_block(after: str = AFTER, inside: str = "") -> str:
    return loop(inside).replace("""            optimizer.step()
            optimizer.zero_grad()
""", after)


def test_a_clip_and_step_after_accumulate_in_the_same_iteration():
    # entering the block sets sync_gradients for the iteration and leaving it keeps it: the step
    # after it moves the weights only on the k-th micro-batch (measured, module docstring)
    (f,) = gl206(after_the_block())
    assert f.span.line == CLIP_LINE
    assert "partial gradient sum after `accelerator.accumulate(...)`" in f.message
    assert "clip under `if accelerator.sync_gradients:`" in f.message


def test_a_clip_inside_accumulate_and_the_step_after_it():
    (f,) = gl206(after_the_block(AFTER.split("\n", 1)[1], inside=EVERY))
    assert f.span.line == CLIP_LINE and "inside `accelerator.accumulate(...)`" in f.message


def test_a_step_after_accumulate_in_a_loop_over_optimizers():
    after = AFTER.replace("        optimizer.", "        for opt in [optimizer]:\n            opt.")
    assert [f.span.line for f in gl206(after_the_block(after))] == [CLIP_LINE]


def test_a_method_that_enters_accumulate_and_steps_after_the_block():
    text = """\
class Trainer:
    def training_step(self, batch):
        with self.accelerator.accumulate(self.model):
            self.accelerator.backward(self.model(batch).loss)
        self.accelerator.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
"""
    (f,) = gl206(text)
    assert f.span.line == 5 and "after `self.accelerator.accumulate(...)`" in f.message


def test_a_clip_and_step_after_accumulate_held_to_the_sync_flag():
    after = "        if accelerator.sync_gradients:\n" + AFTER.replace("        ", "            ")
    assert gl206(after_the_block(after)) == []


def test_a_clip_and_step_after_accumulate_built_to_sync_every_micro_batch():
    assert gl206(after_the_block().replace(
        "gradient_accumulation_steps=args.gradient_accumulation_steps", "gradient_accumulation_steps=1")) == []


def test_a_clip_and_step_after_the_loop_that_enters_accumulate():
    text = after_the_block(AFTER.replace("        ", "    "))
    assert gl206(text) == []


def test_a_step_after_an_accumulate_block_entered_only_sometimes():
    # (on the iterations that skip the block, the flag is the last one's: not read)
    text = after_the_block().replace("        with accelerator.accumulate(model):",
                                     "        if args.accumulate:\n          with accelerator.accumulate(model):")
    assert gl206(text) == []


def test_an_accelerator_loop_without_accumulate():
    text = loop(made="gradient_accumulation_steps=4").replace(
        "        with accelerator.accumulate(model):\n", "        if True:\n")
    assert gl206(text) == []


def test_accumulate_in_one_loop_and_an_unguarded_clip_in_another():
    guarded = "            if accelerator.sync_gradients:\n    " + EVERY
    text = loop(guarded) + """

def finetune(model, loader, optimizer):
    for batch in loader:
        accelerator.backward(model(batch).loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
"""
    assert gl206(text) == []
