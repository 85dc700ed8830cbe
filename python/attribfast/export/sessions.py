"""ONNX Runtime sessions for the export's own checks: one at a time, each as lean as it can be, so
that a large model's export holds one copy of the weights in ONNX Runtime (see docs/benchmarks.md,
"Export time")."""

from __future__ import annotations

from pathlib import Path


def validation_session(path: Path):
    """A CPU session for validation. No memory arena: the checks run a handful of small batches,
    and an arena would keep its largest activations after the run."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
