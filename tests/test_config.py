"""[tool.gradlint] parsing: every key, origins, rule options, and errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradlint.config import DEFAULT_EXCLUDE, Config, ConfigError, load_config, parse_selector_option, with_overrides
from gradlint.findings import Severity
from tests.cli_helpers import plugin_rule, write_tree  # noqa: F401 (plugin_rule is a fixture)


def write_pyproject(folder: Path, body: str) -> Path:
    path = folder / "pyproject.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_no_config_is_all_defaults(tmp_path):
    cfg = load_config(None, tmp_path)
    assert cfg.select is None and cfg.ignore == () and cfg.exclude == DEFAULT_EXCLUDE
    assert cfg.fail_on is Severity.INFO and cfg.path is None
    assert cfg.root == str(tmp_path.resolve())
    assert cfg.origin("select") == "default"


def test_every_key_is_read_and_its_origin_recorded(tmp_path):
    path = write_pyproject(tmp_path, """
[tool.gradlint]
select = ["GL0", "GL1"]
extend-select = ["GL001"]
ignore = ["gl10"]
exclude = ["vendor"]
extend-exclude = ["gen"]
fail-on = "WARNING"
respect-gitignore = false
cache-dir = ".cache/gl"

[tool.gradlint.per-file-ignores]
"tests/*" = ["GL001"]
"legacy/" = ["GL0"]
""")
    cfg = load_config(None, tmp_path)
    assert cfg.path == str(path)
    assert cfg.select == ("GL0", "GL1") and cfg.extend_select == ("GL001",) and cfg.ignore == ("GL10",)
    assert cfg.exclude == ("vendor",) and cfg.extend_exclude == ("gen",)
    assert cfg.fail_on is Severity.WARNING and cfg.respect_gitignore is False and cfg.cache_dir == ".cache/gl"
    assert cfg.per_file_ignores == (("tests/*", ("GL001",)), ("legacy/", ("GL0",)))
    for key in ("select", "extend-select", "ignore", "exclude", "extend-exclude", "fail-on", "per-file-ignores"):
        assert cfg.origin(key) == str(path)
    assert cfg.enabled_codes() == frozenset({"GL001", "GL002", "GL003"})


def test_nearest_pyproject_with_our_table_wins(tmp_path):
    write_pyproject(tmp_path, '[tool.gradlint]\nignore = ["GL102"]\n')
    (tmp_path / "proj" / "src").mkdir(parents=True)
    write_pyproject(tmp_path / "proj", '[project]\nname = "x"\n')
    # proj/pyproject.toml has no [tool.gradlint]: the search goes on upwards.
    cfg = load_config(None, tmp_path / "proj" / "src")
    assert cfg.path == str(tmp_path / "pyproject.toml") and cfg.ignore == ("GL102",)
    assert cfg.root == str(tmp_path.resolve())


def test_explicit_config_file_with_top_level_keys(tmp_path):
    path = tmp_path / "gradlint.toml"
    path.write_text('ignore = ["GL103"]\n')
    cfg = load_config(path, tmp_path)
    assert cfg.ignore == ("GL103",) and cfg.origin("ignore") == str(path)


def test_a_standalone_file_names_its_top_level_not_a_table_it_does_not_have(tmp_path):
    # `bogus = 1` at the top of gradlint.toml was reported "in [tool.gradlint]"
    path = tmp_path / "gradlint.toml"
    for body, key in (("bogus = 1\n", "bogus"), ('[project]\nname = "x"\n', "project")):
        path.write_text(body)
        with pytest.raises(ConfigError) as info:
            load_config(path, tmp_path)
        assert str(info.value) == f"{path}: unknown key '{key}' in the file's top level (a standalone configuration)"
    path.write_text("[tool.gradlint]\nbogus = 1\n")  # a [tool] table: read as pyproject.toml is
    with pytest.raises(ConfigError, match=r"unknown key 'bogus' in \[tool.gradlint\]$"):
        load_config(path, tmp_path)
    path.write_text("tool = 3\n")
    with pytest.raises(ConfigError, match="must be a table"):
        load_config(path, tmp_path)


def test_missing_explicit_config(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", tmp_path)


@pytest.mark.parametrize("body,needle", [
    ('[tool.gradlint]\nselct = ["GL1"]\n', "unknown key 'selct'"),
    ('[tool.gradlint]\nselect = "GL0"\n', "'select' must be a list of strings"),
    ('[tool.gradlint]\nselect = ["GL9999"]\n', "'select' names unknown rule code 'GL9999'"),
    ('[tool.gradlint]\nextend-exclude = "gen"\n', "'extend-exclude' must be a list"),
    ('[tool.gradlint]\nfail-on = "fatal"\n', "'fail-on': unknown severity 'fatal'"),
    ('[tool.gradlint]\nfail-on = 3\n', "'fail-on'"),
    ('[tool.gradlint]\nrespect-gitignore = 1\n', "'respect-gitignore' must be true or false"),
    ('[tool.gradlint]\ncache-dir = 1\n', "'cache-dir' must be a string"),
    ('[tool.gradlint]\ncache-dir = ""\n', "'cache-dir' must name a folder below the project root"),
    ('[tool.gradlint]\ncache-dir = "."\n', "'cache-dir' must name a folder below the project root"),
    ('[tool.gradlint]\ncache-dir = "x\\u0000y"\n', "'cache-dir' must not hold control characters"),
    ('[tool.gradlint]\ncache-dir = "./"\n', "'cache-dir' must name a folder below the project root"),
    ('[tool.gradlint]\ncache-dir = "/tmp/abs_cache"\n', "'cache-dir' must be a folder relative to the project root"),
    ('[tool.gradlint]\ncache-dir = "../elsewhere"\n', "'cache-dir' must stay inside the project root"),
    ('[tool.gradlint]\ncache-dir = "a/../../b"\n', "'cache-dir' must stay inside the project root"),
    ('[tool.gradlint]\ncache-dir = "a\\\\..\\\\..\\\\b"\n', "'cache-dir' must stay inside the project root"),
    ('[tool.gradlint]\nmax-file-size = 0\n', "'max-file-size' must be positive"),
    ('[tool.gradlint]\nmax-file-size = "lots"\n', "'max-file-size' must be a size in bytes"),
    ('[tool.gradlint]\nmax-file-size = true\n', "'max-file-size' must be a size in bytes"),
    ('[tool.gradlint]\nmax-file-size = "2 furlongs"\n', "'max-file-size' must be a size in bytes"),
    ('[tool.gradlint]\nper-file-ignores = 1\n', "'per-file-ignores' must be a table"),
    ('[tool.gradlint.GL001]\nfoo = 1\n', "unknown option 'GL001.foo'"),
    ('[tool.gradlint.GL999]\nfoo = 1\n', "unknown key 'GL999'"),
    ('[tool]\ngradlint = 3\n', "must be a table"),
    ('[tool.gradlint\n', "invalid TOML"),
])
def test_errors_name_the_file_and_the_key(tmp_path, body, needle):
    path = write_pyproject(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path, tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and needle in message and "\n" not in message


def test_rule_options_by_code_or_name(tmp_path, plugin_rule):
    assert Config().options_for("GL990") == {"limit": 100}
    cfg = load_config(write_pyproject(tmp_path, "[tool.gradlint.GL990]\nlimit = 3\n"), tmp_path)
    assert cfg.options_for("GL990") == {"limit": 3} and cfg.origin("GL990.limit") == str(tmp_path / "pyproject.toml")
    cfg = load_config(write_pyproject(tmp_path, "[tool.gradlint.test-marker]\nlimit = 4\n"), tmp_path)
    assert cfg.options_for("GL990") == {"limit": 4}


@pytest.mark.parametrize("value", ['"3"', "0", "-1", "true", "1.5"])
def test_bad_rule_option_value(tmp_path, plugin_rule, value):
    path = write_pyproject(tmp_path, f"[tool.gradlint.GL990]\nlimit = {value}\n")
    with pytest.raises(ConfigError, match=r"'GL990\.limit': expected a positive integer"):
        load_config(path, tmp_path)


def test_command_line_overrides_record_their_flag():
    cfg = with_overrides(Config(), select=(("GL0",), "--select"), fail_on=(Severity.ERROR, "--fail-on"), ignore=(None, "--ignore"))
    assert cfg.select == ("GL0",) and cfg.origin("select") == "--select"
    assert cfg.origin("fail-on") == "--fail-on" and cfg.origin("ignore") == "default"


def test_selector_option_parsing():
    assert parse_selector_option(("GL001,gl002", " GL0 ", ""), "--select") == ("GL001", "GL002", "GL0")
    with pytest.raises(ConfigError, match="--ignore: unknown rule code 'XYZ'"):
        parse_selector_option(("GL101,XYZ",), "--ignore")


@pytest.mark.parametrize("relpath,ignored", [
    ("tests/test_a.py", ("GL001",)),
    ("tests/sub/test_b.py", ("GL001",)),  # fnmatch's * crosses folders, as in ruff's globs
    ("legacy/x.py", ("GL0",)),
    ("src/conftest.py", ("GL002",)),
    ("src/model.py", ()),
])
def test_per_file_ignore_patterns(relpath, ignored):
    cfg = Config(per_file_ignores=(("tests/*", ("GL001",)), ("legacy/", ("GL0",)), ("conftest.py", ("GL002",))))
    assert cfg.ignored_codes_for(relpath) == ignored


@pytest.mark.parametrize("value, expected", [
    ('"gl"', "gl"), ('"./.cache//gl/"', ".cache/gl"), ('"a/./b"', "a/b"),
])
def test_cache_dir_is_normalised_below_the_root(tmp_path, value, expected):
    write_pyproject(tmp_path, f"[tool.gradlint]\ncache-dir = {value}\n")
    assert load_config(None, tmp_path).cache_dir == expected


@pytest.mark.parametrize("value, expected", [
    ("1000", 1000), ('"512KB"', 512 << 10), ('"2 MiB"', 2 << 20), ('"1g"', 1 << 30), ('"300"', 300),
])
def test_max_file_size_accepts_bytes_and_units(tmp_path, value, expected):
    write_pyproject(tmp_path, f"[tool.gradlint]\nmax-file-size = {value}\n")
    cfg = load_config(None, tmp_path)
    assert cfg.max_file_size == expected and cfg.origin("max-file-size") == str(tmp_path / "pyproject.toml")


def test_max_file_size_default_is_a_few_mb():
    assert Config().max_file_size == 2 << 20


def test_a_bad_cache_dir_is_exit_2_naming_file_and_key(tmp_path):
    from tests.cli_helpers import assert_one_line_error
    from tests.conftest import run_cli

    write_pyproject(tmp_path, '[tool.gradlint]\ncache-dir = "/tmp/x"\n')
    (tmp_path / "m.py").write_text("import torch\n")
    proc = run_cli("check", ".", cwd=tmp_path)
    assert_one_line_error(proc, str(tmp_path / "pyproject.toml"), "'cache-dir'")
    assert not Path("/tmp/x").exists() or not list(Path("/tmp/x").glob("*.json*"))  # entries: p-*.jsonl packs


# --- a configuration file that cannot be read --------------------------------------------------
# A pyproject.toml that is a folder, a FIFO, a broken link or unreadable was skipped in silence:
# the defaults applied and `gradlint config` said "none found (defaults)". It may hold the user's
# settings, so it is a broken configuration: an error naming it and why.

def _unreadable(monkeypatch, name: str) -> None:
    """Opening a file called `name` fails as a file without read permission does (we run as root,
    which chmod does not stop)."""
    import os

    import gradlint.inputs

    real_open = os.open

    def fake_open(path, *args, **kwargs):
        if os.fspath(path).endswith(name):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(gradlint.inputs.os, "open", fake_open)


def _broken_pyproject(tmp_path: Path, kind: str, monkeypatch) -> tuple[Path, str]:
    import os

    path = tmp_path / "pyproject.toml"
    if kind == "folder":
        path.mkdir()
        return path, "not a regular file (a directory)"
    if kind == "fifo":
        os.mkfifo(path)
        return path, "not a regular file (a FIFO)"
    if kind == "broken link":
        path.symlink_to(tmp_path / "gone.toml")
        return path, f"a broken symbolic link (to {str(tmp_path / 'gone.toml')!r})"
    if kind == "link loop":
        path.symlink_to(path)
        return path, "symbolic link loop"
    write_pyproject(tmp_path, '[tool.gradlint]\nignore = ["GL102"]\n')
    _unreadable(monkeypatch, "pyproject.toml")
    return path, "Permission denied"


@pytest.mark.parametrize("kind", ["folder", "fifo", "broken link", "link loop", "unreadable"])
def test_a_pyproject_that_cannot_be_read_is_an_error_naming_it(tmp_path, monkeypatch, kind):
    path, why = _broken_pyproject(tmp_path, kind, monkeypatch)
    (tmp_path / "sub").mkdir()
    for start in (tmp_path, tmp_path / "sub"):  # (found from below too)
        with pytest.raises(ConfigError) as info:
            load_config(None, start)
        assert str(info.value) == f"{path}: cannot read: {why}"


@pytest.mark.parametrize("kind", ["folder", "fifo", "broken link", "unreadable"])
def test_a_config_file_given_that_cannot_be_read_says_what_it_is(tmp_path, monkeypatch, kind):
    path, why = _broken_pyproject(tmp_path, kind, monkeypatch)
    with pytest.raises(ConfigError) as info:
        load_config(path, tmp_path)
    assert str(info.value) == f"{path}: cannot read: {why}"


def test_dev_null_as_config_is_named_a_device_not_missing(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config("/dev/null", tmp_path)
    assert str(info.value) == "/dev/null: cannot read: not a regular file (a character device)"


def test_gradlint_config_names_a_pyproject_it_cannot_read_instead_of_none_found(tmp_path):
    import os

    from tests.cli_helpers import assert_one_line_error
    from tests.conftest import run_cli

    (tmp_path / "m.py").write_text("import torch\n")
    os.mkfifo(tmp_path / "pyproject.toml")  # (the subprocess would block forever opening it)
    for args in (("config",), ("check", "--no-cache", "."), ("model", ".")):
        proc = run_cli(*args, cwd=tmp_path)
        assert_one_line_error(proc, str(tmp_path / "pyproject.toml"), "not a regular file (a FIFO)")
    proc = run_cli("check", "--no-cache", "--config", "/dev/null", ".", cwd=tmp_path)
    assert_one_line_error(proc, "/dev/null: cannot read: not a regular file (a character device)")


def test_a_nested_folder_whose_pyproject_cannot_be_read_is_an_error_and_the_rest_is_checked(tmp_path):
    from tests.conftest import run_cli

    (tmp_path / "m.py").write_text("import torch\n")
    (tmp_path / "sub" / "pyproject.toml").mkdir(parents=True)
    (tmp_path / "sub" / "n.py").write_text("import torch\n")
    proc = run_cli("check", "--no-cache", ".", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "sub: not checked: sub/pyproject.toml: cannot read: not a regular file (a directory)" in proc.stderr
    assert "1 file checked" in proc.stdout, proc.stdout


def test_a_pyproject_that_never_names_gradlint_is_still_not_ours(tmp_path):
    # (what stays as it was: another tool's pyproject, even a broken one, is not read as ours)
    write_pyproject(tmp_path, "tool = 3\n")
    assert load_config(None, tmp_path).path is None
    write_pyproject(tmp_path, "[tool.black\n")
    assert load_config(None, tmp_path).path is None


# --- rule options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("second", ["vanishing-gradient", "gl101"])
def test_one_rules_options_in_two_tables_is_an_error_naming_both(tmp_path, second):
    # [GL101] and [vanishing-gradient] (the same rule by code and by name) were both accepted:
    # the last table's options won in silence
    path = write_pyproject(tmp_path, "[tool.gradlint.GL101]\nvanishing-threshold = 1e-4\n"
                                     f"[tool.gradlint.{second}]\nvanishing-threshold = 1e-5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, tmp_path)
    assert str(info.value) == (f"{path}: 'GL101' and '{second}' both hold the options of GL101 vanishing-gradient: "
                               "keep one table")


def test_two_rules_tables_of_different_rules_are_fine(tmp_path):
    path = write_pyproject(tmp_path, "[tool.gradlint.GL101]\nvanishing-threshold = 1e-4\n"
                                     "[tool.gradlint.exploding-gradient]\nexploding-threshold = 1e4\n")
    cfg = load_config(path, tmp_path)
    assert cfg.options_for("GL101")["vanishing-threshold"] == 1e-4
    assert cfg.options_for("GL102")["exploding-threshold"] == 1e4


@pytest.mark.parametrize("body, needle", [
    ("[tool.gradlint]\nGL101 = 5\n", "'GL101' must be a table of GL101 vanishing-gradient's options "
                                     "([tool.gradlint.GL101]), got 5"),
    ('[tool.gradlint]\nvanishing-gradient = "1e-4"\n', "'vanishing-gradient' must be a table of GL101 "
                                                       "vanishing-gradient's options ([tool.gradlint.vanishing-gradient])"),
])
def test_rule_options_that_are_not_a_table_say_so_not_unknown_key(tmp_path, body, needle):
    # `GL101 = 5` was reported as "unknown key 'GL101'": the key is known, its value is wrong
    path = write_pyproject(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path, tmp_path)
    assert str(info.value).startswith(f"{path}: {needle}")


def test_rule_options_not_a_table_in_a_standalone_file_name_its_own_header(tmp_path):
    path = tmp_path / "gradlint.toml"
    path.write_text("GL101 = [1]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, tmp_path)
    assert str(info.value) == f"{path}: 'GL101' must be a table of GL101 vanishing-gradient's options ([GL101]), got [1]"


# --- glob patterns --------------------------------------------------------------------------------
# fnmatch takes any string, so an exclude or per-file-ignores pattern that can never match (a
# range written backwards, as a bad .gitignore line is) was accepted and did nothing.

@pytest.mark.parametrize("pattern, problem", [
    ("[z-a]", "the range z-a is written backwards: it holds no character"),
    ("[!z-a]", "the range z-a is written backwards: it holds no character"),
    ("src/[a-cz-a]*.py", "the range z-a is written backwards: it holds no character"),
    ("[]z-a]", "the range z-a is written backwards: it holds no character"),
    ("", "an empty pattern matches no path"),
    ("[a-z]*", None), ("[-a]", None), ("[a-]", None), ("[z-a", None), ("[a-c-e]", None), ("tests/*", None),
    ("legacy/", None), ("[!]-a]", None),
])
def test_pattern_problems_as_fnmatch_reads_the_pattern(pattern, problem):
    import fnmatch

    from gradlint.config import pattern_problem

    assert pattern_problem(pattern) == problem
    if problem is None:  # (fnmatch's never-matching bracket is none of these)
        assert "(?!)" not in fnmatch.translate(pattern)


@pytest.mark.parametrize("body, key", [
    ('[tool.gradlint]\nexclude = ["build", "[z-a]"]\n', "exclude"),
    ('[tool.gradlint]\nextend-exclude = [""]\n', "extend-exclude"),
    ('[tool.gradlint.per-file-ignores]\n"[z-a]" = ["GL302"]\n', "per-file-ignores"),
])
def test_a_pattern_that_can_never_match_is_an_error_naming_file_key_and_pattern(tmp_path, body, key):
    path = write_pyproject(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path, tmp_path)
    assert str(info.value).startswith(f"{path}: '{key}': pattern ")


@pytest.mark.parametrize("flag", ["--exclude", "--extend-exclude"])
def test_a_pattern_flag_that_can_never_match_is_a_one_line_error(tmp_path, flag):
    from tests.cli_helpers import assert_one_line_error
    from tests.conftest import run_cli

    (tmp_path / "m.py").write_text("import torch\n")
    proc = run_cli("check", "--no-cache", flag, "gen,[z-a]", ".", cwd=tmp_path)
    assert_one_line_error(proc, f"{flag}: pattern '[z-a]': the range z-a is written backwards")


# --- library-paths --------------------------------------------------------------------------------
# A library-paths folder that is not there was silent. It stays no error (one file serves
# machines with and without a virtual environment), but each run says so.

def test_a_library_path_that_is_not_a_folder_is_a_warning_naming_file_and_folder(tmp_path):
    (tmp_path / "vendor").mkdir()
    (tmp_path / "file.py").write_text("")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    path = write_pyproject(tmp_path, '[tool.gradlint]\nlibrary-paths = ["vendor", "missing", "file.py", "dangling"]\n')
    from gradlint.config import config_warnings

    cfg = load_config(None, tmp_path)  # (not an error)
    root = tmp_path.resolve()
    assert config_warnings(cfg) == [
        f"{path}: 'library-paths': {root / 'missing'} does not exist; no library is read from it",
        f"{path}: 'library-paths': {root / 'file.py'} is not a folder (a regular file); no library is read from it",
        f"{path}: 'library-paths': {root / 'dangling'} is a broken symbolic link; no library is read from it",
    ]
    assert config_warnings(Config()) == []


def test_check_model_config_and_stdin_warn_of_a_missing_library_path_and_still_run(tmp_path):
    from tests.conftest import run_cli

    path = write_pyproject(tmp_path, '[tool.gradlint]\nlibrary-paths = ["nonexistent_vendor"]\n')
    (tmp_path / "m.py").write_text("import torch\n")
    warning = (f"gradlint: warning: {path}: 'library-paths': {tmp_path.resolve() / 'nonexistent_vendor'} "
               "does not exist; no library is read from it")
    for args, code in ((("check", "--no-cache", "."), 0), (("model", "."), 0), (("config",), 0),
                       (("check", "--no-cache", "--stdin-filename", "m.py", "-"), 0)):
        proc = run_cli(*args, cwd=tmp_path, input="import torch\n")
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        assert proc.stderr.count(warning) == 1, (args, proc.stderr)
