"""Faithfulness metrics of attributions (docs/faithfulness.md): deletion and insertion curves, AOPC
comprehensiveness and sufficiency at ERASER's bins, normalised AOPC, and rank correlation with
leave-one-out occlusion; and comparing methods on one input."""

from __future__ import annotations

from .math import ERASER_BINS
from .params import DEFAULT_METRICS, METRICS, Faithfulness

__all__ = ["DEFAULT_METRICS", "ERASER_BINS", "METRICS", "Faithfulness"]
