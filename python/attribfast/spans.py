"""Sentences, lines and paragraphs of a text, and which tokens fall in each: the coarse feature groups
(`groups="sentence" | "line" | "paragraph"`, `Attribution.aggregate(level)`, `Hierarchical`).

Spans are found in the text, then tokens are mapped to them through the tokenizer's offsets, as
word groups are (attribfast.words):

- line: the text between line breaks (\\n, \\r\\n or \\r); lines holding only whitespace are no span.
- paragraph: the text between blank lines (one or more lines holding only whitespace).
- sentence: ends after ., ! or ? (runs of them, then closing quotes or brackets) followed by
  whitespace or the end of the text, unless the word before the period is an abbreviation
  ("Dr.", "e.g.", a single-letter initial such as "J.") or the next word starts in lower case or
  with a digit. A paragraph break always ends a sentence; a text without a final period ends one.

A token belongs to the span in which its first non-space character falls; whitespace between spans
belongs to the span before it (leading whitespace to the first). Special tokens (BOS, CLS, SEP) and
tokens without a span of text are groups of their own, as in word groups.
"""

from __future__ import annotations

import re

import numpy as np

LEVELS = ("sentence", "line", "paragraph")
# Words after which a period does not end a sentence (compared in lower case, periods inside kept).
# Words that also end sentences ("no.", "etc.") are left out: a wrong break costs less than a
# wrong merge.
ABBREVIATIONS = frozenset(
    "dr mr mrs ms prof sr jr st mt vs e.g i.e cf fig figs vol approx dept inc ltd corp "
    "jan feb apr jun jul aug sep sept oct nov dec u.s u.k a.m p.m ph.d".split()
)
_BREAK = r"(?:\r\n|\r(?!\n)|\n)"  # "\r\n" is one break, never two
_LINE_BREAK = re.compile(_BREAK)
_BLANK_LINES = re.compile(rf"{_BREAK}[^\S\r\n]*(?:{_BREAK}[^\S\r\n]*)+")
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")
LABEL_WIDTH = 40


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    """(start, end) without the whitespace at either side, or None if nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def _split(text: str, breaks: re.Pattern, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    end = len(text) if end is None else end
    spans, begin = [], start
    for match in breaks.finditer(text, start, end):
        spans.append((begin, match.start()))
        begin = match.end()
    spans.append((begin, end))
    return [span for span in (_trimmed(text, a, b) for a, b in spans) if span is not None]


def line_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank line, without its surrounding whitespace."""
    return _split(text, _LINE_BREAK)


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each paragraph (text between blank lines), trimmed."""
    return _split(text, _BLANK_LINES)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, trimmed; sentences never cross a paragraph break."""
    spans = []
    for para_start, para_end in paragraph_spans(text):
        begin = para_start
        for match in _SENTENCE_END.finditer(text, para_start, para_end):
            if match.end() < para_end and not _ends_sentence(text, match.start(), match.end(), para_end):
                continue
            spans.append((begin, match.end()))
            begin = match.end()
        spans.append((begin, para_end))
    return [span for span in (_trimmed(text, a, b) for a, b in spans) if span is not None]


def _ends_sentence(text: str, mark: int, after: int, limit: int) -> bool:
    """Whether the punctuation at [mark, after) ends a sentence (text goes on after it)."""
    following = after
    while following < limit and text[following].isspace():
        following += 1
    if following < limit and (text[following].islower() or text[following].isdigit()):
        return False
    if text[mark] != "." or text[mark:after].startswith(".."):
        return True
    word_start = mark
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:mark].lstrip("\"'“‘([").lower()
    if len(word) == 1 and word.isalpha():
        return False  # an initial, as in "J. Smith"
    return word not in ABBREVIATIONS


SPLITTERS = {"sentence": sentence_spans, "line": line_spans, "paragraph": paragraph_spans}


def spans_of(level: str, text: str) -> list[tuple[int, int]]:
    return SPLITTERS[level](text)


def span_groups(text: str, offsets: np.ndarray, special: np.ndarray | None, spans: list[tuple[int, int]]) -> list[int]:
    """Group index (0, 1, ...) of each token: consecutive tokens of one span share it; special tokens
    and tokens without text are groups of their own (module docstring)."""
    offsets = np.asarray(offsets)
    starts = [a for a, _ in spans]
    groups: list[int] = []
    previous, count = None, 0
    for row, (start, end) in enumerate(offsets):
        span = None
        if end > start and not (special is not None and bool(special[row])):
            first = start
            while first < end - 1 and text[first].isspace():
                first += 1
            # The last span starting at or before the token's first character; whitespace before
            # the first span goes with it.
            span = max(0, int(np.searchsorted(starts, first, side="right")) - 1) if spans else 0
        if span is None or span != previous:
            count += 1
        groups.append(count - 1)
        previous = span
    return groups


def level_groups(level: str, text: str, offsets: np.ndarray, special: np.ndarray | None) -> list[int]:
    """Group index of each token at a level of LEVELS."""
    return span_groups(text, offsets, special, spans_of(level, text))


def span_label(text: str) -> str:
    """A row label for a span: its text on one line (whitespace runs made one space), cut to
    LABEL_WIDTH characters at a word boundary, with an ellipsis, where longer."""
    flat = " ".join(text.split())
    if len(flat) <= LABEL_WIDTH:
        return flat
    cut = flat[: LABEL_WIDTH - 1]
    if flat[len(cut)] != " " and " " in cut[LABEL_WIDTH // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"
