"""Packaging: the licence and metadata, the typing files, the generated _core stub (no drift) and
the wheel checker that scripts/build_wheel.sh (run by CI) applies to the repaired wheel."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import subprocess
import sys
import zipfile
from pathlib import Path

import attribfast
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import check_wheel  # noqa: E402  (scripts/check_wheel.py)

CORE_SO = Path(str(next(p for p in importlib.resources.files("attribfast").iterdir() if p.name.endswith(".so"))))


def test_licence_file_is_mit_and_matches_the_metadata():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 attribfast developers" in text
    meta = importlib.metadata.metadata("attribfast")
    assert meta["License-Expression"] == "MIT"
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert meta["Version"] == attribfast.__version__


def test_installed_package_ships_py_typed_and_the_core_stub():
    files = {p.name for p in importlib.resources.files("attribfast").iterdir()}
    assert {"py.typed", "_core.pyi"} <= files, files


def test_core_stub_is_what_the_generator_writes(tmp_path):
    """Fails when the bindings change and python/attribfast/_core.pyi was not regenerated."""
    run = subprocess.run(
        [sys.executable, "-m", "pybind11_stubgen", "attribfast._core", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    generated = (tmp_path / "attribfast" / "_core.pyi").read_text()
    committed = (ROOT / "python" / "attribfast" / "_core.pyi").read_text()
    assert generated == committed, "the _core stub drifted: run scripts/generate_stubs.sh and commit the result"
    for name in ("def occlusion(", "class Session:", "def integrated_gradients("):
        assert name in committed


def test_core_links_no_onnxruntime():
    needed = check_wheel.needed_libraries(CORE_SO.read_bytes())
    assert any(lib.startswith("libstdc++") for lib in needed), needed
    assert not [lib for lib in needed if "onnxruntime" in lib]


def fake_wheel(path: Path, *, platform: str, omit: tuple[str, ...] = (), core: bytes | None = None) -> Path:
    wheel = path / f"attribfast-0.1.0-cp311-cp311-{platform}.whl"
    files = {
        "attribfast/__init__.py": b"",
        "attribfast/py.typed": b"",
        "attribfast/_core.pyi": b"",
        "attribfast/models/arith/attribfast.json": b"{}",
        "attribfast/_core.cpython-311-x86_64-linux-gnu.so": core if core is not None else CORE_SO.read_bytes(),
        "attribfast-0.1.0.dist-info/licenses/LICENSE": b"MIT",
        "attribfast-0.1.0.dist-info/WHEEL": f"Wheel-Version: 1.0\nTag: cp311-cp311-{platform}\n".encode(),
    }
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            if name not in omit:
                z.writestr(name, data)
    return wheel


def test_wheel_checker_accepts_a_manylinux_wheel(tmp_path):
    assert check_wheel.problems(str(fake_wheel(tmp_path, platform="manylinux_2_34_x86_64"))) == []


@pytest.mark.parametrize(
    ("platform", "omit", "expected"),
    [
        ("linux_x86_64", (), "platform tag linux_x86_64 is not manylinux"),
        ("manylinux_2_34_x86_64", ("attribfast/py.typed",), "attribfast/py.typed missing"),
        ("manylinux_2_34_x86_64", ("attribfast/_core.pyi",), "attribfast/_core.pyi missing"),
        ("manylinux_2_34_x86_64", ("attribfast-0.1.0.dist-info/licenses/LICENSE",), "LICENSE missing"),
        ("manylinux_2_34_x86_64", ("attribfast/_core.cpython-311-x86_64-linux-gnu.so",), "found 0"),
    ],
)
def test_wheel_checker_rejects(tmp_path, platform, omit, expected):
    found = check_wheel.problems(str(fake_wheel(tmp_path, platform=platform, omit=omit)))
    assert any(expected in problem for problem in found), found


def test_wheel_checker_rejects_a_core_linking_onnxruntime(tmp_path):
    core = bytearray(CORE_SO.read_bytes())
    # Rename one DT_NEEDED string in place (same length) so the ELF still parses.
    first = check_wheel.needed_libraries(bytes(core))[0]
    fake = b"libonnxruntime"[: len(first)].ljust(len(first), b"x")
    at = core.index(first.encode() + b"\0")
    core[at : at + len(first)] = fake
    found = check_wheel.problems(str(fake_wheel(tmp_path, platform="manylinux_2_34_x86_64", core=bytes(core))))
    assert any("must dlopen ONNX Runtime" in problem for problem in found), found


def test_wheel_checker_command_exits_non_zero_on_problems(tmp_path):
    bad = fake_wheel(tmp_path, platform="linux_x86_64")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_wheel.py"), str(bad)], capture_output=True)
    assert run.returncode == 1 and b"not manylinux" in run.stderr
