"""Corpus scale: many texts in one call, on one machine or on Ray Data (docs/corpus.md).

attribute_corpus(model, texts, targets, method): a pandas DataFrame, one row per text.
attribute_dataset(ds, bundle, ...): a ray.data.Dataset in, a ray.data.Dataset out (needs the
`attribfast[ray]` extra). to_attribution(row): an output row back to an Attribution. Every output
row has the columns of RESULT_COLUMNS; a failed row has its error message in `error`.
"""

from .ray_data import attribute_dataset
from .records import RESULT_COLUMNS, to_attribution
from .sweep import attribute_corpus

__all__ = ["RESULT_COLUMNS", "attribute_corpus", "attribute_dataset", "to_attribution"]
