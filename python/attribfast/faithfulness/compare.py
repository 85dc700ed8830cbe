"""Comparing attribution methods on one input by their faithfulness figures (attribfast.compare)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import InvalidInputError
from ..methods import resolve_method
from .params import Faithfulness, as_params
from .table import figure_names, plot_curves


@dataclass(frozen=True)
class Comparison:
    """compare()'s answer. table: a DataFrame, one row per (method, target): the faithfulness
    figures, then the attribution's seconds and model rows and the evaluation's. results: each
    method's evaluated Attribution, by method label."""

    table: object
    results: dict = field(default_factory=dict)

    def plot(self, target: int | str = 0, curve: str = "deletion", ax=None, title: str | None = None):
        """One curve (deletion, deletion_lerf, insertion, insertion_lerf) of every method for a target
        column (index or label); returns (Figure, Axes)."""
        lines, x = {}, None
        for label, result in self.results.items():
            curves = result.faithfulness.get("curves", {})
            if curve not in curves:
                raise InvalidInputError(f"no {curve!r} curve: evaluate with metrics including 'deletion'/'insertion'")
            column = result._column(target)
            lines[label] = curves[curve][column]
            x = curves["x"]
        name = next(iter(self.results.values())).targets[column]
        return plot_curves(lines, x, ax=ax, title=title or f"{curve} curves, target {name!r}", curve=curve)


def compare(model, text, targets=None, methods=("occlusion", "saliency"), evaluate=True, **attribute_options):
    """Attributes `text` with each method, evaluates each result's faithfulness on the same rows
    budget, and returns a Comparison (its .table and .plot()). methods: names or configs (configs of
    one class may repeat: their labels get their parameters). evaluate: True, metric names or an
    attribfast.Faithfulness. attribute_options: passed to model.attribute (batch_size, seed...)."""
    import pandas as pd

    params = as_params(evaluate)
    if isinstance(methods, str) or not methods:
        raise InvalidInputError("methods must be a non-empty list of method names or configs")
    configs = [resolve_method(m, model.methods) for m in methods]
    labels = _labels(configs)
    results, rows = {}, []
    for label, config in zip(labels, configs, strict=True):
        start = time.perf_counter()
        result = model.attribute(text, targets=targets, method=config, evaluate=params, **attribute_options)
        wall = time.perf_counter() - start
        if isinstance(result, list):
            raise InvalidInputError("compare takes one input text")
        results[label] = result
        figures = result.faithfulness
        for column, target in enumerate(result.targets):
            row = {"method": label, "target": target}
            row.update({name: figures["values"][name][column] for name in figure_names(figures)})
            row.update(
                seconds=result.seconds,
                rows=result.evaluations,
                eval_seconds=figures["seconds"],
                eval_rows=figures["rows_run"],
                wall_seconds=wall,
            )
            rows.append(row)
    return Comparison(table=pd.DataFrame(rows).set_index(["method", "target"]), results=results)


def _labels(configs) -> list[str]:
    names = [c.name for c in configs]
    out = []
    for config in configs:
        if names.count(config.name) == 1:
            out.append(config.name)
        else:
            changed = {k: v for k, v in config.parameters().items() if v != type(config)().parameters()[k]}
            out.append(config.name + "(" + ", ".join(f"{k}={v}" for k, v in changed.items()) + ")")
    if len(set(out)) != len(out):
        raise InvalidInputError(f"methods repeat: {out}")
    return out


__all__ = ["Comparison", "Faithfulness", "compare"]
