"""Checks of call arguments shared by the pipeline: texts the tokenizer can take, integer counts."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import InvalidInputError


def check_text(text: str, what: str) -> None:
    """InvalidInputError for a text UTF-8 cannot encode (lone surrogates, as from a bad decode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInputError(
            f"{what} has a lone surrogate {text[e.start]!r} at character {e.start}; it is not valid unicode "
            "(decode the bytes with errors='replace', or remove it)"
        ) from None


def check_target_texts(targets) -> None:
    """Runs check_text over every string a targets argument holds (a string, a sequence or a mapping)."""
    if isinstance(targets, Mapping):
        for label, value in targets.items():
            if isinstance(label, str):
                check_text(label, f"target label {label[:20]!r}")
            check_target_texts(value)
    elif isinstance(targets, str):
        check_text(targets, "a target")
    elif isinstance(targets, list | tuple):
        for value in targets:
            if isinstance(value, str):
                check_text(value, "a target")


def optional_count(name: str, value, minimum: int, error=InvalidInputError) -> int | None:
    """None, or the value as a Python int (numpy integers accepted) if it is an integer >= minimum."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise error(f"{name} must be an integer >= {minimum} (or None), got {value!r}")
    return int(value)
