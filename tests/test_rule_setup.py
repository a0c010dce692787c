"""A run's shared rule setup (api.RuleSetup, relative_path's memo of folders) gives each file
what the per-file computation gives it."""

from __future__ import annotations

from pathlib import Path

from gradlint.api import RuleSetup, enabled_rules, relative_path
from gradlint.config import Config
from gradlint.registry import load_rules


def test_relative_paths_with_the_run_memo_are_those_computed_per_file(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "proj"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "m.py").write_text("")
    (root / "pkg" / "sub" / "n.py").write_text("")
    (root / "linked").symlink_to(root / "pkg" / "sub")  # a symlinked folder
    (root / "alias.py").symlink_to(root / "pkg" / "m.py")  # a symlinked file
    outside = tmp_path / "elsewhere.py"
    outside.write_text("")
    (root / "out.py").symlink_to(outside)  # a link that leaves the root
    (root / "loop").symlink_to("loop")  # a symlink loop (resolve refuses it before Python 3.13)
    monkeypatch.chdir(root)
    config = Config(root=str(root))
    paths = ["pkg/m.py", "pkg/sub/n.py", "linked/n.py", "alias.py", "out.py", "pkg/../pkg/m.py", "missing.py",
             str(root / "pkg" / "m.py"), "pkg/sub/../m.py", ".", "./pkg/m.py", "pkg//m.py", "pkg/sub/",
             str(outside), str(root), Path("pkg/m.py"), Path("linked/n.py"), "loop", "loop/x.py", str(root / "loop")]
    folders: dict = {}
    for p in paths:
        assert relative_path(p, config, folders) == relative_path(p, config), p
    # and again from the memo
    assert [relative_path(p, config, folders) for p in paths] == [relative_path(p, config) for p in paths]
    assert relative_path("linked/n.py", config, folders) == "pkg/sub/n.py"


def test_enabled_codes_and_options_of_the_setup_are_the_per_file_ones() -> None:
    config = Config(select=("GL1", "GL3"), ignore=("GL104",),
                    per_file_ignores=(("tests/*", ("GL3",)), ("legacy/", ("GL101", "GL302"))),
                    rule_options=(("GL101", (("vanishing-threshold", 1e-3),)),))
    setup = RuleSetup(config, load_rules())
    for rel in ["a.py", "tests/t.py", "legacy/x/y.py", "a.py", "tests/u.py"]:
        assert setup.enabled(rel) == enabled_rules(config, rel), rel
    assert setup.options("GL101") == config.options_for("GL101")
    given = setup.options("GL101")
    given["vanishing-threshold"] = 0.5  # a rule that changes its options changes no other file's
    assert setup.options("GL101")["vanishing-threshold"] == 1e-3
