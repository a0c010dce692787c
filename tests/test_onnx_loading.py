"""Safe loading: broken files are GL002, unsafe external data is GL003 and never read, the
run goes on, and weight statistics stream correctly from external data."""

from __future__ import annotations

import builtins
import importlib.util
import io
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gradlint.api import check_paths, check_source
from gradlint.config import Config
from gradlint.onnx import extract_onnx
from gradlint.onnx import load as onnx_load
from gradlint.registry import load_rules

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("onnx_fixture_gen", ROOT / "fixtures" / "onnx" / "generate.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)  # type: ignore[union-attr]


def _codes(facts):
    """The input rules that report the facts' input errors (GL002, GL003)."""
    by_kind = {rule.input_error: code for code, rule in load_rules().items() if hasattr(rule, "input_error")}
    return [by_kind[e.kind] for e in facts.input_errors]


@pytest.mark.parametrize("case", ["truncated", "random", "png", "empty"])
def test_broken_files_are_gl002_with_a_reason(tmp_path: Path, case: str):
    path = gen.broken_files(tmp_path)[case]
    findings = check_source(path.read_bytes(), path="model.onnx")
    assert [f.code for f in findings] == ["GL002"]
    msg = findings[0].message
    assert {"png": "PNG", "empty": "empty", "truncated": "truncated", "random": "decode"}[case] in msg


def test_checker_failure_is_gl002(tmp_path: Path):
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "missing"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    findings = check_source(model.SerializeToString(), path="model.onnx")
    assert [f.code for f in findings] == ["GL002"]
    assert "onnx.checker" in findings[0].message and "missing" in findings[0].message


def test_bad_onnx_text_is_gl002(tmp_path: Path):
    path = tmp_path / "bad.onnx.txt"
    path.write_text("<ir_version: 8>\ng (float x) => (float y) { y = \n")
    facts = extract_onnx(path, "bad.onnx.txt")
    assert _codes(facts) == ["GL002"] and "ONNX text" in facts.input_errors[0].message


def test_run_goes_on_after_a_broken_model(tmp_path: Path):
    gen.broken_files(tmp_path / "m")
    gen.save(gen.mlp(depth=3, width=8, std="torch"), tmp_path / "m" / "good.onnx")
    result = check_paths([tmp_path / "m"], Config(root=str(tmp_path)), use_cache=False, jobs=1)
    by_file = {Path(r.path).name: [f.code for f in r.findings] for r in result.files}
    assert by_file["good.onnx"] == []
    assert all(by_file[f"{c}.onnx"] == ["GL002"] for c in ("truncated", "random", "png", "empty"))
    assert not result.internal_errors


# -- external data -------------------------------------------------------------------------------

class _OpenRecorder:
    """Records every path opened through Python (builtins.open, io.open, os.open)."""

    def __init__(self, monkeypatch):
        self.paths: list[str] = []
        real_open, real_os_open = builtins.open, os.open

        def rec_open(file, *a, **k):
            if isinstance(file, (str, bytes, os.PathLike)):
                self.paths.append(os.path.abspath(os.fsdecode(file)))
            return real_open(file, *a, **k)

        def rec_os_open(file, *a, **k):
            self.paths.append(os.path.abspath(os.fsdecode(file)))
            return real_os_open(file, *a, **k)

        monkeypatch.setattr(builtins, "open", rec_open)
        monkeypatch.setattr(io, "open", rec_open)
        monkeypatch.setattr(os, "open", rec_os_open)

    def outside(self, folder: Path) -> list[str]:
        base = os.path.realpath(folder)
        return [p for p in self.paths if not os.path.realpath(p).startswith(base + os.sep)
                and "site-packages" not in p and "/lib/python" not in p]


def _external_model(folder: Path, location: str) -> Path:
    model = gen.with_external(gen.mlp(depth=2, width=16, std="torch"), folder, location=location)
    return gen.save(model, folder / "model.onnx")


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the model's folder, holding bytes that would decode as NaN weights."""
    path = tmp_path / "secret" / "weights.bin"
    path.parent.mkdir()
    path.write_bytes(np.full(4096, np.nan, np.float32).tobytes())
    return path


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink-file", "symlink-folder"])
def test_unsafe_external_data_is_gl003_and_never_opened(tmp_path: Path, secret: Path, monkeypatch, how: str):
    folder = tmp_path / "model"
    if how == "dotdot":
        location = "../secret/weights.bin"
    elif how == "absolute":
        location = str(secret)
    elif how == "symlink-file":
        folder.mkdir()
        (folder / "model.data").symlink_to(secret)
        location = "model.data"
    else:
        folder.mkdir()
        (folder / "data").symlink_to(secret.parent, target_is_directory=True)
        location = "data/weights.bin"
    path = _external_model(folder, location)
    if how.startswith("symlink"):
        # with_external wrote through the link: put the secret back.
        secret.write_bytes(np.full(4096, np.nan, np.float32).tobytes())
    recorder = _OpenRecorder(monkeypatch)
    facts = extract_onnx(path, "model.onnx")
    monkeypatch.undo()
    assert set(_codes(facts)) == {"GL003"}
    assert all("not read" in e.message for e in facts.input_errors)
    assert recorder.outside(folder) == []
    assert os.path.abspath(path) in recorder.paths  # the recorder does see what is opened
    # Nothing was read: the NaNs of the secret file appear nowhere, and the structure is still checked.
    assert facts.graph.weights_read is False
    assert not any(w.nonfinite for w in facts.graph.weights)
    assert [type(n).__name__ for n in facts.networks[0].nodes][:2] == ["Param", "Activation"]
    assert facts.networks[0].nodes[0].init.scheme == "unknown"


def test_a_chain_through_weights_not_read_says_so_in_words(tmp_path: Path, cli):
    # GL101 on a sigmoid stack whose external weights were refused named their init `unknown_()`,
    # gradlint's placeholder
    from onnx.external_data_helper import set_external_data

    folder = tmp_path / "m"
    folder.mkdir()
    model = gen.mlp(depth=12, width=16, act="Sigmoid", std="torch")
    first = model.graph.initializer[0]  # one weight refused, the others read
    set_external_data(first, location="../outside.bin")
    first.ClearField("raw_data")
    gen.save(model, folder / "model.onnx")
    result = cli("check", str(folder / "model.onnx"), "--no-cache", cwd=tmp_path)
    (gl101,) = [line for line in result.stdout.splitlines() if " GL101 " in line]
    assert "weights not read" in gl101 and "unknown_" not in gl101, gl101


def test_passwd_reference_through_the_cli(tmp_path: Path, cli):
    folder = tmp_path / "m"
    _external_model(folder, "../../etc/passwd")
    result = cli("check", str(folder / "model.onnx"), "--no-cache", cwd=tmp_path)
    assert "GL003" in result.stdout and "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 1


def test_missing_and_truncated_external_data_are_gl002(tmp_path: Path):
    path = _external_model(tmp_path / "a", "model.data")
    (tmp_path / "a" / "model.data").unlink()
    facts = extract_onnx(path, "model.onnx")
    assert _codes(facts) == ["GL002"] and "does not exist" in facts.input_errors[0].message
    path = _external_model(tmp_path / "b", "model.data")
    data = tmp_path / "b" / "model.data"
    data.write_bytes(data.read_bytes()[:100])
    facts = extract_onnx(path, "model.onnx")
    assert _codes(facts) == ["GL002"] and "truncated" in facts.input_errors[0].message


def test_safe_external_data_gives_exact_statistics(tmp_path: Path, monkeypatch):
    model = gen.mlp(depth=3, width=32, std=0.7, seed=3)
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    folder = tmp_path / "m"
    path = gen.save(gen.with_external(model, folder), folder / "model.onnx")
    # A tiny chunk size exercises the streaming merge of partial statistics.
    monkeypatch.setattr(onnx_load, "CHUNK_ELEMS", 37)
    facts = extract_onnx(path, "model.onnx")
    assert facts.input_errors == ()
    stats = {w.name: w for w in facts.graph.weights}
    for name, arr in arrays.items():
        if arr.ndim == 2:
            assert stats[name].mean == pytest.approx(float(arr.astype(np.float64).mean()), rel=1e-9, abs=1e-12)
            assert stats[name].std == pytest.approx(float(arr.astype(np.float64).std()), rel=1e-9)
    first = facts.networks[0].nodes[0]
    assert first.init.get("variance") == pytest.approx(float(arrays["body.0.weight"].astype(np.float64).var()))


def test_checker_never_resolves_external_paths_against_the_cwd(tmp_path: Path, monkeypatch):
    # onnx.checker looks external locations up relative to the current directory; a model whose
    # data sits next to it must pass wherever gradlint runs from.
    path = _external_model(tmp_path / "m", "model.data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    facts = extract_onnx(path, "model.onnx")
    assert facts.input_errors == ()


def _external(tensor: TensorProto, location: str, length: int) -> TensorProto:
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(length))):
        e = tensor.external_data.add()
        e.key, e.value = k, v
    return tensor


def _sparse_and_attribute_model(folder: Path) -> Path:
    """External data where check_structure's initializer/Constant stripping does not look: a
    sparse initializer and the `value` attribute of ConstantOfShape."""
    folder.mkdir()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    s = helper.make_tensor_value_info("s", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 16])
    w = numpy_helper.from_array(np.eye(16, dtype=np.float32), "w")
    fill = _external(numpy_helper.from_array(np.ones(1, np.float32), "fill"), "w.bin", 4)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("ConstantOfShape", ["s"], ["z"], value=fill)]
    g = helper.make_graph(nodes, "g", [x, s], [y, z], [w])
    values = _external(numpy_helper.from_array(np.ones(4, np.float32), "sp"), "w.bin", 16)
    g.sparse_initializer.append(helper.make_sparse_tensor(values, numpy_helper.from_array(np.arange(4, dtype=np.int64), "i"), [16]))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (folder / "m.onnx").write_bytes(model.SerializeToString())
    (folder / "w.bin").write_bytes(np.ones(4, np.float32).tobytes())
    return folder / "m.onnx"


def test_the_checker_sees_no_external_reference_at_all(tmp_path: Path, monkeypatch):
    path = _sparse_and_attribute_model(tmp_path / "sp")
    seen = []
    real = onnx.checker.check_model
    monkeypatch.setattr(onnx.checker, "check_model", lambda m, *a, **k: seen.append(m) or real(m, *a, **k))
    verdicts = []
    for cwd in (tmp_path / "sp", tmp_path):
        monkeypatch.chdir(cwd)
        verdicts.append(extract_onnx(path, "m.onnx").input_errors)
    assert verdicts[0] == verdicts[1] == ()
    assert seen and not any(onnx_load.is_external(t) for m in seen for t in onnx_load.iter_tensors(m.graph))
    # The model itself keeps its references: only the checker's copy is changed.
    assert sum(onnx_load.is_external(t) for t in onnx_load.iter_tensors(onnx_load.decode(path).graph)) == 2


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_statistics_of_other_float_types(tmp_path: Path, dtype):
    rng = np.random.default_rng(0)
    w = rng.normal(0, 2.0, (8, 8)).astype(dtype)
    w[0, 0] = np.nan
    t = numpy_helper.from_array(w, "W")
    st = onnx_load.tensor_stats(t, None)
    finite = w[np.isfinite(w)].astype(np.float64)
    assert st.nan == 1 and st.count == 64
    assert st.variance == pytest.approx(float(finite.var()), rel=1e-6)


def test_bfloat16_statistics():
    values = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    t = helper.make_tensor("W", TensorProto.BFLOAT16, [4], values.tolist())
    st = onnx_load.tensor_stats(t, None)
    assert st.mean == pytest.approx(values.mean()) and st.variance == pytest.approx(values.var())


def test_model_without_graph_is_gl002(tmp_path: Path):
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx.ModelProto(producer_name="x").SerializeToString())
    assert _codes(extract_onnx(path, "m.onnx")) == ["GL002"]


def test_memory_bench_runs_on_a_small_model(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("onnx_memory", ROOT / "bench" / "onnx_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    path, total, largest = bench.build(tmp_path, layers=3, width=64)
    assert total == 3 * 64 * 64 * 4 and largest == 64 * 64 * 4
    facts = extract_onnx(path, "model.onnx")
    assert facts.input_errors == ()
    stds = [w.std for w in facts.graph.weights]
    assert np.allclose(stds, np.sqrt(2 / 64), rtol=0.1)
    peak, _, out = bench.run_check(path)
    assert peak > 0 and "All checks passed" in out


GOOD_TEXT = '<ir_version: 8, opset_import: ["" : 17]>\ng (float[N, 4] x) => (float[N, 4] a) {\n  p = Softmax <axis = -1> (x)\n  a = Log(p)\n}\n'


@pytest.mark.parametrize("text, needle", [
    ('<ir_version: 8, opset_import: ["" : 17]>\ng (float[99999999999999999999999999, 4] x) => (float[N, 4] a) {\n'
     '  a = Log(x)\n}\n', "IndexError"),
    ('<ir_version: 8, opset_import: ["" : 17]>\ng (float[N, 4] x) => (float[N, 4] a) {\n  c = Constant <value = float[1] {1e}> ()\n'
     '  a = Log(x)\n}\n', "RuntimeError"),
    ('<ir_version: 8, opset_import: ["" : 17]>\ng (' + "seq(" * 20000 + "float" + ")" * 20000 + ' x) => (float[N] a) {\n'
     '  a = Log(x)\n}\n', "nested 20001 levels deep"),
], ids=["huge dimension", "bad float", "deep type"])
def test_onnx_text_the_parser_refuses_or_crashes_on_is_gl002(tmp_path, text, needle):
    """onnx.parser raised IndexError (stoll), RuntimeError or protobuf's DecodeError past its own
    checks (internal errors), and overflowed its stack on deep nesting (SIGSEGV: no report at
    all with -j1). The good file beside it is still checked."""
    (tmp_path / "bad.onnx.txt").write_text(text)
    (tmp_path / "good.onnx.txt").write_text(GOOD_TEXT)
    result = check_paths([str(tmp_path / "bad.onnx.txt"), str(tmp_path / "good.onnx.txt")],
                         Config(root=str(tmp_path)), use_cache=False, jobs=1)
    bad = [f for f in result.findings if f.path.endswith("bad.onnx.txt")]
    assert [f.code for f in bad] == ["GL002"] and needle in bad[0].message, bad
    assert "GL302" in {f.code for f in result.findings if f.path.endswith("good.onnx.txt")}


def test_a_ladder_of_diamonds_is_lowered_in_time_and_still_checked(tmp_path):
    """`a_i = Add(a_{i-1}, b_{i-1})`, `b_i = Mul(a_{i-1}, b_{i-1})`: each fork's branches were
    walked again at every fork around them (16 rungs 3 s, 40 never ended). The Log of a Softmax
    at the end is still found."""
    from onnx import helper as h

    vi = lambda s: h.make_tensor_value_info(s, TensorProto.FLOAT, [1, 4])  # noqa: E731
    nodes = [h.make_node("Relu", ["x"], ["a0"]), h.make_node("Sigmoid", ["x"], ["b0"])]
    for i in range(1, 40):
        nodes += [h.make_node("Add", [f"a{i - 1}", f"b{i - 1}"], [f"a{i}"]),
                  h.make_node("Mul", [f"a{i - 1}", f"b{i - 1}"], [f"b{i}"])]
    nodes += [h.make_node("Softmax", ["a39"], ["p"], axis=-1), h.make_node("Log", ["p"], ["y"])]
    model = h.make_model(h.make_graph(nodes, "g", [vi("x")], [vi("y")]), opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "ladder.onnx"))
    result = check_paths([str(tmp_path / "ladder.onnx")], Config(root=str(tmp_path)), use_cache=False, jobs=1)
    assert "GL302" in {f.code for f in result.findings}


def test_a_cycle_after_a_long_chain_is_found_and_named(tmp_path):
    from onnx import helper as h

    from gradlint.onnx.load import ModelError, sort_nodes

    vi = lambda s: h.make_tensor_value_info(s, TensorProto.FLOAT, [1, 4])  # noqa: E731
    n = 40_000
    nodes = [h.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}"]) for i in range(n)]
    nodes += [h.make_node("Add", [f"t{n}", "c2"], ["c1"], name="join"), h.make_node("Relu", ["c1"], ["c2"]),
              h.make_node("Identity", ["c2"], ["y"])]
    graph = h.make_graph(nodes, "g", [vi("x")], [vi("y")])
    with pytest.raises(ModelError, match="cycle through node 'join'"):
        sort_nodes(graph)  # (the set of placed nodes was built again per node: 20 s)


def test_external_data_past_the_budget_is_not_read_and_said(tmp_path: Path, monkeypatch, capsys):
    # A model naming a 4 TB sparse file was streamed for hours: each model reads at most
    # MAX_EXTERNAL_BYTES of external data (each region once); the tensors past it are not read,
    # their statistics unknown, and the file's result says so.
    model = gen.mlp(depth=3, width=32, std=0.7, seed=3)
    folder = tmp_path / "m"
    path = gen.save(gen.with_external(model, folder), folder / "model.onnx")
    full = extract_onnx(path, "model.onnx")
    assert full.partial is None
    sizes = {t.name: t for t in onnx.load(str(path), load_external_data=False).graph.initializer}
    first = next(iter(sizes))
    length = int({e.key: e.value for e in sizes[first].external_data}["length"])
    monkeypatch.setattr(onnx_load, "MAX_EXTERNAL_BYTES", length)
    reads: list[int] = []
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, pos: reads.append(n) or real_pread(fd, n, pos))
    facts = extract_onnx(path, "model.onnx")
    assert sum(reads) == length  # the first region only
    read = {w.name for w in facts.graph.weights}
    assert first in read and len(read) == 1
    unread = len(sizes) - 1
    assert facts.partial == (f"the external data of {unread} tensors ({list(sizes)[1]!r}, ...) was not read: past "
                             f"the {length} bytes read for one model, so their weight statistics are unknown")
    # said once per run, as a warning beside the findings (and kept by the cache)
    from gradlint.cli import main

    monkeypatch.chdir(folder)
    for _run in range(2):
        with pytest.raises(SystemExit):
            main(["check", "-j", "1", "model.onnx"])
        err = capsys.readouterr().err
        assert err.count("gradlint: warning: model.onnx: the external data of") == 1, err
