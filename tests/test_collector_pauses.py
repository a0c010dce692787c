"""Where the runner keeps Python's cyclic collector out of the way: while a re-run of another
file's class parses and lowers it (its trees stay alive for the run), as a pooled run's facts come
in and once they are all in, and at the exit of a `gradlint check` process (the memory is given
back whole). Each pause ends as it began."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from gradlint.source import rerun
from gradlint.source.index import ProjectFiles

ROOT = Path(__file__).resolve().parents[1]

BLOCK = """import torch.nn as nn


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        return self.fc(x)
"""


def test_a_rerun_parses_and_lowers_with_the_collector_at_rest(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "blocks.py").write_text(BLOCK)
    seen: list[bool] = []
    real = rerun.lower_class

    def lower_class(src, name, args):
        seen.append(gc.isenabled())
        return real(src, name, args)

    monkeypatch.setattr(rerun, "lower_class", lower_class)
    files = ProjectFiles(tmp_path, extract=lambda path: None)  # type: ignore[arg-type,return-value]
    assert gc.isenabled()
    network = files.lower("blocks", "blocks.py", "Block", ((0, (8,)),))
    assert seen == [False] and gc.isenabled()
    assert [p.fan_in for p in network.params] == [8]  # the caller's width reached the layer
    # a collector someone else turned off stays off
    gc.disable()
    try:
        files.lower("blocks", "blocks.py", "Block", ((0, (16,)),))
        assert seen == [False, False] and not gc.isenabled()
    finally:
        gc.enable()


def test_a_check_process_collects_nothing_at_exit(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(BLOCK)
    # Garbage in a cycle, made after the check: Python's exit pass would free it (and say so);
    # frozen at exit, it is left to the operating system.
    script = (
        "import sys\n"
        "from gradlint.cli import main\n"
        "class Cycle:\n"
        "    def __del__(self):\n"
        "        print('collected at exit', flush=True)\n"
        "try:\n"
        f"    main.main(['check', '--no-cache', {str(tmp_path / 'm.py')!r}], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "a, b = Cycle(), Cycle()\n"
        "a.other, b.other = b, a\n"
        "del a, b\n"
        "import gc\n"
        "gc.disable()\n"  # not before exit, either
        "print('checked', flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "checked" in out.stdout and "All checks passed" in out.stdout + out.stderr
    assert "collected at exit" not in out.stdout


def test_a_pooled_check_resumes_the_collector_with_the_facts_frozen_and_ends_as_it_began(
        tmp_path: Path, monkeypatch) -> None:
    # The facts of a pooled run come in with the collector paused; resumed with them among its
    # young objects, its first pass went through every one of them (0.3 s over 2 000 small files)
    # at the end of the run. They are frozen with what the run keeps, then unfrozen with it.
    import threading

    from gradlint.api import check_paths
    from gradlint.config import load_config

    (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\n")
    for i in range(40):
        (tmp_path / f"m{i}.py").write_text(BLOCK)
    assert gc.isenabled() and not gc.get_freeze_count()
    resumed = []
    real_enable = gc.enable

    def enable() -> None:
        resumed.append((threading.current_thread().name, gc.get_freeze_count()))
        real_enable()

    monkeypatch.setattr(gc, "enable", enable)
    result = check_paths([tmp_path], load_config(start=tmp_path), use_cache=False, jobs=2)
    assert len(result.files) == 40 and not any(f.error for f in result.files)
    assert ("gradlint-facts", True) in [(name, frozen > 0) for name, frozen in resumed]
    assert gc.isenabled() and not gc.get_freeze_count()


def test_a_pooled_check_that_fails_leaves_nothing_frozen_when_its_facts_come_in_later(
        tmp_path: Path, monkeypatch) -> None:
    # The rules fail on the first file while the workers still extract the others: the run's
    # thread resumes the collector after check_paths is gone, and freezes nothing then.
    import threading

    from gradlint import api
    from gradlint.config import load_config

    (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\n")
    for i in range(40):
        (tmp_path / f"m{i}.py").write_text(BLOCK)

    def failing(*_args, **_kwargs):
        raise RuntimeError("a rule failed")

    monkeypatch.setattr(api, "run_rules", failing)
    try:
        api.check_paths([tmp_path], load_config(start=tmp_path), use_cache=False, jobs=2)
    except RuntimeError:
        pass
    for thread in threading.enumerate():
        if thread.name == "gradlint-facts":
            thread.join(timeout=120)
    assert gc.isenabled() and not gc.get_freeze_count()
