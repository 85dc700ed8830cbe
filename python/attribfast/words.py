"""Words of an input: which tokens belong together when rows are summed into words
(`Attribution.aggregate("word")`) or perturbed together (`groups="word"`).

One rule, here only: a word is a pre-token of the model's tokenizer (its `Encoding.word_ids`), so
"东京" is two words under a per-character pre-tokenizer and "hello," two words ("hello", ",")
under one that splits punctuation. Whitespace-separated chunks of the text are the fallback where
the tokenizer gives no words: token-id inputs, tokenizers without a pre-tokenizer (their word ids
would make the whole text one word), results saved before word ids were kept.
"""

from __future__ import annotations

import re

import numpy as np

NO_WORD = -1


def tokenizer_word_ids(tokenizer, encoding) -> np.ndarray | None:
    """The pre-tokenizer's word index of each token (NO_WORD for special and added tokens), or None
    where the tokenizer has no pre-tokenizer or gives no word ids."""
    if getattr(tokenizer, "pre_tokenizer", None) is None:
        return None
    ids = getattr(encoding, "word_ids", None)
    if ids is None or all(i is None for i in ids):
        return None
    return np.asarray([NO_WORD if i is None else int(i) for i in ids], np.int64)


def word_groups(
    text: str, offsets: np.ndarray, special: np.ndarray | None, word_ids: np.ndarray | None = None
) -> list[int]:
    """Group index (0, 1, ...) of each token: consecutive tokens of one word share it; special tokens
    and tokens without a word are groups of their own.

    word_ids: the tokenizer's word of each token (tokenizer_word_ids); None: the whitespace-separated
    chunk of text in which each token's first non-space character falls (a token without a span has
    no word).
    """
    offsets = np.asarray(offsets)
    words = _whitespace_words(text, offsets) if word_ids is None else [int(w) for w in word_ids]
    groups: list[int] = []
    previous, count = None, 0
    for row, word in enumerate(words):
        is_special = special is not None and bool(special[row])
        word = None if is_special or word == NO_WORD else word
        if word is None or word != previous:
            count += 1
        groups.append(count - 1)
        previous = word
    return groups


def _whitespace_words(text: str, offsets: np.ndarray) -> list[int]:
    chunks = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    words = []
    for start, end in offsets:
        first = start
        while first < end and text[first].isspace():
            first += 1
        inside = (i for i, (a, b) in enumerate(chunks) if a <= first < b)
        words.append(next(inside, NO_WORD) if end > start else NO_WORD)
    return words
