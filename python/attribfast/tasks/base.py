"""What every task provides, and the plain data that flows from a task to the methods.

A task owns three things (architecture.md): the torch modules its bundle graphs are traced from
(export side, torch imported only inside those functions), its target planning (run side: targets
given by the user -> a TargetPlan the core understands) and its manifest fields. The exporter and
the pipeline in model.py only talk to tasks through this interface, so adding a task is one module.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import TargetError


@dataclass
class TargetPlan:
    """Targets laid out for the core: segments for perturbation sweeps, one row set per target for gradients.

    labels: the column labels. suffixes: token ids appended after the input per segment (a
    continuation read by teacher forcing), extras: the task's target inputs for the forward graph,
    column_targets / horizons: which columns each segment scores and the last position its score
    reads (-1: the whole input). gradient_suffixes / gradient_extras: the same with one row per column.
    """

    labels: tuple
    suffixes: list
    extras: dict
    column_targets: list
    horizons: list
    gradient_suffixes: list
    gradient_extras: dict
    clean_scores: np.ndarray | None = None
    extra_note: dict = field(default_factory=dict)
    # The same targets packed into fewer rows (tasks.packed.PackedPlan) for perturbation methods.
    packed: Any = None
    # The targets that share a row for the shared-forward gradient graph (tasks.shared_gradient).
    shared_gradient: Any = None


@dataclass(frozen=True)
class ExtraGraph:
    """A graph a task adds to the bundle besides forward and gradient (e.g. next-token logits).

    It is carved out of the same trace as the score graphs: `module(inputs_embeds, attention_mask,
    *extra inputs)` -> one output. inputs: the names of its extra inputs with their dynamic axes;
    example(ids, mask) gives example values for them. with_targets: the module also reads the
    task's target inputs (after its own), and the graph takes them under the same names. validated:
    the generic check against its own torch module applies (else the task validates it itself).
    """

    name: str
    output: str
    module: Any
    inputs: dict = field(default_factory=dict)
    example: Any = None
    with_targets: bool = False
    validated: bool = True


class Task:
    """Base of the tasks. Subclasses set the class attributes and override the methods they need."""

    name: ClassVar[str]
    # Inputs of the score graphs after input_ids / inputs_embeds and attention_mask.
    target_inputs: ClassVar[tuple[str, ...]]
    # Their dynamic axes (axis -> dimension name); batch is always axis 0.
    target_axes: ClassVar[dict]
    score_kinds: ClassVar[tuple[str, ...]]
    # The transformers Auto class that loads a model directory for this task.
    auto_class: ClassVar[str]
    causal: ClassVar[bool] = False

    # Export side (torch only inside these) -----------------------------------------------------

    def check_model(self, model) -> None:
        """Raises UnsupportedArchitectureError when the model lacks what the task needs."""

    def target_input_axes(self) -> dict:
        """Dynamic axes of each target input (the same target_axes for all unless a task says otherwise)."""
        return {name: self.target_axes for name in self.target_inputs}

    def score_module(self, model, score: str):
        """The module (inputs_embeds, attention_mask, *targets) -> scores [batch, n_targets]."""
        raise NotImplementedError

    def extra_graphs(self, model, score_module) -> list[ExtraGraph]:
        return []

    def packed_graphs(
        self, model, score_module, with_reuse: bool, max_length: int
    ) -> tuple[list[ExtraGraph], str | None]:
        """Graphs that score several targets from one row (causal LMs), or ([], why not)."""
        return [], f"{self.name} targets are not packed"

    def example_targets(self, model, lengths: list[int], n_targets: int, length: int, generator) -> tuple:
        """Random but valid target inputs for rows of the given lengths."""
        raise NotImplementedError

    def manifest_fields(self, model, tokenizer) -> dict:
        return {}

    # Run side -----------------------------------------------------------------------------------

    def plan(self, model, encoded, targets, generate: int | None, per_token: bool) -> TargetPlan:
        """The TargetPlan for one encoded input. model: the AttributionModel (sessions, tokenizer)."""
        raise NotImplementedError


_shared: dict | None = None


@contextlib.contextmanager
def sharing():
    """Inside, shared() computes a function once per set of input tensors: the joint trace reads
    the model's hidden states for the scores and for the extra graphs, and traces them once."""
    global _shared
    _shared = {}
    try:
        yield
    finally:
        _shared = None


def shared(owner, fn, *tensors):
    """fn(*tensors), computed once per (owner, tensors) inside sharing()."""
    if _shared is None:
        return fn(*tensors)
    key = (id(owner), *(id(t) for t in tensors))
    if key not in _shared:
        _shared[key] = (fn(*tensors), tensors)  # the tensors are kept alive so their ids stay unique
    return _shared[key][0]


def as_list(targets, kinds, description: str) -> list:
    if isinstance(targets, str | int | np.integer):
        items = [targets]
    else:
        try:
            items = list(targets)
        except TypeError:
            raise TargetError(f"targets must be {description} (one or a list), got {type(targets).__name__}") from None
    if not items:
        raise TargetError(f"targets is empty; expected {description}")
    for item in items:
        if not isinstance(item, kinds) or isinstance(item, bool):
            raise TargetError(f"targets must be {description}, got {type(item).__name__} {item!r}")
    return [int(i) if isinstance(i, np.integer) else i for i in items]


def unique_labels(labels: list[str]) -> list[str]:
    """Column labels made unique ("a", "a" -> "a", "a (2)") so tables and plots keep them apart."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def no_generate(task: str, generate, per_token: bool) -> None:
    if generate is not None:
        raise TargetError(f"generate applies to causal LMs and seq2seq models, not to {task}")
    if per_token:
        raise TargetError(f"per_token applies to causal LMs and seq2seq models, not to {task}")
