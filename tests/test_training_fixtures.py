"""Training-loop fixtures: each `# expect: GL2xx` comment is a finding on that line, and there are no others."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradlint.api import check_paths
from gradlint.config import Config

ROOT = Path(__file__).resolve().parent.parent
TRAINING = ROOT / "fixtures" / "training"
EXPECT = re.compile(r"#\s*expect:\s*([A-Z0-9,\s]+)")

CASES = sorted(p for p in TRAINING.glob("*.py"))


def expectations(path: Path) -> set[tuple[int, str]]:
    out = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        m = EXPECT.search(line)
        if m:
            out |= {(number, code.strip()) for code in m.group(1).split(",") if code.strip()}
    return out


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_fixture_expectations(path):
    config = Config(select=("GL2",), root=str(TRAINING))
    result = check_paths([path], config, use_cache=False, jobs=1)
    assert not result.internal_errors, result.internal_errors[0].internal_error
    found = {(f.span.line, f.code) for f in result.findings}
    assert found == expectations(path), [f"{f.span.line}: {f.code} {f.message}" for f in result.findings]


@pytest.mark.parametrize("name", ["crossfile", "crossfile_scaler", "crossfile_clip", "crossfile_trainer",
                                  "crossfile_config", "global_config", "crossfile_helpers", "lightning_mixin_clip",
                                  "crossfile_blocks"])
def test_cross_file_fixture(name):
    folder = TRAINING / name
    config = Config(select=("GL2",), root=str(folder))
    result = check_paths([folder], config, use_cache=False, jobs=1)
    found = {(Path(f.path).name, f.span.line, f.code) for f in result.findings}
    expected = {(p.name, line, code) for p in folder.glob("*.py") for line, code in expectations(p)}
    assert expected and found == expected
    # train.py alone reads the other module through its import: the same findings
    alone = check_paths([folder / "train.py"], config, use_cache=False, jobs=1)
    assert alone.findings and alone.findings == [f for f in result.findings if f.path == alone.findings[0].path]


def test_every_training_rule_has_a_fixture():
    expected = {code for p in CASES for _, code in expectations(p)}
    assert {"GL201", "GL202", "GL203", "GL204", "GL205", "GL206", "GL207"} <= expected


def test_a_global_config_is_quiet_only_when_another_module_names_its_field(tmp_path):
    # global_config without launch.py: nothing sets `tuned.tuned_clip`, so its 0 is reported too
    source = (TRAINING / "global_config" / "train.py").read_text()
    (tmp_path / "train.py").write_text(source)
    config = Config(select=("GL2",), root=str(tmp_path))
    lines = {f.span.line for f in check_paths([tmp_path], config, use_cache=False, jobs=1).findings}
    clip = [n for n, line in enumerate(source.splitlines(), 1) if "clip_grad_norm_" in line]
    assert lines == set(clip)
    # a module that only imports it, without naming the field, changes nothing
    (tmp_path / "launch.py").write_text("import train\n\ntrain.train_tuned(None, [])\n")
    assert {f.span.line for f in check_paths([tmp_path], config, use_cache=False, jobs=1).findings} == set(clip)


def test_a_global_config_is_quiet_only_for_a_module_that_imports_it(tmp_path):
    # a file that names the field but does not import the config's module changes nothing: a
    # comment, a longer attribute name, another object's field of that name (review 14)
    source = (TRAINING / "global_config" / "train.py").read_text()
    (tmp_path / "train.py").write_text(source)
    (tmp_path / "notes.py").write_text("# opts.clip_norm_type and cfg.tuned_clip are set elsewhere\n"
                                       "class Opts:\n    tuned_clip = 1.0\n\n\nopts = Opts()\nopts.tuned_clip = 2.0\n")
    config = Config(select=("GL2",), root=str(tmp_path))
    clip = [n for n, line in enumerate(source.splitlines(), 1) if "clip_grad_norm_" in line]
    assert {f.span.line for f in check_paths([tmp_path], config, use_cache=False, jobs=1).findings} == set(clip)
    # `from train import tuned` then a change of its field: quiet, as with `import train`
    (tmp_path / "tune.py").write_text("from train import tuned\n\ntuned.tuned_clip = 1.0\n")
    assert {f.span.line for f in check_paths([tmp_path], config, use_cache=False, jobs=1).findings} == {clip[0]}


def test_a_config_built_under_the_main_guard_is_no_shared_global(tmp_path):
    # no import runs `if __name__ == "__main__":`, so no other module can change that config first
    (tmp_path / "train.py").write_text(
        "from dataclasses import dataclass\n\nimport torch\nimport torch.nn.functional as F\n\n\n"
        "@dataclass\nclass RunConfig:\n    clip_norm: float = 0.0\n\n\n"
        "if __name__ == \"__main__\":\n    cfg = RunConfig()\n    model = torch.nn.Linear(4, 1)\n"
        "    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n    for x, y in []:\n"
        "        loss = F.mse_loss(model(x), y)\n        opt.zero_grad()\n        loss.backward()\n"
        "        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)\n        opt.step()\n")
    (tmp_path / "other.py").write_text("import train\n\nargs = object()\nprint(args.clip_norm)\n")
    config = Config(select=("GL2",), root=str(tmp_path))
    found = check_paths([tmp_path], config, use_cache=False, jobs=1).findings
    assert [(f.code, f.span.line) for f in found] == [("GL204", 20)]


def test_a_clipping_helper_of_another_module_is_a_clip_in_a_project_of_its_own(tmp_path):
    # crossfile_helpers as its own project (pyproject.toml at its root, where `from hooks import`
    # resolves): `do_clip(model.parameters(), 1.0)`, a helper of hooks.py that calls
    # clip_grad_norm_, clips; helpers that only log or measure (an infinite threshold) do not
    for f in (TRAINING / "crossfile_helpers").glob("*.py"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "pyproject.toml").write_text("")
    config = Config(select=("GL2",), root=str(tmp_path))
    found = {(f.span.line, f.code) for f in check_paths([tmp_path], config, use_cache=False, jobs=1).findings}
    assert found == expectations(tmp_path / "train.py") and len(found) == 9
    alone = check_paths([tmp_path / "train.py"], config, use_cache=False, jobs=1)
    assert {(f.span.line, f.code) for f in alone.findings} == found


@pytest.mark.parametrize("name", ["cleared_by_callbacks.py", "scaled_threshold.py"])
def test_fixture_expectations_in_a_project_of_its_own(tmp_path, name):
    # the fixture alone in a project (a pyproject.toml beside it): no other fixture's names or
    # classes take part in what is resolved
    (tmp_path / name).write_text((TRAINING / name).read_text())
    (tmp_path / "pyproject.toml").write_text("")
    result = check_paths([tmp_path], Config(select=("GL2",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    assert {(f.span.line, f.code) for f in result.findings} == expectations(tmp_path / name)


def test_a_config_every_caller_passes_decides_the_threshold(tmp_path):
    # crossfile_config_param: engine.py's loops read `settings.grad_clip` of their parameter;
    # main.py (no backward, no clip: its loop facts are read only when a search for callers
    # reaches it) passes RunSettings() with its default of 0 to one loop, SafeSettings() to the other
    folder = TRAINING / "crossfile_config_param"
    config = Config(select=("GL2",), root=str(folder))
    expected = expectations(folder / "engine.py")
    assert len(expected) == 1
    for paths in ([folder], [folder / "engine.py"]):
        result = check_paths(paths, config, use_cache=False, jobs=1)
        assert not result.internal_errors
        assert {(f.span.line, f.code) for f in result.findings} == expected
        assert "of the config every caller passes" in result.findings[0].message


def test_a_passed_config_is_read_again_when_its_class_changes(tmp_path):
    # cached: the caller's facts depend on the file that defines the config class
    for f in (TRAINING / "crossfile_config_param").glob("*.py"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "pyproject.toml").write_text("")
    config = Config(select=("GL2",), root=str(tmp_path))

    def found() -> list[str]:
        result = check_paths([tmp_path / "engine.py"], config, use_cache=True, jobs=1)
        assert not result.internal_errors
        return [f.code for f in result.findings]

    assert found() == found() == ["GL204"]
    settings = tmp_path / "settings.py"
    settings.write_text(settings.read_text().replace("grad_clip: float = 0.0", "grad_clip: float = 2.0"))
    assert found() == []
    main = tmp_path / "main.py"
    settings.write_text(settings.read_text().replace("grad_clip: float = 2.0", "grad_clip: float = 0.0"))
    assert found() == ["GL204"]
    main.write_text(main.read_text().replace("RunSettings())", "RunSettings(grad_clip=1.0))"))
    assert found() == []
