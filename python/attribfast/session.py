"""A thin public wrapper over the core's ONNX Runtime session."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from . import _core
from ._runtime import ensure_runtime
from .errors import InvalidInputError, ModelLoadError, ProviderWarning

PROVIDERS = ("cpu", "cuda")
OPTIMIZATION_LEVELS = {"disable": 0, "basic": 1, "extended": 2, "all": 99}


class Session:
    """An ONNX model loaded in attribfast's native runtime.

    Args:
        model: path of an .onnx file, or its serialized bytes.
        provider: "cpu" or "cuda". When CUDA cannot be used the session runs on CPU and a
            :class:`~attribfast.errors.ProviderWarning` says why.
        device_id: CUDA device ordinal.
        threads: intra-op threads; None lets ONNX Runtime choose (one per physical core).
        optimization: graph optimisation level: "disable", "basic", "extended" or "all".
        io_binding: route runs through an IoBinding (always on for CUDA).
        spinning: let idle intra-op threads spin for new work (lower latency for back-to-back
            runs); turn it off for sessions that run only now and then beside busier ones.
        tf32: allow TF32 matrix products on CUDA (faster on Ampere and later GPUs, but only about
            1e-3 relative); off by default so fp32 results match the CPU's.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        *,
        provider: str = "cpu",
        device_id: int = 0,
        threads: int | None = None,
        optimization: str = "all",
        io_binding: bool = False,
        spinning: bool = True,
        tf32: bool = False,
    ) -> None:
        if provider not in PROVIDERS:
            raise InvalidInputError(f"unknown provider {provider!r} (possible: {', '.join(PROVIDERS)})")
        if optimization not in OPTIMIZATION_LEVELS:
            raise InvalidInputError(
                f"unknown optimization {optimization!r} (possible: {', '.join(OPTIMIZATION_LEVELS)})"
            )
        if isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 0:
            raise InvalidInputError(f"device_id must be a non-negative integer, got {device_id!r}")
        if threads is not None and threads < 1:
            raise InvalidInputError("threads must be >= 1 (or None)")
        if not isinstance(model, bytes):
            model = os.fspath(model)
            if not os.path.isfile(model):
                raise ModelLoadError(f"no model file at {model}")
        ensure_runtime()
        self._session = _core.Session(
            model,
            provider=provider,
            device_id=device_id,
            threads=threads or 0,
            optimization_level=OPTIMIZATION_LEVELS[optimization],
            use_io_binding=io_binding,
            allow_spinning=spinning,
            allow_tf32=tf32,
        )
        for message in self._session.warnings:
            warnings.warn(message, ProviderWarning, stacklevel=2)

    @property
    def provider(self) -> str:
        """The provider the session really runs on."""
        return self._session.provider

    @property
    def device_id(self) -> int:
        """The device the session runs on (0 on CPU)."""
        return self._session.device_id

    @property
    def pinned_staging(self) -> bool:
        """Whether run inputs are staged in page-locked host memory (CUDA sessions)."""
        return self._session.pinned_staging

    def device_memory(self) -> tuple[int, int] | None:
        """(free, total) bytes of the session's GPU, or None on CPU."""
        return self._session.device_memory()

    @property
    def inputs(self) -> list[dict]:
        """Each input's name, numpy dtype and shape (ints, symbolic names, or None)."""
        return self._session.inputs

    @property
    def outputs(self) -> list[dict]:
        """Each output's name, numpy dtype and shape (ints, symbolic names, or None)."""
        return self._session.outputs

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """Runs once; returns the requested outputs (all by default) as numpy arrays."""
        return self._session.run(dict(inputs), None if outputs is None else list(outputs))

    def run_batched(
        self,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        *,
        batch_size: int = 32,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[np.ndarray]:
        """Runs inputs sharing a leading batch dimension in slices of batch_size rows.

        progress(rows_done, rows_total) is called between batches; Ctrl-C stops the run within one
        batch and raises KeyboardInterrupt.
        """
        return self._session.run_batched(dict(inputs), None if outputs is None else list(outputs), batch_size, progress)
