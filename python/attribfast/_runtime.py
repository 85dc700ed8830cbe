"""Finding and loading the ONNX Runtime library the core runs on."""

from __future__ import annotations

import glob
import importlib.util
import os
import threading
from dataclasses import dataclass

from . import _core
from .errors import LibraryError

ORT_LIBRARY_ENV = "ATTRIBFAST_ORT_LIBRARY"
PROVIDERS_ENV = "ATTRIBFAST_PROVIDERS"
_lock = threading.Lock()
_loaded: tuple[str, str, int] | None = None


def find_ort_library() -> str:
    """Path of libonnxruntime: $ATTRIBFAST_ORT_LIBRARY, else the one in the installed onnxruntime wheel.

    The wheel's Python module embeds its own copy of ORT and does not load this library, so finding
    it does not import onnxruntime (the core's runtime is a second, independent one in the process).
    """
    override = os.environ.get(ORT_LIBRARY_ENV)
    if override:
        if not os.path.isfile(override):
            raise LibraryError(f"{ORT_LIBRARY_ENV}={override} does not name a file")
        return override
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise LibraryError(
            "onnxruntime is not installed: pip install onnxruntime (CPU) or onnxruntime-gpu, "
            f"or set {ORT_LIBRARY_ENV} to a libonnxruntime.so"
        )
    capi = os.path.join(list(spec.submodule_search_locations)[0], "capi")
    candidates = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so.1*")))
    if not candidates:
        raise LibraryError(f"no libonnxruntime.so.1.* in {capi}; set {ORT_LIBRARY_ENV} to one")
    return candidates[-1]


def default_providers() -> tuple[str, ...]:
    """The providers a model loads with when none are given: $ATTRIBFAST_PROVIDERS (comma-separated,
    e.g. "cuda,cpu"), else ("cpu",). Lets a deployment, or a test run, move every model to the GPU."""
    value = os.environ.get(PROVIDERS_ENV, "").strip()
    if not value:
        return ("cpu",)
    return tuple(p.strip().lower() for p in value.split(",") if p.strip())


def ensure_runtime() -> tuple[str, str, int]:
    """Loads ORT into the core once per process; returns (version, library path, API version)."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = tuple(_core.load_runtime(find_ort_library()))
        return _loaded


@dataclass(frozen=True)
class RuntimeInfo:
    """What attribfast runs on: the ONNX Runtime version, the library file and C API version the
    core loaded, the execution providers ONNX Runtime lists, the ones that really work (CUDA is
    probed by creating a session), and why each of the others does not."""

    ort_version: str
    library_path: str
    api_version: int
    available_providers: tuple[str, ...]
    usable_providers: tuple[str, ...]
    unusable_reasons: dict


def runtime_info() -> RuntimeInfo:
    """Versions, library path, API version and the providers that are listed and that really work.

    ORT lists CUDA wherever it was built with it, so each listed provider attribfast can drive is
    probed by creating a one-node session on it.
    """
    version, path, api_version = ensure_runtime()
    available = tuple(_core.available_providers())
    usable = ["cpu"]
    reasons = {}
    if "CUDAExecutionProvider" in available:
        ok, why = _core.probe_provider("cuda", 0)
        if ok:
            usable.append("cuda")
        else:
            reasons["cuda"] = why
    return RuntimeInfo(version, path, api_version, available, tuple(usable), reasons)
