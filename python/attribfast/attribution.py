"""The result of every attribution: a tokens x targets matrix with everything needed to read it."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import InvalidInputError
from .spans import LEVELS, level_groups, span_label
from .words import word_groups

RESULT_FORMAT = "attribfast-attribution"
RESULT_VERSION = 2  # 2: faithfulness figures (results without them are still written as 1)
NORMALIZATIONS = ("maxabs", "l1")


@dataclass(frozen=True, kw_only=True, eq=False)
class Attribution:
    """Attribution of targets to input tokens.

    matrix: [n_tokens, n_targets] float32. tokens: readable token strings (spaces made visible).
    token_ids, offsets ([n_tokens, 2] character spans in text), special (True for special tokens),
    word_ids (the tokenizer's word of each token, -1 for none; see attribfast.words).
    contrasts: for contrastive results, per column what its target is contrasted with (a target
    label or "others"); the column is score(target) - score(contrast) and its label
    "target vs contrast". None for plain results.
    targets: a label per column. target_scores: the clean score of each target. method and
    parameters: how it was computed. standard_errors: per cell, for sampling methods. deltas and
    steps: IG's convergence delta and steps used, per target. evaluations: model rows run.
    token_positions: token positions those rows computed (batch x padded length of every model run;
    prefix reuse lowers it, not the rows); 0 where not counted (gradient methods).
    quantization: the bundle's quantization ("dynamic-int8", attribfast.quantize) or "" for none;
    perturbation methods ran its int8 graphs, gradient methods its float32 gradient graph.
    faithfulness: the figures of model.evaluate / attribute(evaluate=...) as plain values (per target
    "values", the sampled "curves", "parameters", cost), or None; faithfulness_table() shows them.
    """

    matrix: np.ndarray
    tokens: tuple[str, ...]
    targets: tuple[str, ...]
    method: str
    parameters: dict = field(default_factory=dict)
    text: str = ""
    token_ids: np.ndarray | None = None
    offsets: np.ndarray | None = None
    special: np.ndarray | None = None
    word_ids: np.ndarray | None = None
    target_scores: np.ndarray | None = None
    standard_errors: np.ndarray | None = None
    deltas: np.ndarray | None = None
    steps: np.ndarray | None = None
    task: str = ""
    score: str = ""
    bundle_hash: str = ""
    quantization: str = ""
    evaluations: int = 0
    token_positions: int = 0
    seconds: float = 0.0
    contrasts: tuple[str, ...] | None = None
    faithfulness: dict | None = None

    def __post_init__(self):
        matrix = np.asarray(self.matrix, dtype=np.float32)
        if matrix.ndim != 2:
            raise InvalidInputError(f"matrix must be 2-D [tokens, targets], got shape {matrix.shape}")
        n_tokens, n_targets = matrix.shape
        set_ = object.__setattr__
        set_(self, "matrix", matrix)
        # Plain values only, so that to_dict() and save() can write them (a config may hold numpy
        # integers, e.g. seed=np.int64(0)).
        set_(self, "parameters", _plain(dict(self.parameters)))
        if self.faithfulness is not None:
            # Through JSON once, so a saved and loaded result holds the very same values (lists).
            set_(self, "faithfulness", json.loads(json.dumps(_plain(dict(self.faithfulness)))))
        set_(self, "tokens", tuple(str(t) for t in self.tokens))
        set_(self, "targets", tuple(str(t) for t in self.targets))
        if len(self.tokens) != n_tokens:
            raise InvalidInputError(f"{len(self.tokens)} tokens for a matrix of {n_tokens} rows")
        if len(self.targets) != n_targets:
            raise InvalidInputError(f"{len(self.targets)} targets for a matrix of {n_targets} columns")
        if self.contrasts is not None:
            set_(self, "contrasts", tuple(str(c) for c in self.contrasts))
            if len(self.contrasts) != n_targets:
                raise InvalidInputError(f"{len(self.contrasts)} contrasts for a matrix of {n_targets} columns")
        expected = {
            "token_ids": ((n_tokens,), np.int64),
            "offsets": ((n_tokens, 2), np.int64),
            "special": ((n_tokens,), np.bool_),
            "word_ids": ((n_tokens,), np.int64),
            "target_scores": ((n_targets,), np.float64),
            "standard_errors": ((n_tokens, n_targets), np.float32),
            "deltas": ((n_targets,), np.float64),
            "steps": ((n_targets,), np.int64),
        }
        for name, (shape, dtype) in expected.items():
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, dtype=dtype)
            if value.shape != shape:
                raise InvalidInputError(f"{name} must have shape {shape}, got {value.shape}")
            set_(self, name, value)

    @property
    def shape(self) -> tuple[int, int]:
        """(n_tokens, n_targets)."""
        return self.matrix.shape

    def __repr__(self) -> str:
        return (
            f"Attribution(method={self.method!r}, tokens={len(self.tokens)}, targets={list(self.targets)}, "
            f"task={self.task!r})"
        )

    # Views -------------------------------------------------------------------------------------

    def to_pandas(self):
        """A DataFrame: one row per token (index = readable tokens), one column per target (contrastive
        columns: "target vs contrast", and the columns' name says so)."""
        import pandas as pd

        frame = pd.DataFrame(self.matrix, index=list(self.tokens), columns=list(self.targets))
        frame.columns.name = "target" if self.contrasts is None else "target vs contrast"
        if self.faithfulness is not None:
            frame.attrs["faithfulness"] = self.faithfulness_table()
        return frame

    def faithfulness_table(self):
        """The faithfulness figures as a DataFrame: one row per metric, one column per target
        (attribfast.faithfulness; docs/faithfulness.md). None if the result was not evaluated."""
        from .faithfulness.table import figures_table

        return None if self.faithfulness is None else figures_table(self.faithfulness, self.targets)

    def to_dict(self) -> dict:
        """Plain JSON-ready values."""
        out = {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "method": self.method,
            "parameters": self.parameters,
            "task": self.task,
            "score": self.score,
            "text": self.text,
            "tokens": list(self.tokens),
            "targets": list(self.targets),
            "matrix": self.matrix.tolist(),
            "bundle_hash": self.bundle_hash,
            "quantization": self.quantization,
            "evaluations": self.evaluations,
            "token_positions": self.token_positions,
            "seconds": self.seconds,
            "contrasts": None if self.contrasts is None else list(self.contrasts),
            "faithfulness": self.faithfulness,
        }
        for name in self._ARRAYS[1:]:
            value = getattr(self, name)
            out[name] = None if value is None else value.tolist()
        return out

    # Files ---------------------------------------------------------------------------------------

    _ARRAYS = (
        "matrix",
        "token_ids",
        "offsets",
        "special",
        "word_ids",
        "target_scores",
        "standard_errors",
        "deltas",
        "steps",
    )

    def save(self, path: str | os.PathLike) -> None:
        """Writes one .npz holding the arrays bit for bit and the rest as JSON (lossless)."""
        meta = {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "tokens": list(self.tokens),
            "targets": list(self.targets),
            "method": self.method,
            "parameters": self.parameters,
            "text": self.text,
            "task": self.task,
            "score": self.score,
            "bundle_hash": self.bundle_hash,
            "quantization": self.quantization,
            "evaluations": self.evaluations,
            "token_positions": self.token_positions,
            "seconds": self.seconds,
            "contrasts": None if self.contrasts is None else list(self.contrasts),
        }
        if self.faithfulness is not None:
            # Version 2, so that an older attribfast refuses it with a clear error.
            meta.update(version=2, faithfulness=self.faithfulness)
        else:
            meta["version"] = 1
        arrays = {name: getattr(self, name) for name in self._ARRAYS if getattr(self, name) is not None}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        with open(path, "wb") as f:
            f.write(buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Attribution:
        """Reads a result written by save(), exactly as it was saved."""
        with np.load(path, allow_pickle=False) as data:
            if "meta" not in data:
                raise InvalidInputError(f"{path} is not a saved Attribution")
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != RESULT_FORMAT:
                raise InvalidInputError(f"{path} is not a saved Attribution")
            if meta.get("version", 0) > RESULT_VERSION:
                raise InvalidInputError(f"{path} was saved by a newer attribfast (result version {meta['version']})")
            arrays = {name: data[name] for name in cls._ARRAYS if name in data}
        meta.pop("format")
        meta.pop("version")
        meta["tokens"] = tuple(meta["tokens"])
        meta["targets"] = tuple(meta["targets"])
        if meta.get("contrasts") is not None:
            meta["contrasts"] = tuple(meta["contrasts"])
        return cls(**meta, **arrays)

    # Transformations -------------------------------------------------------------------------

    def normalize(self, mode: str | None = "maxabs") -> Attribution:
        """Scales each column: by its max |value| ("maxabs"), its sum of |values| ("l1"), or not (None)."""
        if mode is None:
            return self
        if mode not in NORMALIZATIONS:
            raise InvalidInputError(f"normalize takes one of {', '.join(NORMALIZATIONS)} or None, got {mode!r}")
        reduce = np.max if mode == "maxabs" else np.sum
        scale = reduce(np.abs(self.matrix.astype(np.float64)), axis=0)
        scale[scale == 0] = 1.0
        errors = None if self.standard_errors is None else (self.standard_errors / scale).astype(np.float32)
        return replace(
            self,
            matrix=(self.matrix / scale).astype(np.float32),
            standard_errors=errors,
            parameters={**self.parameters, "normalized": mode},
        )

    def aggregate(self, level: str = "word") -> Attribution:
        """Sums subword rows into words: the tokenizer's words (its pre-tokenizer's, so punctuation
        and text without spaces split as the tokenizer splits them), or chunks between whitespace
        where the result has no word ids (attribfast.words). Special tokens stay alone.
        level "sentence", "line" or "paragraph" sums them into those spans (attribfast.spans), each
        row labelled by its text (shortened past 40 characters).

        Standard errors are combined as if independent (root of the sum of squares).
        """
        if level != "word" and level not in LEVELS:
            raise InvalidInputError(f"aggregate supports 'word', {', '.join(map(repr, LEVELS))}, got {level!r}")
        if self.offsets is None:
            raise InvalidInputError(f"{level} aggregation needs token offsets")
        if level == "word":
            groups = word_groups(self.text, self.offsets, self.special, self.word_ids)
        else:
            groups = level_groups(level, self.text, self.offsets, self.special)
        n_words = max(groups) + 1
        matrix = np.zeros((n_words, self.matrix.shape[1]), np.float64)
        squares = np.zeros_like(matrix)
        starts = np.full(n_words, np.iinfo(np.int64).max)
        ends = np.zeros(n_words, np.int64)
        special = np.zeros(n_words, bool)
        labels = [""] * n_words
        for row, group in enumerate(groups):
            matrix[group] += self.matrix[row]
            if self.standard_errors is not None:
                squares[group] += self.standard_errors[row].astype(np.float64) ** 2
            start, end = self.offsets[row]
            if self.special is not None and self.special[row]:
                special[group] = True
                labels[group] = self.tokens[row]
            starts[group] = min(starts[group], start)
            ends[group] = max(ends[group], end)
        for group in range(n_words):
            if not labels[group]:
                span = self.text[starts[group] : ends[group]]
                labels[group] = span.strip() if level == "word" else span_label(span)
        starts[starts == np.iinfo(np.int64).max] = 0
        return replace(
            self,
            matrix=matrix.astype(np.float32),
            tokens=tuple(labels),
            token_ids=None,
            word_ids=np.where(special, -1, np.arange(n_words)),  # each row is a word now: aggregating again keeps it
            offsets=np.stack([starts, ends], axis=1),
            special=special,
            standard_errors=None if self.standard_errors is None else np.sqrt(squares).astype(np.float32),
            parameters={**self.parameters, "aggregated": level},
        )

    def contrast(self, a: str | int, b: str | int) -> Attribution:
        """Column a minus column b (labels or indices; b may be "others": the mean of the other
        columns), as a one-column result labelled "a vs b", with contrasts=(b,).

        For methods linear in the score this equals attributing score(a) - score(b) in one run
        (attribute(..., contrast=...)), standard errors excepted: the per-column errors do not give
        the error of a difference of correlated columns, so their bound se(a) + se(b) is reported.
        Saliency, aggregation "l2" and normalized results refuse (not linear); see docs/semantics.md.
        """
        from .contrast import OTHERS, check_linear_result, combine_columns, contrast_label

        check_linear_result(self)
        if self.contrasts is not None:
            raise InvalidInputError("this result is contrastive already; contrast the plain result")
        n = self.matrix.shape[1]
        first = self._column(a)
        weights = np.zeros((n, 1))
        weights[first, 0] = 1.0
        if isinstance(b, str) and b == OTHERS:
            if n < 2:
                raise InvalidInputError('contrast with "others" needs at least two columns')
            weights[np.arange(n) != first, 0] = -1.0 / (n - 1)
            against = OTHERS
        else:
            second = self._column(b)
            if second == first:
                raise InvalidInputError(f"column {self.targets[first]!r} is contrasted with itself")
            weights[second, 0] = -1.0
            against = self.targets[second]
        combined = combine_columns(
            weights, self.matrix, self.target_scores, self.standard_errors, self.deltas, self.steps
        )
        return replace(self, **combined, targets=(contrast_label(self.targets[first], against),), contrasts=(against,))

    def _column(self, key: str | int) -> int:
        if isinstance(key, int | np.integer) and not isinstance(key, bool):
            if not -len(self.targets) <= key < len(self.targets):
                raise InvalidInputError(f"column {key} is out of range ({len(self.targets)} columns)")
            return int(key) % len(self.targets)
        if isinstance(key, str) and key in self.targets:
            return self.targets.index(key)
        raise InvalidInputError(f"no column {key!r} (columns: {', '.join(map(repr, self.targets))})")

    # Display ---------------------------------------------------------------------------------

    def plot(
        self,
        ax=None,
        annotate: bool = True,
        cmap: str = "RdYlGn",
        vmax: float | str | None = None,
        scale: str = "global",
        title: str | None = None,
    ):
        """Heatmap: rows = tokens, columns = targets, 4-decimal annotations, colours centred at 0.

        Draws on ax if given (labels and colour bar stay inside it); returns (Figure, Axes).
        vmax: the symmetric colour limit: None (largest |value|), a number, or a percentile of
        |values| such as "p99", which keeps a few outliers from turning every other cell pale.
        scale: "global" (one colour range) or "column" (each target against its own limit).
        Long inputs thin their tick labels; annotations drop out when cells are too small.
        """
        from .plot import heatmap

        return heatmap(
            self.matrix,
            self.tokens,
            self.targets,
            ax=ax,
            annotate=annotate,
            cmap=cmap,
            vmax=vmax,
            scale=scale,
            title=title,
        )

    def to_html(self, vmax: float | str | None = None, scale: str = "global") -> str:
        """HTML fragment: per target, the input text with each token on its colour (green raises the
        target's score, red lowers it) and its value printed beneath, plus a colour legend. The text
        keeps its own whitespace, so it wraps. vmax and scale as in plot()."""
        from .htmlview import render

        return render(self, vmax=vmax, scale=scale)

    def save_html(self, path: str | os.PathLike, vmax: float | str | None = None, scale: str = "global") -> None:
        """Writes the HTML view as a standalone page (UTF-8)."""
        from .htmlview import document

        with open(path, "w", encoding="utf-8") as f:
            f.write(document(self, vmax=vmax, scale=scale))

    def _repr_html_(self) -> str:
        return self.to_html()


def _plain(value):
    """value with numpy scalars and arrays made Python numbers and lists, through dicts, lists and tuples."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        items = [_plain(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value
