"""ONNX Runtime sessions for the export's own checks: one at a time, each as lean as it can be, so
that a large model's export holds one copy of the weights in ONNX Runtime (see docs/benchmarks.md,
"Export time")."""

from __future__ import annotations

from pathlib import Path


def validation_session(path: Path):
    """A CPU session for validation. No memory arena: the checks run a handful of small batches,
    and an arena would keep its largest activations after the run. No pre-packing: ONNX Runtime
    would keep a re-laid-out copy of every MatMul weight next to the weights, for speed that a
    handful of small batches does not need."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.disable_prepacking", "1")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
