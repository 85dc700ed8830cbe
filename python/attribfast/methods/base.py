"""The base of the method configs and the checks of their parameters."""

from __future__ import annotations

from dataclasses import fields
from typing import ClassVar

import numpy as np

from ..errors import InvalidInputError

# A replacement token for perturbations: "pad", "mask", "unk", "eos", a token id, or None for the
# bundle's pad token (falling back to unk, then eos).
TokenBaseline = str | int | None
TOKEN_BASELINES = ("pad", "mask", "unk", "eos")
# Feature groups: "token" (each token alone), "word" (the tokenizer's words; attribfast.words),
# "sentence", "line", "paragraph" (attribfast.spans), or one group id per token (-1 keeps a token fixed).
Groups = str | tuple
GROUPINGS = ("token", "word", "sentence", "line", "paragraph")
AGGREGATIONS = ("sum", "l2")


def _check_positive(name: str, value, minimum=1) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_real(name: str, value, *, positive: bool = False, allow_none: bool = False) -> None:
    """A finite real number (bools and strings refused), > 0 with positive, else >= 0."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = float("inf")
    if not np.isfinite(number) or number < 0 or (positive and number == 0):
        raise InvalidInputError(f"{name} must be a finite number {'>' if positive else '>='} 0, got {value!r}")


def _check_permutations(permutations) -> None:
    """Explicit Shapley permutations: equal-length rows of group ids (the core checks each is one)."""
    if permutations is None:
        return
    try:
        rows = [list(row) for row in permutations]
    except TypeError:
        raise InvalidInputError("permutations must be a sequence of sequences of group ids") from None
    if not rows or len({len(row) for row in rows}) != 1 or not rows[0]:
        raise InvalidInputError("permutations must be non-empty rows of one length (one id per feature group)")
    for row in rows:
        for value in row:
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value < 2**62:
                raise InvalidInputError(f"permutations hold group ids (integers >= 0), got {value!r}")


def _check_token_baseline(baseline: TokenBaseline) -> None:
    if baseline is None or (
        isinstance(baseline, int | np.integer) and not isinstance(baseline, bool) and baseline >= 0
    ):
        return
    if not isinstance(baseline, str) or baseline not in TOKEN_BASELINES:
        raise InvalidInputError(
            f"baseline must be one of {', '.join(TOKEN_BASELINES)}, a token id or None, got {baseline!r}"
        )


def _check_groups(groups: Groups) -> None:
    if isinstance(groups, str):
        if groups not in GROUPINGS:
            raise InvalidInputError(f"groups must be one of {', '.join(GROUPINGS)} or a tuple of ids, got {groups!r}")
        return
    if not isinstance(groups, tuple | list | np.ndarray):
        raise InvalidInputError(f"groups must be one of {', '.join(GROUPINGS)} or a sequence of ids, got {groups!r}")
    if not all(isinstance(g, int | np.integer) and not isinstance(g, bool) and g >= -1 for g in groups):
        raise InvalidInputError("explicit groups must be integers >= -1, one per input token")


def _check_aggregation(aggregation: str) -> None:
    if aggregation not in AGGREGATIONS:
        raise InvalidInputError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")


class Method:
    """Base of the method configs. `name` is the registry key; `needs` the bundle graph it runs.

    A config runs itself: `run(engine, encoded, plan, policy, progress, seed)` builds the core's
    problem through the engine (attribfast.engine.Engine) and calls one core entry point.
    """

    name: ClassVar[str]
    needs: ClassVar[str]

    def run(self, engine, encoded, plan, policy, progress, seed):  # pragma: no cover - every config overrides it
        raise NotImplementedError

    def parameters(self) -> dict:
        """The config as plain values (arrays become lists), for results and files."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out
