"""How far two correct float32 computations of the same attribution may differ.

An attribution value is a difference of two scores, and a score is a sum (of log-probabilities,
of logits times weights). Two correct computations add in different orders: torch and ONNX Runtime,
one batch shape and another, a cache and a recomputation, one CPU's MLAS kernels and another's. Each
addition may round by half an ulp of the running sum, so the two answers may differ by a few times
float32's eps x |score|, whatever the attribution's own size. At |score| = 40 that is 4.8e-6 per
rounding: a fixed 1e-6, or even 1e-5, is then a statement about one CPU, not about correctness
(CI's CPU once rounded one more time than this machine's and failed a 1e-5 check at 1.1e-5).
A real bug (a row mixed up, a mask or padding ignored) moves values by far more: 1e-4 and up on the
tiny test models."""

from __future__ import annotations

import numpy as np


def float32_tolerance(scores, floor: float, roundings: int = 4) -> float:
    """Absolute tolerance: `floor`, or `roundings` x eps x the largest |score| where that is more."""
    scale = float(np.max(np.abs(np.asarray(scores, dtype=np.float64)), initial=0.0))
    return max(floor, roundings * float(np.finfo(np.float32).eps) * scale)
