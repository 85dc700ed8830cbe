"""Your own ONNX model ("scores"): its float output is a score vector [batch, n_scores]; a target is
a score column, by index or by label. Perturbation methods only (there is no gradient graph)."""

from __future__ import annotations

import numpy as np

from ..errors import TargetError
from .base import TargetPlan, Task, as_list, no_generate


class Scores(Task):
    name = "scores"
    target_inputs = ()
    target_axes = {}
    score_kinds = ("model output",)
    auto_class = ""

    def plan(self, model, encoded, targets, generate, per_token) -> TargetPlan:
        no_generate(self.name, generate, per_token)
        spec = model._spec
        n_columns, names = model._byo_columns, spec.labels
        if targets is None:
            (scores,) = model.session("forward").run(model._byo_feeds(encoded.ids[None]), [spec.score_output])
            columns = [int(np.argmax(scores[0]))]
        else:
            columns = []
            for target in as_list(targets, (str, int), "score column names or indices"):
                if isinstance(target, str):
                    if names is None or target not in names:
                        raise TargetError(f"unknown target {target!r} (possible: {', '.join(names or ())})")
                    target = names.index(target)
                if not 0 <= target < n_columns:
                    raise TargetError(f"score column {target} is out of range (the model has {n_columns})")
                if target in columns:
                    raise TargetError(f"score column {target} is asked for twice")
                columns.append(int(target))
        mapping = [-1] * n_columns
        for k, column in enumerate(columns):
            mapping[column] = k
        return TargetPlan(
            labels=tuple(names[c] if names else str(c) for c in columns),
            suffixes=[[]],
            extras={},
            column_targets=[mapping],
            horizons=[encoded.ids.size - 1 if spec.causal else -1],
            gradient_suffixes=[],
            gradient_extras={},
        )
