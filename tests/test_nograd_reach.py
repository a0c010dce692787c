"""The project call graph behind "can run with grad": the facts each file records (its functions,
their calls and whether each runs under no_grad, names read as values, the function of each site)
and the query `only_nograd_reachable` over the project index."""

from __future__ import annotations

from pathlib import Path

from gradlint.facts.callgraph import only_nograd_reachable
from gradlint.facts.project import ProjectIndex, Scope, holds_word
from gradlint.source import extract_python_text

PIPELINE = '''
import torch
from torch import nn


def helper(z):
    return torch.log(torch.softmax(z, -1))


def outer(z):
    return inner(z)


def inner(z):
    return torch.log(torch.softmax(z, -1))


def lonely(z):
    return torch.log(torch.softmax(z, -1))


def blocked(z):
    return z


def runner(z):
    with torch.no_grad():
        blocked(z)
    return z


class Pipe:
    def __init__(self):
        self.head = nn.Linear(4, 4)

    def prepare(self, z):
        def closure():
            return helper(z)
        return closure

    def score(self, z):
        return z

    def forward(self, z):
        return z

    @torch.no_grad()
    def __call__(self, z):
        out = super().__call__(z)
        return self.prepare(z), helper(z), outer(z), self.score(z), self.forward(z), out
'''


def facts(text: str, name: str = "m.py"):
    return extract_python_text(text, name)


def index_of(files: dict[str, str]) -> ProjectIndex:
    index = ProjectIndex()
    for name, text in files.items():
        index.add(Path(name).with_suffix("").as_posix().replace("/", "."), facts(text, name))
    return index


def reach(index: ProjectIndex, module: str, function: str) -> bool:
    return only_nograd_reachable(Scope(index, module), function)


# -- the facts ---------------------------------------------------------------------------------

def test_functions_are_named_within_their_module_and_record_their_calls():
    num = facts(PIPELINE).numerics
    by_name = {f.name: f for f in num.functions}
    assert {"<module>", "helper", "outer", "inner", "Pipe.__init__", "Pipe.prepare",
            "Pipe.prepare.<locals>.closure", "Pipe.__call__", "runner"} <= set(by_name)
    call = by_name["Pipe.__call__"]
    assert call.nograd
    # every call of a no-grad-decorated function runs under no_grad
    assert {c.callee for c in call.calls} >= {"self.prepare", "helper", "outer", "self.score", "super().__call__"}
    assert all(c.nograd for c in call.calls)
    # a with-block marks only the calls inside it
    def made(function):  # (callee, nograd) of its calls: Call.args also says what they pass
        return {(c.callee, c.nograd) for c in by_name[function].calls}

    assert ("blocked", True) in made("runner")
    assert not by_name["outer"].nograd and ("inner", False) in made("outer")
    assert ("helper", False) in made("Pipe.prepare.<locals>.closure")


def test_names_read_as_values_are_recorded_not_names_called():
    num = facts("import torch\nfrom lib import hook\n\n\ndef a(x):\n    return x\n\n\n"
                "def b(x):\n    return a(x)\n\n\nclass C:\n    def m(self, x):\n        return x\n\n"
                "    def n(self, x):\n        cb = self.m\n        return torch.utils.checkpoint.checkpoint(hook, x)\n").numerics
    assert {"m", "hook"} <= num.references
    assert "a" not in num.references


def test_each_site_names_its_function():
    num = facts(PIPELINE).numerics
    assert {s.function for s in num.sites} == {"helper", "inner", "lonely"}
    nested = facts("import torch\n\n\nclass K:\n    def m(self, z):\n        def g():\n"
                   "            return torch.log(torch.softmax(z, -1))\n        return g\n").numerics
    assert [s.function for s in nested.sites] == ["K.m.<locals>.g"]


# -- the query ---------------------------------------------------------------------------------

def test_helpers_only_a_no_grad_call_reaches_are_proven():
    index = index_of({"pipe.py": PIPELINE})
    assert reach(index, "pipe", "helper") is False  # the closure in prepare calls it with grad
    assert reach(index, "pipe", "outer") is True
    assert reach(index, "pipe", "inner") is True  # a chain of two
    assert reach(index, "pipe", "blocked") is True  # inside a with-block
    assert reach(index, "pipe", "Pipe.prepare") is True  # through self.
    assert reach(index, "pipe", "Pipe.score") is True


def test_what_stays_callable_with_grad():
    index = index_of({"pipe.py": PIPELINE})
    assert reach(index, "pipe", "lonely") is False  # no caller: its users call it
    assert reach(index, "pipe", "Pipe.forward") is False  # an entry point
    assert reach(index, "pipe", "Pipe.__call__") is False
    assert reach(index, "pipe", "Pipe.prepare.<locals>.closure") is False
    assert reach(index, "pipe", "<module>") is False
    assert reach(index, "pipe", "") is False
    assert only_nograd_reachable(None, "helper") is False


def test_a_caller_in_another_file_decides():
    train = "import torch\nfrom pipe import inner\n\n\ndef fit(z):\n    inner(z).sum().backward()\n"
    assert reach(index_of({"pipe.py": PIPELINE}), "pipe", "inner") is True
    assert reach(index_of({"pipe.py": PIPELINE, "train.py": train}), "pipe", "inner") is False
    # the same name defined and called in another file is that file's own function
    other = ("import torch\n\n\ndef inner(z):\n    return z\n\n\n"
             "def fit(z):\n    inner(z).sum().backward()\n")
    assert reach(index_of({"pipe.py": PIPELINE, "other.py": other}), "pipe", "inner") is True
    # an alias of the import is still a call of it
    alias = "import torch\nfrom pipe import inner as inr\n\n\ndef fit(z):\n    inr(z).sum().backward()\n"
    assert reach(index_of({"pipe.py": PIPELINE, "alias.py": alias}), "pipe", "inner") is False
    # a module-level call (a script) runs with grad
    script = "import torch\nimport pipe\n\npipe.inner(torch.ones(2))\n"
    assert reach(index_of({"pipe.py": PIPELINE, "script.py": script}), "pipe", "inner") is False


def test_methods_through_receivers():
    sub = ("import torch\nfrom pipe import Pipe\n\n\nclass Child(Pipe):\n"
           "    def train_more(self, z):\n        return self.score(z)\n")
    assert reach(index_of({"pipe.py": PIPELINE, "child.py": sub}), "pipe", "Pipe.score") is False
    unrelated = ("import torch\n\n\nclass Other:\n    def run(self, z):\n        return self.score(z)\n\n"
                 "    def score(self, z):\n        return z\n")
    assert reach(index_of({"pipe.py": PIPELINE, "other.py": unrelated}), "pipe", "Pipe.score") is True
    unknown = "import torch\n\n\ndef fit(pipe, z):\n    return pipe.score(z)\n"
    assert reach(index_of({"pipe.py": PIPELINE, "fit.py": unknown}), "pipe", "Pipe.score") is False
    held = ("import torch\n\n\nclass Holder:\n    def run(self, z):\n        return self.pipe.score(z)\n")
    assert reach(index_of({"pipe.py": PIPELINE, "held.py": held}), "pipe", "Pipe.score") is False
    # a library's function of the same name is not a call of the project's
    lib = "import torch\n\n\ndef fit(z):\n    return torch.score(z)\n"
    assert reach(index_of({"pipe.py": PIPELINE, "lib.py": lib}), "pipe", "outer") is True
    assert reach(index_of({"pipe.py": PIPELINE, "lib.py": lib}), "pipe", "Pipe.score") is True


def test_a_function_read_as_a_value_may_run_anywhere():
    ref = "import torch\nfrom pipe import outer\n\nCALLBACKS = [outer]\n"
    assert reach(index_of({"pipe.py": PIPELINE, "ref.py": ref}), "pipe", "outer") is False


def test_recursion_is_not_proven():
    rec = ("import torch\n\n\ndef walk(z, n):\n    return walk(z, n - 1) if n else z\n\n\n"
           "@torch.no_grad()\ndef run(z):\n    return walk(z, 3)\n")
    assert reach(index_of({"rec.py": rec}), "rec", "walk") is False
    mutual = ("import torch\n\n\ndef a(z):\n    return b(z)\n\n\ndef b(z):\n    return a(z)\n\n\n"
              "@torch.no_grad()\ndef run(z):\n    return a(z)\n")
    index = index_of({"mutual.py": mutual})
    assert reach(index, "mutual", "b") is False and reach(index, "mutual", "a") is False


class _Loader:
    """A loader whose scan finds a file the run did not read as code (no numerics facts)."""

    def __init__(self, modules: dict[str, str]) -> None:
        self.modules = modules

    def load(self, module: str):
        text = self.modules.get(module)
        return (facts(text, module + ".py"), False) if text is not None else None

    def modules_mentioning(self, word: str, whole: bool = False):
        return [m for m, text in self.modules.items() if holds_word(text.encode(), word.encode(), whole)]


def test_callers_are_found_in_files_outside_the_run_and_unread_files_are_not_proof():
    train = "import torch\nfrom pipe import inner\n\n\ndef fit(z):\n    inner(z).sum().backward()\n"
    index = ProjectIndex(_Loader({"pipe": PIPELINE, "train": train}))
    index.add("pipe", facts(PIPELINE, "pipe.py"))
    assert reach(index, "pipe", "inner") is False  # train.py was never checked, its call counts
    assert reach(index, "pipe", "outer") is True
    # a file that names the function but is not read as code (no torch in it): not proven
    index = ProjectIndex(_Loader({"pipe": PIPELINE, "notes": "# outer is called by hand\nouter(1)\n"}))
    index.add("pipe", facts(PIPELINE, "pipe.py"))
    assert reach(index, "pipe", "outer") is False


def test_the_search_for_callers_reads_only_files_naming_the_function_as_a_word():
    """A file whose text holds the name only inside another identifier (`outer_config`) cannot
    call it: it is not read (a one-file run read every file holding `f1` in `conf1g`, 6 s), and
    its not being read as code is no obstacle to a proof."""
    loads = []

    class Counting(_Loader):
        def load(self, module):
            loads.append(module)
            return super().load(module)

    notes = "# outer_config is set by hand\nouter_config = 1\n"
    index = ProjectIndex(Counting({"pipe": PIPELINE, "notes": notes}))
    index.add("pipe", facts(PIPELINE, "pipe.py"))
    assert reach(index, "pipe", "outer") is True
    assert "notes" not in loads
    assert holds_word(b"x = self.f1(y)", b"f1", True) and holds_word(b"conf1g", b"f1", False)
    assert not holds_word(b"conf1g = f1_score", b"f1", True)
    assert holds_word(b"\xc3\xa9f1 = 1", b"f1", True)  # (a non-ASCII neighbour: maybe an identifier, read)


def test_a_caller_that_names_no_torch_is_read_for_its_calls(tmp_path):
    """report.py never names torch: its call of log_probs is read when the search for callers
    reaches it, so a helper only reached through it under no_grad is proven no-grad."""
    from gradlint.api import check_paths
    from gradlint.config import Config

    helpers = "import torch\n\n\ndef log_probs(z):\n    return torch.log(torch.softmax(z, -1))\n"
    report = "from helpers import log_probs\n\n\ndef summarize(z):\n    return log_probs(z)\n"
    run = "import torch\nfrom report import summarize\n\n\ndef main(z):\n    with torch.no_grad():\n        return summarize(z)\n"
    (tmp_path / "pyproject.toml").write_text("")
    for name, text in (("helpers.py", helpers), ("report.py", report), ("run.py", run)):
        (tmp_path / name).write_text(text)

    def found() -> list[tuple[int, str]]:
        result = check_paths([tmp_path / "helpers.py"], Config(select=("GL302",), root=str(tmp_path)),
                             use_cache=False, jobs=1)
        assert not result.internal_errors
        return [(f.span.line, f.code) for f in result.findings]

    assert found() == []
    # the look-alike: summarize called with grad
    (tmp_path / "run.py").write_text(run.replace("    with torch.no_grad():\n        return", "    return"))
    assert found() == [(5, "GL302")]


def test_a_class_of_the_same_name_read_in_another_module_is_no_read_of_this_one():
    """`type(self) == Net` in a module with its own `Net` (denoising-diffusion-pytorch: several
    modules define a `GaussianDiffusion`) reads that class: the calls of this one stay known."""
    from gradlint.facts.callgraph import project_calls

    a = ("import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self, k=1):\n"
         "        super().__init__()\n\n\ndef make():\n    return Net(2)\n")
    b = ("import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
         "        super().__init__()\n        assert type(self) == Net\n")
    calls = project_calls(index_of({"a.py": a, "b.py": b}), "a", "Net.__init__")
    assert calls is not None and [home for home, _args in calls] == ["a"]
    # this class read as a value (a registry of it): its calls are not all known
    c = "import torch\n\nfrom a import Net\n\nFACTORIES = {'net': Net}\n"
    assert project_calls(index_of({"a.py": a, "c.py": c}), "a", "Net.__init__") is None


def test_calls_record_what_carries_no_gradient_and_what_comes_before_a_star():
    text = ("import torch\n\n\ndef f(t, u, *rest, k=None):\n    return t\n\n\n"
            "def g(x, net, rest):\n    f(torch.rand(3), x.detach())\n    f(net(x), 0.5, *rest, k=torch.zeros(2))\n")
    calls = [dict(c.args) for fn in facts(text).numerics.functions if fn.name == "g" for c in fn.calls
             if c.callee == "f"]
    assert calls[0]["0"] == "free" and calls[0]["1"] == "free"  # a fresh tensor, a cut value
    # before the star, each argument is at its place; after it, any position may be anything
    # (the output of a model handed in carries its gradient)
    assert calls[1]["0"] == "grad:dense" and calls[1]["1"] == "free" and calls[1]["k"] == "free" and "*" in calls[1]
