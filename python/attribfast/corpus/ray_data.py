"""Attribution over a Ray Data dataset: actors that each load the bundle once, in map_batches."""

from __future__ import annotations

import os

from ..errors import InvalidInputError
from .records import RESULT_COLUMNS
from .sweep import attribute_records, per_text_targets


class _Attributor:
    """A Ray actor: loads the bundle in its constructor, then attributes one pandas batch per call."""

    def __init__(self, bundle, text_column, targets, target_column, method, call_options, load_options):
        from ..model import load

        self._model = load(bundle, **load_options)
        self._text_column = text_column
        self._targets = targets
        self._target_column = target_column
        self._method = method
        self._options = call_options

    def __call__(self, batch):
        if self._text_column not in batch:
            raise InvalidInputError(f"the dataset has no column {self._text_column!r} (columns: {list(batch)})")
        texts = [str(t) if t is not None else "" for t in batch[self._text_column]]
        if self._target_column is not None:
            targets = [_as_spec(t) for t in batch[self._target_column]]
        else:
            targets = per_text_targets(self._targets, len(texts))
        records = list(attribute_records(self._model, texts, targets, self._method, **self._options))
        out = batch.copy()
        for column in RESULT_COLUMNS:
            out[column] = [record[column] for record in records]
        return out


def _as_spec(value):
    """A target column's cell: a string, a list (arrow gives numpy arrays), a mapping, or missing (None)."""
    import pandas as pd

    if isinstance(value, str | dict):
        return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return list(value)
    return None if value is None or pd.isna(value) else value


def attribute_dataset(
    ds,
    bundle: str | os.PathLike,
    *,
    text_column: str = "text",
    targets=None,
    method="occlusion",
    batch_size: int = 16,
    concurrency: int | tuple[int, int] = 1,
    num_gpus: float = 0,
    seed: int | None = None,
    truncate: str | None = None,
    per_token: bool = False,
    **load_options,
):
    """Attributes every row of a `ray.data.Dataset`; returns a `ray.data.Dataset`.

    The output holds the input columns plus `tokens`, `targets`, `matrix` (per row an [n_tokens,
    n_targets] array), `target_scores`, `method`, `parameters` and `error` ("" on success; a bad
    row, such as an empty or too long text, gets its message and the run goes on).

    targets: one spec for every row, None (each row's top prediction), or the name of a column
    holding each row's targets (a column name wins over a plain string target). method: a name or a
    config. batch_size: rows per actor call. concurrency: actors (or a (min, max) pool). num_gpus:
    GPUs per actor; with > 0 the actors load the bundle with providers=("cuda", "cpu").
    load_options: keyword arguments of attribfast.load (threads, memory_budget, ...).
    """
    from ..methods import resolve_method

    resolve_method(method)  # an unknown name fails here, not inside every actor
    columns = ds.columns() or []
    target_column = targets if isinstance(targets, str) and targets in columns else None
    if num_gpus and "providers" not in load_options:
        load_options["providers"] = ("cuda", "cpu")
    call_options = {"seed": seed, "truncate": truncate, "per_token": per_token}
    return ds.map_batches(
        _Attributor,
        fn_constructor_kwargs={
            "bundle": os.fspath(bundle),
            "text_column": text_column,
            "targets": None if target_column else targets,
            "target_column": target_column,
            "method": method,
            "call_options": call_options,
            "load_options": load_options,
        },
        batch_size=batch_size,
        batch_format="pandas",
        compute=_actor_pool(concurrency),
        num_gpus=num_gpus,
    )


def _actor_pool(concurrency):
    from ray.data import ActorPoolStrategy

    if isinstance(concurrency, tuple):
        low, high = concurrency
        return ActorPoolStrategy(min_size=low, max_size=high)
    return ActorPoolStrategy(size=concurrency)
