"""What a method config needs to run itself through the core: the sessions, the problems built from
an encoded input and a TargetPlan, baseline tokens and embeddings, and feature groups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import _core
from .errors import InvalidInputError, MethodNotAvailableError
from .session import Session
from .spans import LEVELS, level_groups
from .tasks.packed import PACKED, PACKED_SUFFIX, PACKED_SUFFIX_OUTPUT
from .tasks.prefix import PREFIX, SUFFIX
from .tasks.shared_gradient import GRAPH as SHARED_GRADIENT
from .tasks.shared_gradient import OUTPUT as SHARED_GRADIENT_OUTPUT
from .words import word_groups


@dataclass
class Spec:
    """What the pipeline needs to know about a model, from a bundle manifest or from the user."""

    task: str
    graphs: dict
    tokenizer: object | None
    special_tokens: dict
    special_ids: frozenset
    labels: tuple | None
    max_length: int | None
    hidden_size: int
    num_heads: int
    vocab_size: int | None
    causal: bool
    score: str
    bundle_hash: str = ""
    ids_input: str = "input_ids"
    mask_input: str = "attention_mask"
    score_output: str = "scores"
    embeddings_loader: Callable[[], np.ndarray] | None = None
    target_inputs: tuple = ()
    # Further integer inputs of an own ONNX model, fed with zeros (token_type_ids) or the tokenizer's values.
    zero_inputs: tuple = ()
    manifest: dict = field(default_factory=dict)


@dataclass
class Encoded:
    ids: np.ndarray
    tokens: tuple
    offsets: np.ndarray
    special: np.ndarray
    text: str
    # The tokenizer's word of each token (attribfast.words); None: words are whitespace-separated.
    word_ids: np.ndarray | None = None


class Engine:
    """Sessions (opened on first use) and the problem builders over one model's Spec."""

    def __init__(self, spec: Spec, provider: str, threads: int | None, device_id: int = 0):
        self._spec = spec
        self._provider = provider
        self._device_id = device_id
        self._threads = threads
        self._sessions: dict[str, Session] = {}
        self._embeddings: np.ndarray | None = None

    def session(self, graph: str) -> Session:
        if graph not in self._spec.graphs:
            raise MethodNotAvailableError(f"this model has no {graph} graph")
        if graph not in self._sessions:
            # Only the graphs the sweeps run back to back may spin; an idle spinning pool would
            # take cores from them.
            self._sessions[graph] = Session(
                self._spec.graphs[graph],
                provider=self._provider,
                device_id=self._device_id,
                threads=self._threads,
                spinning=graph in ("forward", "gradient", SUFFIX, PACKED, PACKED_SUFFIX, SHARED_GRADIENT),
            )
        return self._sessions[graph]

    def score_problem(self, encoded: Encoded, plan):
        """(ScoreProblem, core session) for a perturbation method: the plan's packed layout where it
        has one (every continuation from one row), else one row per segment on the forward graph."""
        spec = self._spec
        layout = plan.packed or plan
        graph, output = (plan.packed.graph, plan.packed.output) if plan.packed else ("forward", spec.score_output)
        problem = _core.ScoreProblem()
        problem.ids_input = spec.ids_input
        problem.mask_input = spec.mask_input
        problem.score_output = output
        problem.pad_id = self.pad_id()
        problem.ids = encoded.ids.tolist()
        problem.suffixes = layout.suffixes
        extras = dict(layout.extras)
        for name in spec.zero_inputs:
            # Constant per row: the core repeats an extra's single row over the batch.
            extras.setdefault(name, np.zeros((1, encoded.ids.size), np.int64))
        problem.extras = [_core.ExtraInput(name, value) for name, value in extras.items()]
        problem.column_targets = layout.column_targets
        problem.horizons = layout.horizons
        problem.n_targets = len(plan.labels)
        suffix, suffix_output = (PACKED_SUFFIX, PACKED_SUFFIX_OUTPUT) if graph == PACKED else (SUFFIX, "suffix_scores")
        if self.reuses_prefix() and suffix in spec.graphs:
            problem.set_prefix_reuse(self.session(PREFIX)._session, self.session(suffix)._session,
                                     score_output=suffix_output)
        return problem, self.session(graph)._session

    def reuses_prefix(self) -> bool:
        """Whether perturbation sweeps can reuse the clean input's key/value cache: a causal-LM
        bundle exported with the prefix and suffix_score graphs (older bundles lack them)."""
        graphs = self._spec.graphs
        # fp16 copies convert the suffix graph without keeping its score head in fp32 (the
        # converter looks for the forward graph's `scores`), so they run the full path.
        half = self._spec.manifest.get("dtype") == "float16"
        # int8 copies too: dynamic quantization scales activations by the whole tensor, which the
        # prefix and suffix graphs split differently from the forward graph; on the tiny GPT-2,
        # reuse moved occlusion 2.5x as far as int8 itself moves it from fp32.
        int8 = bool(self._spec.manifest.get("quantization"))
        return self._spec.causal and not half and not int8 and PREFIX in graphs and SUFFIX in graphs

    def gradient_problem(self, encoded: Encoded, plan, only: list | None = None):
        """(GradientProblem, core session): one row per target on the gradient graph, or, where the
        bundle has the shared gradient graph and the plan groups its targets, one row per group.
        only: these targets alone, a row each (the result's columns follow this order)."""
        problem = _core.GradientProblem()
        problem.ids = encoded.ids.tolist()
        shared = plan.shared_gradient if self.shares_gradients() and only is None else None
        if shared is None:
            chosen = range(len(plan.gradient_suffixes)) if only is None else only
            problem.suffixes = [plan.gradient_suffixes[t] for t in chosen]
            problem.extras = [_core.ExtraInput(name, np.ascontiguousarray(value[list(chosen)]))
                              for name, value in plan.gradient_extras.items()]
            return problem, self.session("gradient")._session
        problem.suffixes = shared.suffixes
        problem.extras = [_core.ExtraInput(name, value) for name, value in shared.extras.items()]
        problem.target_group = shared.target_group
        problem.target_slot = shared.target_slot
        problem.score_output = self._spec.manifest["graphs"][SHARED_GRADIENT]["outputs"][0]
        problem.gradient_output = SHARED_GRADIENT_OUTPUT
        return problem, self.session(SHARED_GRADIENT)._session

    def shares_gradients(self) -> bool:
        """Whether gradient methods can take several targets from one forward: a bundle with the
        shared gradient graph. fp16 and int8 copies keep a row per target (their converters do not
        keep the looped backward's score head as they keep the gradient graph's)."""
        manifest = self._spec.manifest
        derived = manifest.get("dtype") == "float16" or manifest.get("quantization")
        return SHARED_GRADIENT in self._spec.graphs and not derived

    def pad_id(self) -> int:
        special = self._spec.special_tokens
        return next((int(special[n]) for n in ("pad", "eos", "unk") if special.get(n) is not None), 0)

    def baseline_id(self, baseline) -> int:
        special = self._spec.special_tokens
        if baseline is None:
            for name in ("pad", "unk", "eos"):
                if special.get(name) is not None:
                    return int(special[name])
            raise InvalidInputError("the model has no pad, unk or eos token: give a baseline token id")
        if isinstance(baseline, str):
            if special.get(baseline) is None:
                present = [name for name, value in special.items() if value is not None]
                raise InvalidInputError(
                    f"the model has no {baseline} token (possible: {', '.join(present)}, or a token id)"
                )
            return int(special[baseline])
        if self._spec.vocab_size is not None and not 0 <= baseline < self._spec.vocab_size:
            raise InvalidInputError(f"baseline token id {baseline} is outside the vocabulary")
        return int(baseline)

    def groups(self, groups, encoded: Encoded) -> list[int]:
        n = encoded.ids.size
        if groups == "token":
            return list(range(n))
        if groups == "word":
            if not encoded.text:
                raise InvalidInputError("word groups need text input (offsets)")
            return word_groups(encoded.text, encoded.offsets, encoded.special, encoded.word_ids)
        if isinstance(groups, str) and groups in LEVELS:
            if not encoded.text:
                raise InvalidInputError(f"{groups} groups need text input (offsets)")
            return level_groups(groups, encoded.text, encoded.offsets, encoded.special)
        groups = [int(g) for g in groups]
        if len(groups) != n:
            raise InvalidInputError(f"groups has {len(groups)} entries for {n} tokens")
        return groups

    def embedding_matrix(self) -> np.ndarray:
        if self._embeddings is None:
            self._embeddings = np.ascontiguousarray(self._spec.embeddings_loader(), dtype=np.float32)
        return self._embeddings

    def embedding_baseline(self, baseline, encoded: Encoded, embeddings: np.ndarray) -> np.ndarray:
        n, hidden = encoded.ids.size, embeddings.shape[1]
        if isinstance(baseline, np.ndarray):
            if baseline.shape != (n, hidden):
                raise InvalidInputError(f"the baseline must have shape ({n}, {hidden}), got {baseline.shape}")
            return baseline.astype(np.float32)
        if baseline == "zero":
            return np.zeros((n, hidden), np.float32)
        token = self.baseline_id(baseline)
        return np.repeat(embeddings[token][None], n, axis=0)
