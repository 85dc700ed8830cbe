"""ONNX Runtime sessions for the export's own checks: one at a time, each as lean as it can be, so
that a large model's export holds one copy of the weights in ONNX Runtime (see docs/benchmarks.md,
"Export time")."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path


def validation_session(path: Path):
    """A CPU session for validation, lean because it runs a handful of small batches. No memory
    arena (it would keep its largest activations after the run). No constant folding and no
    pre-packing: each stores a second copy of the weights (a transposed one for every weight a
    backward pass multiplies by; MLAS's packed layout of every MatMul weight, kept beside the
    original wherever a gradient graph also transposes it), so a gradient graph held its weights
    twice; the checks' few runs transpose and pack as they go. (Those two passes then go
    unchecked by the export: the engine's sessions run them, and its tests compare with Captum.)"""
    import onnxruntime

    _release_freed_memory()
    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.disable_prepacking", "1")
    return onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=["ConstantFolding"]
    )


def _release_freed_memory() -> None:
    """Hands the pages that glibc's allocator holds free (the torch model just released, the last
    session's weights) back to the system before the next session loads its weights."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        pass
