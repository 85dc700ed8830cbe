"""The tasks, one module each; TASKS names them. A task owns its export score module, its target
planning and its manifest fields (see base.Task)."""

from __future__ import annotations

from ..errors import UnknownTaskError
from .base import ExtraGraph, TargetPlan, Task
from .causal_lm import CausalLM
from .classification import Classification
from .scores import Scores
from .seq2seq import Seq2Seq
from .similarity import Similarity

TASKS: dict[str, Task] = {task.name: task for task in (CausalLM(), Classification(), Similarity(), Seq2Seq())}
# Models brought as plain ONNX (AttributionModel.from_onnx) get this task; bundles never do.
SCORES = Scores()


def get_task(name: str) -> Task:
    if name == SCORES.name:
        return SCORES
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r} (possible: {', '.join(TASKS)})")
    return TASKS[name]


__all__ = ["SCORES", "TASKS", "ExtraGraph", "Task", "TargetPlan", "get_task"]
