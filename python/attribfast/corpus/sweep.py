"""Many texts through one loaded model, each row's failure recorded instead of raised."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..errors import AttribfastError, InvalidInputError
from ..methods import resolve_method
from .pooled import POOL_CHUNK, poolable, pooled_attributions
from .records import error_record, to_record


def per_text_targets(targets, n_texts: int) -> list:
    """The targets of each text: one spec for all (None, a string, a list of labels or ids, a mapping),
    or a list aligned with the texts whose items are themselves specs (lists, tuples, mappings or None).
    """
    if isinstance(targets, list | tuple) and targets and all(_is_spec(t) for t in targets):
        if len(targets) != n_texts:
            raise InvalidInputError(
                f"targets aligned with the texts must have one entry per text: {len(targets)} for {n_texts} texts"
            )
        return list(targets)
    return [targets] * n_texts


def _is_spec(value) -> bool:
    return value is None or isinstance(value, list | tuple | dict)


def attribute_records(
    model,
    texts: Sequence[str] | Iterable[str],
    targets: Sequence | None,
    method,
    *,
    progress=None,
    **options,
) -> Iterator[dict]:
    """One record per text (records.RESULT_COLUMNS). targets: one spec per text, aligned.

    A text that fails with an attribfast error (empty, too long, unknown target) gets its message
    in `error` and the sweep goes on; any other exception is a bug and propagates. options: the
    keyword arguments of AttributionModel.attribute (batch_size, seed, truncate, per_token, ...).
    Perturbation and gradient methods run pooled (corpus/pooled.py): chunks of POOL_CHUNK texts, each
    one core sweep whose batches mix the texts; other methods and options run text by text.
    """
    method = resolve_method(method, model.methods)
    texts, targets = list(texts), list(targets)
    if not poolable(method, options):
        yield from _one_by_one(model, texts, targets, method, progress, options)
        return
    for start in range(0, len(texts), POOL_CHUNK):
        part = slice(start, start + POOL_CHUNK)
        chunk = _ChunkProgress(progress)
        try:
            results = pooled_attributions(model, texts[part], targets[part], method, chunk.update, **options)
        except AttribfastError:
            # A failure of the shared core call (a text with a non-finite score): text by text, so
            # that only the texts that fail get an error.
            results = None
        if results is None:
            yield from _one_by_one(model, texts[part], targets[part], method, None, options)
        else:
            for result in results:
                yield error_record(result, method.name) if isinstance(result, Exception) else to_record(result)
        chunk.close(len(texts[part]))


class _ChunkProgress:
    """A chunk's progress in texts: the core's share as it runs, the rest when the chunk is done."""

    def __init__(self, progress):
        self._progress = progress
        self._done = 0

    def update(self, texts: int) -> None:
        self._done += texts
        if self._progress is not None:
            self._progress(texts)

    def close(self, n_texts: int) -> None:
        if n_texts > self._done:
            self.update(n_texts - self._done)


def _one_by_one(model, texts, targets, method, progress, options) -> Iterator[dict]:
    for text, text_targets in zip(texts, targets, strict=True):
        try:
            result = model.attribute(text, targets=text_targets, method=method, **options)
        except AttribfastError as error:
            yield error_record(error, method.name)
        else:
            yield to_record(result)
        if progress is not None:
            progress(1)


def attribute_corpus(model, texts: Sequence[str], targets=None, method="occlusion", *, progress=False, **options):
    """A pandas DataFrame: column `text` plus one column per result field, one row per text.

    targets: one spec for all texts, a list aligned with the texts, or None (each text's top
    prediction). progress: True for a progress bar over the texts. Perturbation and gradient methods
    evaluate the variants (gradient points) of many texts in shared batches (results equal to per-text
    calls up to float32 batching; causal LMs run without prefix reuse there).
    """
    import pandas as pd

    texts = list(texts)
    aligned = per_text_targets(targets, len(texts))
    bar = _bar(len(texts)) if progress else None
    try:
        update = bar.update if bar is not None else None
        records = list(attribute_records(model, texts, aligned, method, progress=update, **options))
    finally:
        if bar is not None:
            bar.close()
    frame = pd.DataFrame(records)
    frame.insert(0, "text", texts)
    return frame


def _bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="text", desc="attributing")
