"""Jupyter notebooks: code cells checked (magics and shell escapes kept out of the parser),
findings located by cell in every format, fixes written back with the notebook's own JSON
layout. Goldens in fixtures/notebooks/goldens: `GRADLINT_BLESS=1 pytest tests/test_notebooks.py`
rewrites them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gradlint.notebook import Notebook, virtual_source, write_back
from tests.cli_helpers import gradlint, write_tree
from tests.conftest import FIXTURES, ROOT, SARIF_SCHEMA
from tests.test_report_golden import normalise

NOTEBOOK = FIXTURES / "notebooks" / "model.ipynb"
GOLDENS = FIXTURES / "notebooks" / "goldens"
DEEP = ("class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.body = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(256, 256), nn.Sigmoid())])\n\n"
        "    def forward(self, x):\n        return self.body(x)\n")


def notebook(*cells: tuple[str, str], indent: int | None = 1, language: str = "python") -> str:
    data = {
        "cells": [{"cell_type": kind, "execution_count": None, "metadata": {"id": f"c{i}"}, "outputs": [],
                   "source": src.splitlines(keepends=True)} if kind == "code" else
                  {"cell_type": kind, "metadata": {}, "source": src.splitlines(keepends=True)}
                  for i, (kind, src) in enumerate(cells)],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": language, "name": "python3"},
                     "language_info": {"name": language}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n"


def assert_golden(name: str, actual: str) -> None:
    import os

    path = GOLDENS / name
    if os.environ.get("GRADLINT_BLESS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.read_text(encoding="utf-8") == actual, f"{name} differs (re-bless with GRADLINT_BLESS=1 if intended)"


def test_virtual_source_keeps_line_numbers_and_blanks_magics():
    nb = Notebook.parse(NOTEBOOK.read_bytes())
    text, cells = virtual_source(nb)
    # the markdown cell (1) and the %%bash cell (3) are not Python; cells count from 1 among all cells
    assert [c.cell for c in cells.cells] == [2, 4, 5]
    lines = text.splitlines()
    assert "%matplotlib" not in text and "!pip" not in text and "!ls" not in text and "echo hi" not in text
    line = cells.virtual_line(5, 3)
    assert lines[line - 1] == "    return torch.log(torch.softmax(z, dim=-1))"
    assert cells.locate(line) == (5, 3)
    # the magic inside a function body keeps the body valid Python
    compile(text, "nb", "exec")


def test_write_back_without_changes_is_byte_identical():
    raw = NOTEBOOK.read_text(encoding="utf-8")
    nb = Notebook.parse(raw)
    text, _ = virtual_source(nb)
    assert write_back(nb, text) == raw


@pytest.mark.parametrize("indent", [1, 2, 4])
def test_write_back_keeps_layout_for_any_indent(indent):
    raw = notebook(("code", "import torch\n%time x = 1\ny = 2"), ("markdown", "é"), indent=indent)
    nb = Notebook.parse(raw)
    text, _ = virtual_source(nb)
    new = write_back(nb, text.replace("y = 2", "y = 3"))
    assert new == raw.replace('"y = 2"', '"y = 3"')


def test_write_back_keeps_crlf_line_ends_and_a_byte_order_mark():
    raw = notebook(("code", "import torch\ny = 2\n")).replace("\n", "\r\n")
    nb = Notebook.parse(b"\xef\xbb\xbf" + raw.encode("utf-8"))
    text, _ = virtual_source(nb)
    assert write_back(nb, text.replace("y = 2", "y = 3")) == "\ufeff" + raw.replace('"y = 2', '"y = 3')


def _swap(text: str, a: str, b: str) -> str:
    lines = text.splitlines(keepends=True)
    i = next(k for k, x in enumerate(lines) if a in x)
    j = next(k for k, x in enumerate(lines) if b in x)
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


def test_write_back_refuses_magics_a_fix_reordered_or_reindented():
    """Magics were put back by order alone: a fix that moved one past another swapped them (and
    the cell no longer ran). Each stand-in is numbered: a fix that moves one is refused, a fix
    that adds or removes lines around them is not."""
    from gradlint.notebook import NotebookError

    raw = notebook(("code", "import torch\n!echo one\nfor i in range(2):\n    !echo two\n    y = i\n"))
    nb = Notebook.parse(raw)
    text, _ = virtual_source(nb)
    assert write_back(nb, text.replace("    y = i\n", "    y = i\n    z = i\n")) == raw.replace(
        '"    y = i\\n"', '"    y = i\\n",\n    "    z = i\\n"')
    with pytest.raises(NotebookError, match="moved an IPython magic"):
        write_back(nb, _swap(text, "magic 0", "magic 1"))
    with pytest.raises(NotebookError, match="moved an IPython magic"):
        write_back(nb, text.replace("    pass  # gradlint-notebook-magic 1", "pass  # gradlint-notebook-magic 1"))
    with pytest.raises(NotebookError, match="removed an IPython magic"):
        write_back(nb, text.replace("    pass  # gradlint-notebook-magic 1\n", ""))


@pytest.mark.parametrize("fmt", ["text", "full", "json", "sarif", "github"])
def test_notebook_findings_are_located_by_cell_in_every_format(tmp_path, fmt):
    shutil.copyfile(NOTEBOOK, tmp_path / "model.ipynb")
    proc = gradlint("check", "--format", fmt, "model.ipynb", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    ext = {"json": "json", "sarif": "sarif"}.get(fmt, "txt")
    assert_golden(f"model.{fmt}.{ext}", normalise(proc.stdout, fmt, tmp_path))


def test_text_location_is_path_cell_line_column(tmp_path):
    shutil.copyfile(NOTEBOOK, tmp_path / "model.ipynb")
    lines = gradlint("check", "model.ipynb", cwd=tmp_path).stdout.splitlines()
    assert lines[0].startswith("model.ipynb:cell 4:4:68: GL101 ")
    assert lines[1].startswith("model.ipynb:cell 5:3:12: GL302 [*] ")


def test_json_and_sarif_keep_the_notebook_path_and_a_cell_index(tmp_path):
    import jsonschema

    shutil.copyfile(NOTEBOOK, tmp_path / "model.ipynb")
    items = json.loads(gradlint("check", "--format", "json", "model.ipynb", cwd=tmp_path).stdout)
    assert [(i["cell"], i["location"]["row"], i["code"]) for i in items] == [(4, 4, "GL101"), (5, 3, "GL302")]
    assert all(i["filename"].endswith("model.ipynb") for i in items)
    # the fix's edit is in the cell's lines too
    assert items[1]["fix"]["edits"][0]["location"]["row"] == 3
    doc = json.loads(gradlint("check", "--format", "sarif", "model.ipynb", cwd=tmp_path).stdout)
    jsonschema.validate(doc, json.loads(SARIF_SCHEMA.read_text()))
    results = doc["runs"][0]["results"]
    assert [r["properties"]["cell"] for r in results] == [4, 5]
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results} == {"model.ipynb"}


def test_fix_writes_back_into_the_cell_and_keeps_everything_else(tmp_path):
    target = tmp_path / "model.ipynb"
    shutil.copyfile(NOTEBOOK, target)
    before = target.read_text(encoding="utf-8")
    proc = gradlint("check", "--fix", "model.ipynb", cwd=tmp_path)
    after = target.read_text(encoding="utf-8")
    assert "(1 fixed, 1 remaining" in proc.stdout, proc.stdout + proc.stderr
    assert after == before.replace('"    return torch.log(torch.softmax(z, dim=-1))\\n"',
                                   '"    return torch.log_softmax(z, dim=-1)\\n"')
    data = json.loads(after)
    assert data["cells"][1]["source"][0] == "%matplotlib inline\n"  # magics back in place
    assert data["cells"][4]["source"][1] == "    files = !ls\n"
    assert data["cells"][4]["outputs"][0]["text"] == ["é\n"] and data["cells"][1]["metadata"] == {"tags": ["x"]}
    again = gradlint("check", "--fix", "model.ipynb", cwd=tmp_path)
    assert target.read_text(encoding="utf-8") == after and "fixed" not in again.stdout


def test_diff_on_a_notebook_writes_nothing(tmp_path):
    target = tmp_path / "model.ipynb"
    shutil.copyfile(NOTEBOOK, target)
    proc = gradlint("check", "--diff", "model.ipynb", cwd=tmp_path)
    assert proc.returncode == 1 and "+    \"    return torch.log_softmax(z, dim=-1)\\n\"" in proc.stdout
    assert target.read_bytes() == NOTEBOOK.read_bytes()


def test_folders_pick_notebooks_up(tmp_path):
    write_tree(tmp_path, {"nb/a.ipynb": notebook(("code", "import torch.nn as nn\n" + DEEP))})
    proc = gradlint("check", ".", cwd=tmp_path)
    assert proc.returncode == 1 and "nb/a.ipynb:cell 1:5:68: GL101" in proc.stdout


def test_noqa_in_a_cell_suppresses(tmp_path):
    src = "import torch.nn as nn\n" + DEEP.replace("nn.Sigmoid())])", "nn.Sigmoid())])  # noqa: GL101")
    write_tree(tmp_path, {"a.ipynb": notebook(("code", src))})
    assert gradlint("check", "a.ipynb", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("content,needle", [
    ("{not json", "not a readable notebook"),
    ('{"cells": 3}', "no list of cells"),
])
def test_broken_notebook_is_gl001_and_other_files_are_checked(tmp_path, content, needle):
    write_tree(tmp_path, {"bad.ipynb": content, "good.ipynb": notebook(("code", "import torch.nn as nn\n" + DEEP))})
    proc = gradlint("check", ".", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert any(line.startswith("bad.ipynb:1:1: GL001") and needle in line for line in proc.stdout.splitlines())
    assert "good.ipynb:cell 1:" in proc.stdout


def test_syntax_error_in_a_cell_is_located_in_that_cell(tmp_path):
    write_tree(tmp_path, {"a.ipynb": notebook(("code", "import torch\n"), ("code", "x = 1\ndef f(:\n  pass\n"))})
    proc = gradlint("check", "a.ipynb", cwd=tmp_path)
    assert proc.stdout.startswith("a.ipynb:cell 2:2:"), proc.stdout


def test_non_python_notebook_is_skipped_with_a_warning(tmp_path):
    write_tree(tmp_path, {"r.ipynb": notebook(("code", "library(torch)\n"), language="R")})
    proc = gradlint("check", "r.ipynb", cwd=tmp_path)
    assert proc.returncode == 0 and "r.ipynb: skipped: a notebook in 'r', not Python" in proc.stderr  # (not "a R notebook")


def test_stdin_notebook(tmp_path):
    from tests.conftest import run_cli

    proc = run_cli("check", "--no-cache", "--stdin-filename", "nb.ipynb", "--format", "json", "-",
                   cwd=tmp_path, input=NOTEBOOK.read_text(encoding="utf-8"))
    assert proc.returncode == 1, proc.stderr
    assert [(i["cell"], i["code"]) for i in json.loads(proc.stdout)] == [(4, "GL101"), (5, "GL302")]


def test_pre_commit_hook_covers_notebooks():
    import re

    import yaml

    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert re.search(hook["files"], "analysis/explore.ipynb")



def test_stdin_notebook_fix_prints_the_fixed_notebook(tmp_path):
    from tests.conftest import run_cli

    raw = NOTEBOOK.read_text(encoding="utf-8")
    proc = run_cli("check", "--no-cache", "--stdin-filename", "nb.ipynb", "--fix", "-", cwd=tmp_path, input=raw)
    assert proc.stdout == raw.replace("torch.log(torch.softmax(z, dim=-1))", "torch.log_softmax(z, dim=-1)")
    assert "cell 4:4:68: GL101" in proc.stderr and proc.returncode == 1


@pytest.mark.parametrize("raw, needle", [
    ('{"cells": [], "metadata": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    ('{"cells": [], "nbformat": ' + "9" * 5000 + "}", "not a readable notebook"),
    ('{"cells": [], "metadata": [1]}', "metadata is not nbformat's"),
    ('{"cells": [], "metadata": {"kernelspec": "python3"}}', "metadata is not nbformat's"),
    ('{"cells": [{"cell_type": "code", "source": ["import torch\\n", 1]}]}', "source of cell 1"),
], ids=["deep", "long integer", "metadata list", "kernelspec string", "source not text"])
def test_a_notebook_of_the_wrong_shape_is_gl001_not_an_internal_error(tmp_path, raw, needle):
    """JSON that parses but is no nbformat notebook, or that json cannot read (nesting, a 5 000
    digit integer), was a traceback (internal error)."""
    (tmp_path / "bad.ipynb").write_text(raw)
    proc = gradlint("check", "bad.ipynb", cwd=tmp_path)
    assert proc.returncode == 1 and "GL001" in proc.stdout and needle in proc.stdout, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


# IPython forms beyond `%x`, `!cmd` and `?obj`: each was a GL001 for the whole notebook, and the
# notebook's findings were lost. The cell's GL302 after the form, and the next cell's, must stay.
SOFTMAX = "y = torch.log(torch.softmax(z, -1))\n"
IPYTHON_FORMS = {
    "help after": "torch.log_softmax?\n",
    "help2 after": "obj??\n",
    "help after a magic": "%timeit?\n",
    "help of a name pattern": "torch.*soft*?\n",
    "indented at the cell's top": "  %matplotlib inline\n",
    "indented shell at the cell's top": "    !ls\n",
    "indented in a block": "if True:\n    %matplotlib inline\n    !ls\n",
    "help in a block": "for m in [torch]:\n    m.log_softmax?\n",
    "deeper than its block": "if True:\n    x = 1\n      !ls\n",
    "after a block, indented": "if True:\n    x = 1\n  %time x\n",
    "quote2 autocall": ";f a b\n",
    "quote autocall": ",f a b\n",
    "paren autocall": "/f a\n",
    "shell continued": "!echo one \\\n  two\n",
    "double shell": "!!ls\n",
    "magic assigned": "t = %timeit -o f()\n",
}


@pytest.mark.parametrize("form", list(IPYTHON_FORMS), ids=list(IPYTHON_FORMS))
def test_ipython_forms_are_not_a_syntax_error(tmp_path, form):
    first = IPYTHON_FORMS[form] + "import torch\n" + SOFTMAX
    write_tree(tmp_path, {"a.ipynb": notebook(("code", first), ("markdown", "text"), ("code", SOFTMAX))})
    proc = gradlint("check", "--format", "json", "a.ipynb", cwd=tmp_path)
    items = json.loads(proc.stdout)
    row = first.count("\n")
    assert [(i["cell"], i["location"]["row"], i["code"]) for i in items] == [(1, row, "GL302"), (3, 1, "GL302")]


def test_fix_keeps_ipython_forms_byte_for_byte(tmp_path):
    cell = "".join(IPYTHON_FORMS.values()) + "import torch\n" + SOFTMAX
    raw = notebook(("code", cell), ("code", "files = !ls\n" + SOFTMAX))
    write_tree(tmp_path, {"a.ipynb": raw})
    proc = gradlint("check", "--fix", "a.ipynb", cwd=tmp_path)
    assert "(2 fixed" in proc.stdout, proc.stdout + proc.stderr
    fixed = raw.replace('"y = torch.log(torch.softmax(z, -1))\\n"', '"y = torch.log_softmax(z, -1)\\n"')
    assert fixed != raw and (tmp_path / "a.ipynb").read_text(encoding="utf-8") == fixed


def test_stand_ins_are_statements_where_the_python_around_them_allows():
    raw = notebook(("code", "  %matplotlib inline\nimport torch\nif torch:\n    !ls\n    x = 1\n  %time x\n"))
    nb = Notebook.parse(raw)
    text, _ = virtual_source(nb)
    # IPython takes the first line's indentation off every line that starts with it
    assert text.splitlines()[1:] == ["pass  # gradlint-notebook-magic 0", "import torch", "if torch:",
                                     "  pass  # gradlint-notebook-magic 1", "  x = 1",
                                     "pass  # gradlint-notebook-magic 2"]
    assert write_back(nb, text) == raw
    from gradlint.notebook import NotebookError

    with pytest.raises(NotebookError, match="moved an IPython magic"):
        write_back(nb, text.replace("\npass  # gradlint-notebook-magic 0", "\n  pass  # gradlint-notebook-magic 0"))


def test_write_back_refuses_ipython_forms_a_fix_reordered():
    from gradlint.notebook import NotebookError

    raw = notebook(("code", "import torch\ntorch.log_softmax?\n;f a b\n!echo one \\\n  two\n"))
    nb = Notebook.parse(raw)
    text, _ = virtual_source(nb)
    assert text.count("gradlint-notebook-magic") == 4 and write_back(nb, text) == raw
    with pytest.raises(NotebookError, match="moved an IPython magic"):
        write_back(nb, _swap(text, "magic 0", "magic 1"))
    with pytest.raises(NotebookError, match="moved an IPython magic"):
        write_back(nb, _swap(text, "magic 2", "magic 3"))


LOOK_ALIKES = (
    'x = a if b else c\n'
    's = "what?"\n'
    "t = 1  # why?\n"
    "u = torch  # obj?\n"
    'doc = """\n?\n%matplotlib inline\n!ls\n;f a b\n/f a\nobj?\n"""\n'
    "v = r'a\\'?' \\\n    '?'\n"
    "w = (1\n     / 2\n     % 3\n     , 4)\n"
    "r = 6 \\\n    / 3\n"
    "x = 1; y = 2\n"
    "z = {'a?': 1}\n"
    "f = lambda: None\n"
    "if x != 1:\n    pass\n"
    "x %= 2\n"
    "x /= 2\n"
)


def test_python_that_looks_like_ipython_is_left_as_it_is():
    """A line is an IPython escape only where a logical line starts (as IPython reads its
    tokens): not in a string, not in brackets, not after a backslash, not in a comment."""
    compile(LOOK_ALIKES, "look-alikes", "exec")
    nb = Notebook.parse(notebook(("code", LOOK_ALIKES)))
    text, _ = virtual_source(nb)
    assert text == "# gradlint-notebook-cell: 1\n" + LOOK_ALIKES


_INDENTED = ("    import torch\n\n    def f(z):\n        return torch.log(torch.softmax(z, dim=-1))\n")


def test_an_indented_cell_is_read_as_ipython_runs_it(tmp_path):
    # code pasted from inside a function: IPython takes the first line's indentation off every
    # line; read as written, the cell was a syntax error that hid every finding of the notebook
    (tmp_path / "nb.ipynb").write_text(notebook(("markdown", "# t"), ("code", _INDENTED),
                                                ("code", "import torch.nn as nn\n\n" + DEEP)), encoding="utf-8")
    found = json.loads(gradlint("check", "--format", "json", "nb.ipynb", cwd=tmp_path).stdout)
    where = {(f["code"], f["cell"], f["location"]["row"], f["location"]["column"]) for f in found}
    # columns are the cell's own (its indentation counted)
    assert ("GL302", 2, 4, 16) in where and not any(code == "GL001" for code, *_ in where)
    assert any(code == "GL101" and cell == 3 for code, cell, *_ in where)
    before = (tmp_path / "nb.ipynb").read_text(encoding="utf-8")
    gradlint("check", "--fix", "--select", "GL302", "nb.ipynb", cwd=tmp_path)
    after = (tmp_path / "nb.ipynb").read_text(encoding="utf-8")
    assert after == before.replace('"        return torch.log(torch.softmax(z, dim=-1))\\n"',
                                   '"        return torch.log_softmax(z, dim=-1)\\n"')


def test_a_fix_in_an_indented_cell_keeps_each_lines_indentation():
    cell = ("    import torch\n    s = '''\nat column 0\n    '''\n\n    y = torch.log(torch.softmax(z, dim=-1))\n"
            "    if y:\n        pass\n")
    nb = Notebook.parse(notebook(("code", cell)))
    virtual, _cells = virtual_source(nb)
    assert "\ns = '''\nat column 0\n'''\n\ny = torch.log" in virtual
    assert write_back(nb, virtual) == nb.raw  # unchanged: byte for byte
    # a line changed, a line inserted (as a fix inserts `scaler.unscale_(opt)`), a line removed
    fixed = virtual.replace("torch.log(torch.softmax(z, dim=-1))", "torch.log_softmax(z, dim=-1)\nz = 1")
    fixed = fixed.replace("    pass\n", "")
    data = json.loads(write_back(nb, fixed))
    assert "".join(data["cells"][0]["source"]) == cell.replace(
        "torch.log(torch.softmax(z, dim=-1))", "torch.log_softmax(z, dim=-1)\n    z = 1").replace("        pass\n", "")


def _with_output(src: str, output_bytes: int) -> str:
    nb = json.loads(notebook(("code", src)))
    nb["cells"][0]["outputs"] = [{"output_type": "display_data", "metadata": {},
                                  "data": {"image/png": "A" * output_bytes}}]
    return json.dumps(nb)


def test_a_notebook_may_pass_max_file_size_by_its_outputs_not_its_code(tmp_path):
    # a 40 KiB plot in a notebook under a 10 KiB max-file-size: its code is still read and checked
    src = "import torch\ndef f(y):\n    return torch.log(torch.softmax(y, 1))\n"
    write_tree(tmp_path, {"pyproject.toml": '[tool.gradlint]\nmax-file-size = "10KB"\n',
                          "plots.ipynb": _with_output(src, 40 << 10),
                          "huge.ipynb": _with_output(src, 200 << 10)})
    proc = gradlint("check", ".", cwd=tmp_path)
    assert "plots.ipynb:cell 1:3:12: GL302" in proc.stdout
    # past 16 times the limit a notebook is refused unread, naming the limit it passed
    assert "over the limit of 160 KiB (16 x max-file-size for a notebook); it was not read" in \
        next(line for line in proc.stdout.splitlines() if line.startswith("huge.ipynb:1:1: GL001"))
