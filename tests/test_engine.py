"""The native engine against onnxruntime's own Python session, its error paths and its threading."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import attribfast
import numpy as np
import onnxruntime
import pytest
from attribfast import Session
from attribfast.errors import (
    AttribfastError,
    InvalidInputError,
    LibraryError,
    ModelLoadError,
    ProviderWarning,
)
from onnx_models import linear_score_model, multi_io_model, singular_gradient_model, slow_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def multi_io(tmp_path_factory):
    model, weight = multi_io_model()
    path = tmp_path_factory.mktemp("models") / "multi_io.onnx"
    path.write_bytes(model)
    return path, weight


def feeds(batch: int, seq: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "ids": rng.integers(0, 1000, size=(batch, seq), dtype=np.int64),
        "x": rng.standard_normal((batch, 4)).astype(np.float32),
    }


@pytest.mark.parametrize("batch,seq", [(1, 1), (3, 7), (17, 2)])
def test_outputs_equal_onnxruntime_python(multi_io, batch, seq):
    path, _ = multi_io
    ours = Session(path).run(feeds(batch, seq))
    reference = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds(batch, seq))
    assert len(ours) == 3
    for a, b in zip(ours, reference, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_io_binding_path_matches_plain_run(multi_io):
    path, _ = multi_io
    plain = Session(path).run(feeds(5, 3))
    bound = Session(path, io_binding=True).run(feeds(5, 3))
    for a, b in zip(plain, bound, strict=True):
        np.testing.assert_array_equal(a, b)


def test_introspection_reports_names_types_and_symbolic_dims(multi_io):
    path, _ = multi_io
    session = Session(path)
    assert [i["name"] for i in session.inputs] == ["ids", "x"]
    assert session.inputs[0]["dtype"] == np.int64 and session.inputs[1]["dtype"] == np.float32
    assert session.inputs[0]["shape"] == ["batch", "seq"]
    assert session.inputs[1]["shape"] == ["batch", 4]
    assert [o["name"] for o in session.outputs] == ["y", "z", "w"]


def test_selected_outputs_and_batched_run(multi_io):
    path, weight = multi_io
    session = Session(path)
    data = feeds(10, 4)
    seen = []
    (w,) = session.run_batched(data, ["w"], batch_size=3, progress=lambda d, t: seen.append((d, t)))
    np.testing.assert_allclose(w, data["x"] @ weight, atol=1e-5)
    assert seen[-1] == (10, 10)
    (z,) = session.run(data, ["z"])
    np.testing.assert_array_equal(z, data["ids"].sum(axis=1).astype(np.float32))


def test_bytes_and_path_give_same_results(multi_io):
    path, _ = multi_io
    a = Session(path).run(feeds(2, 2))
    b = Session(path.read_bytes()).run(feeds(2, 2))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_error_paths_raise_typed_errors(multi_io, tmp_path):
    path, _ = multi_io
    with pytest.raises(ModelLoadError, match="no model file"):
        Session(tmp_path / "missing.onnx")
    with pytest.raises(ModelLoadError, match="protobuf"):
        Session(b"\x08\x01 definitely not a model")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ModelLoadError):
        Session(corrupt)
    session = Session(path)
    good = feeds(2, 3)
    with pytest.raises(InvalidInputError, match="no input 'idz'"):
        session.run({"idz": good["ids"], "x": good["x"]})
    with pytest.raises(InvalidInputError, match="must be float32, got float64"):
        session.run({"ids": good["ids"], "x": good["x"].astype(np.float64)})
    with pytest.raises(InvalidInputError, match="rank"):
        session.run({"ids": good["ids"][0], "x": good["x"]})
    with pytest.raises(InvalidInputError, match="expects"):
        session.run({"ids": good["ids"], "x": np.zeros((2, 5), np.float32)})
    with pytest.raises(InvalidInputError, match="missing input 'x'"):
        session.run({"ids": good["ids"]})
    with pytest.raises(InvalidInputError, match="no output"):
        session.run(good, ["nope"])
    with pytest.raises(InvalidInputError, match="provider"):
        Session(path, provider="tpu")
    assert issubclass(InvalidInputError, AttribfastError)


def test_cuda_request_without_a_usable_gpu_warns_and_runs_on_cpu(multi_io):
    path, _ = multi_io
    if "cuda" in attribfast.runtime_info().usable_providers:
        pytest.skip("a usable CUDA device is present; the fallback cannot happen here")
    with pytest.warns(ProviderWarning, match="CUDA"):
        session = Session(path, provider="cuda")
    assert session.provider == "cpu"
    np.testing.assert_allclose(session.run(feeds(2, 2))[0], Session(path).run(feeds(2, 2))[0])


def test_runtime_info_reports_versions_and_probed_providers():
    info = attribfast.runtime_info()
    assert info.ort_version == onnxruntime.__version__
    assert info.api_version == 16
    assert os.path.basename(info.library_path).startswith("libonnxruntime.so.1")
    assert "CPUExecutionProvider" in info.available_providers
    assert info.usable_providers[0] == "cpu"


def test_two_threads_on_one_session_agree(multi_io):
    path, _ = multi_io
    session = Session(path)
    data = feeds(64, 16)
    results = [None, None]

    def work(slot):
        for _ in range(30):
            results[slot] = session.run(data)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_coexists_with_onnxruntime_python_in_one_process(multi_io):
    # onnxruntime's Python module embeds its own ORT; ours is the dlopen'ed shared library. Both run
    # interleaved in the same process and agree.
    path, _ = multi_io
    theirs = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = Session(path)
    for seed in range(3):
        data = feeds(4, 5, seed)
        np.testing.assert_allclose(ours.run(data)[2], theirs.run(None, data)[2], atol=1e-6)


def run_python(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def fake_old_ort(tmp_path_factory):
    """A library that exports OrtGetApiBase like ORT 1.10: GetApi(16) returns NULL."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("a C compiler is needed to build the simulated old library")
    folder = tmp_path_factory.mktemp("fakeort")
    source = folder / "fake.c"
    source.write_text(
        "#include <stdint.h>\n#include <stddef.h>\n"
        "static const void* get_api(uint32_t v) { static void* table[300]; return v <= 10 ? table : NULL; }\n"
        'static const char* version(void) { return "1.10.0"; }\n'
        "static const struct { const void* (*a)(uint32_t); const char* (*b)(void); } base = {get_api, version};\n"
        "const void* OrtGetApiBase(void) { return &base; }\n"
    )
    library = folder / "libonnxruntime.so.1.10.0"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library


def test_too_old_library_is_a_clear_library_error(fake_old_ort):
    result = run_python(
        """
        import attribfast
        from attribfast.errors import LibraryError
        try:
            attribfast.runtime_info()
        except LibraryError as e:
            print("LibraryError:", e)
        """,
        env={"ATTRIBFAST_ORT_LIBRARY": str(fake_old_ort)},
    )
    assert result.returncode == 0, result.stderr
    assert "LibraryError: ONNX Runtime 1.10.0" in result.stdout and "too old" in result.stdout


def test_library_override_errors(tmp_path):
    result = run_python(
        """
        import attribfast
        try:
            attribfast.runtime_info()
        except attribfast.errors.LibraryError as e:
            print("LibraryError:", e)
        """,
        env={"ATTRIBFAST_ORT_LIBRARY": str(tmp_path / "nope.so")},
    )
    assert "LibraryError:" in result.stdout and "does not name a file" in result.stdout
    not_ort = tmp_path / "libnot_ort.so"
    compiler = shutil.which("cc") or shutil.which("gcc")
    src = tmp_path / "x.c"
    src.write_text("int not_ort(void) { return 1; }\n")
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(not_ort), str(src)], check=True)
    result = run_python(
        """
        import attribfast
        try:
            attribfast.runtime_info()
        except attribfast.errors.LibraryError as e:
            print("LibraryError:", e)
        """,
        env={"ATTRIBFAST_ORT_LIBRARY": str(not_ort)},
    )
    assert "does not export OrtGetApiBase" in result.stdout


def test_keyboard_interrupt_stops_a_long_batched_run_within_one_batch(tmp_path):
    model = tmp_path / "slow.onnx"
    model.write_bytes(slow_model())
    script = f"""
        import sys, time, numpy as np
        from attribfast import Session
        session = Session({str(model)!r}, threads=1)
        x = np.ones((100000, 512), np.float32)
        def progress(done, total):
            print("progress", done, flush=True)
        start = time.monotonic()
        try:
            session.run_batched({{"x": x}}, batch_size=64, progress=progress)
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", round(time.monotonic() - start, 3), flush=True)
    """
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("progress"):
            break
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    elapsed = time.monotonic() - sent
    assert "interrupted" in out, out
    assert elapsed < 2.0, f"took {elapsed:.2f}s to stop"


@pytest.fixture(scope="module")
def core_test_binary(tmp_path_factory):
    build = os.path.join(ROOT, "build", "cpp-tests")
    subprocess.run(
        ["cmake", "-S", ROOT, "-B", build, "-DATTRIBFAST_BUILD_TESTS=ON", "-DCMAKE_BUILD_TYPE=Release"],
        check=True,
        capture_output=True,
    )
    subprocess.run(["cmake", "--build", build, "-j", "2"], check=True, capture_output=True)
    return os.path.join(build, "cpp", "attribfast_core_tests")


def test_cpp_core_tests(core_test_binary, tmp_path):
    # linear_score.onnx: table[v][t] = 0.5 v - t, as core_tests.cpp expects.
    table = np.fromfunction(lambda v, t: 0.5 * v - t, (10, 3))
    (tmp_path / "linear_score.onnx").write_bytes(linear_score_model(table))
    # square_gradient.onnx: score S^2 and "gradient" 2 / S, S the row's sum (test_sampled_gradients).
    (tmp_path / "square_gradient.onnx").write_bytes(singular_gradient_model(log_score=False))
    from attribfast._runtime import find_ort_library

    result = subprocess.run(
        [core_test_binary, "--ort-lib", find_ort_library(), "--models", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 failed" in result.stdout and "skipped" not in result.stdout


def test_no_warning_is_printed_on_a_plain_cpu_session(multi_io):
    path, _ = multi_io
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Session(path).run(feeds(1, 1))


def test_library_error_is_typed():
    assert issubclass(LibraryError, AttribfastError)
