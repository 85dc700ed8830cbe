"""Many texts through one loaded model, each row's failure recorded instead of raised."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..errors import AttribfastError, InvalidInputError
from ..methods import resolve_method
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
    """
    method = resolve_method(method, model.methods)
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
    prediction). progress: True for a progress bar over the texts.
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
