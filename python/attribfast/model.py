"""Loading a model and attributing: normalise inputs -> validate once -> compute in the core -> Attribution."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _core
from ._runtime import PROVIDERS_ENV, default_providers
from .attribution import Attribution, word_groups
from .bundle import Bundle
from .errors import (
    InputTooLongError,
    InvalidInputError,
    MethodNotAvailableError,
    NonFiniteScoreError,
    TargetError,
)
from .methods import (
    METHODS,
    FeatureAblation,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Lime,
    Method,
    Occlusion,
    Saliency,
    ShapleySampling,
    resolve_method,
)
from .precision import bundle_dtype
from .session import Session

DEFAULT_MEMORY_BUDGET = 1 << 30
# On a GPU, batches may take this share of the device memory free at the first attribution (ORT's
# arena and the weights need the rest).
DEVICE_MEMORY_SHARE = 0.5
TRUNCATIONS = ("left", "right")
VISIBLE_SPACE = "\u2423"  # ␣


@dataclass
class _Spec:
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


@dataclass
class _Encoded:
    ids: np.ndarray
    tokens: tuple
    offsets: np.ndarray
    special: np.ndarray
    text: str


@dataclass
class _Targets:
    """Targets laid out for the core: segments for perturbation sweeps, one row set per target for gradients."""

    labels: tuple
    suffixes: list
    extras: dict
    column_targets: list
    horizons: list
    gradient_suffixes: list
    gradient_extras: dict
    clean_scores: np.ndarray | None = None
    extra_note: dict = field(default_factory=dict)


def load(
    bundle_dir: str | os.PathLike,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    memory_budget: int | None = None,
    device_id: int = 0,
) -> AttributionModel:
    """Loads a bundle (verifying its file hashes) for attribution; needs no torch.

    providers: execution providers in order of preference ("cuda", "cpu"); a provider that cannot
    be used falls back to CPU with a ProviderWarning. None: $ATTRIBFAST_PROVIDERS, else ("cpu",).
    threads: intra-op threads (None: ORT decides). memory_budget: bytes of activations a batch may
    take (default: 1 GiB on CPU, half the free device memory on a GPU); batch sizes follow from it.
    device_id: the CUDA device ordinal.
    """
    bundle = Bundle.load(bundle_dir)
    manifest = bundle.manifest
    bundle_dtype(manifest)  # refuses a precision this version cannot run
    graphs = {name: bundle.graph_path(name) for name in manifest["graphs"]}
    labels = None
    if manifest.get("labels"):
        labels = tuple(manifest["labels"][str(i)] for i in range(len(manifest["labels"])))
    spec = _Spec(
        task=manifest["task"],
        graphs=graphs,
        tokenizer=bundle.tokenizer,
        special_tokens=manifest["special_tokens"],
        special_ids=frozenset(manifest.get("special_ids", [])),
        labels=labels,
        max_length=manifest.get("max_length"),
        hidden_size=manifest["hidden_size"],
        num_heads=manifest["num_heads"],
        vocab_size=manifest["vocab_size"],
        causal=manifest.get("causal", False),
        score=manifest.get("score", ""),
        bundle_hash=bundle.hash,
        embeddings_loader=lambda: bundle.embeddings,
        target_inputs=tuple(manifest["graphs"]["forward"]["inputs"][2:]),
    )
    return AttributionModel(
        spec, providers=providers, threads=threads, memory_budget=memory_budget, device_id=device_id
    )


class AttributionModel:
    """A model ready to attribute. Create it with :func:`attribfast.load` or :meth:`from_onnx`."""

    def __init__(
        self,
        spec: _Spec,
        *,
        providers: Sequence[str] | None,
        threads: int | None,
        memory_budget: int | None,
        device_id: int = 0,
    ):
        from_env = providers is None
        providers = default_providers() if from_env else tuple(providers)
        if not providers or any(p not in ("cpu", "cuda") for p in providers):
            source = f" (from ${PROVIDERS_ENV})" if from_env else ""
            raise InvalidInputError(
                f"providers must be a non-empty sequence of 'cpu'/'cuda', got {providers!r}{source}"
            )
        if memory_budget is not None and memory_budget <= 0:
            raise InvalidInputError("memory_budget must be a positive number of bytes")
        if isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 0:
            raise InvalidInputError(f"device_id must be a non-negative integer, got {device_id!r}")
        self._spec = spec
        self._provider = providers[0]
        self._device_id = device_id
        self._threads = threads
        self._memory_budget_given = memory_budget is not None
        self._memory_budget = memory_budget or DEFAULT_MEMORY_BUDGET
        self._sessions: dict[str, Session] = {}
        self._embeddings: np.ndarray | None = None
        self._device_budget_bytes: int | None = None

    @classmethod
    def from_onnx(
        cls,
        model: str | os.PathLike,
        *,
        tokenizer: str | os.PathLike | object | None = None,
        ids_input: str = "input_ids",
        mask_input: str | None = "attention_mask",
        score_output: str = "scores",
        labels: Sequence[str] | None = None,
        pad_id: int = 0,
        causal: bool = False,
        max_length: int | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        memory_budget: int | None = None,
        device_id: int = 0,
    ) -> AttributionModel:
        """Brings your own ONNX model whose output is a score vector [batch, n_scores].

        The model takes token ids (and optionally an attention mask) and nothing else. Targets are
        score columns, by index or by name from labels. Perturbation methods only (no gradient graph).
        tokenizer: a tokenizers.Tokenizer or a tokenizer.json path, needed to attribute text (token
        id lists work without). causal: the model is a causal LM (scores at the last position).
        """
        if tokenizer is not None and not hasattr(tokenizer, "encode"):
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(os.fspath(tokenizer))
        spec = _Spec(
            task="scores",
            graphs={"forward": Path(model)},
            tokenizer=tokenizer,
            special_tokens={"pad": pad_id},
            special_ids=frozenset(),
            labels=tuple(labels) if labels is not None else None,
            max_length=max_length,
            hidden_size=768,
            num_heads=12,
            vocab_size=None,
            causal=causal,
            score="model output",
            ids_input=ids_input,
            mask_input=mask_input or "",
            score_output=score_output,
        )
        model = cls(spec, providers=providers, threads=threads, memory_budget=memory_budget, device_id=device_id)
        model._check_byo_graph()
        return model

    # Introspection ---------------------------------------------------------------------------

    @property
    def task(self) -> str:
        return self._spec.task

    @property
    def labels(self) -> tuple | None:
        return self._spec.labels

    @property
    def methods(self) -> tuple[str, ...]:
        """Names of the methods this model can run."""
        graphs = self._spec.graphs
        return tuple(name for name, cls in METHODS.items() if cls.needs in graphs)

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
                spinning=graph in ("forward", "gradient"),
            )
        return self._sessions[graph]

    # Attribution -----------------------------------------------------------------------------

    def attribute(
        self,
        inputs: str | Sequence[int] | Sequence[str],
        targets=None,
        method: str | Method = "occlusion",
        generate: int | None = None,
        batch_size: int | None = None,
        progress: bool | Callable[[int, int], None] | None = None,
        seed: int | None = None,
        truncate: str | None = None,
    ) -> Attribution | list[Attribution]:
        """Attributes targets to the input tokens.

        inputs: a text (or a list of token ids); a list of texts gives a list of results.
        targets: continuation strings (causal LMs: score = log-probability of the continuation given
            the text, teacher-forced, summed over its tokens), class names or ids (classifiers),
            reference sentences (similarity), score columns (own ONNX models); or a mapping
            {column label: target}. None: the model's top prediction.
        generate: greedily generate this many tokens (causal LMs) and attribute each.
        method: a name from attribfast.METHODS or a config such as attribfast.Occlusion(window=2).
        batch_size: rows per model run (default: chosen from the memory budget).
        progress: True for a progress bar, or a callable (rows_done, rows_total).
        seed: seed of sampling methods whose config has none (default 0).
        truncate: inputs longer than the model's maximum raise InputTooLongError unless this is
            "left" (drop the first tokens) or "right" (drop the last).
        """
        method = resolve_method(method, self.methods)
        if truncate is not None and truncate not in TRUNCATIONS:
            raise InvalidInputError(f"truncate must be None, 'left' or 'right', got {truncate!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InvalidInputError("batch_size must be a positive integer (or None)")
        if seed is not None and (not isinstance(seed, int) or seed < 0):
            raise InvalidInputError("seed must be a non-negative integer (or None)")
        if isinstance(inputs, str) or _is_id_list(inputs):
            return self._attribute_one(inputs, targets, method, generate, batch_size, progress, seed, truncate)
        texts = list(inputs)
        if not texts:
            raise InvalidInputError("inputs is an empty list")
        return [self._attribute_one(t, targets, method, generate, batch_size, progress, seed, truncate) for t in texts]

    def _attribute_one(self, text, targets, method, generate, batch_size, progress, seed, truncate) -> Attribution:
        encoded = self._encode(text, truncate)
        plan = self._plan_targets(encoded, targets, generate)
        policy = _core.BatchPolicy()
        policy.batch_size = batch_size or 0
        policy.memory_budget = self._memory_budget
        policy.hidden_size = self._spec.hidden_size
        policy.num_heads = self._spec.num_heads
        session = self.session(method.needs)
        if session.provider == "cuda":
            policy.max_batch_tokens = 0  # GPUs want the largest batch the memory budget allows
            policy.memory_budget = self._device_budget(session)
        callback, finish = _progress_callback(progress)
        try:
            result = self._compute(method, encoded, plan, policy, callback, seed)
        finally:
            finish()
        return Attribution(
            matrix=result.matrix.astype(np.float32),
            tokens=encoded.tokens,
            targets=plan.labels,
            method=method.name,
            parameters=method.parameters(),
            text=encoded.text,
            token_ids=encoded.ids,
            offsets=encoded.offsets,
            special=encoded.special,
            target_scores=result.clean_scores,
            standard_errors=None if result.standard_error is None else result.standard_error.astype(np.float32),
            deltas=result.delta,
            steps=result.steps,
            task=self._spec.task,
            score=self._spec.score,
            bundle_hash=self._spec.bundle_hash,
            evaluations=result.rows_run,
            seconds=result.seconds,
        )

    def _device_budget(self, session: Session) -> int:
        """Activation bytes a GPU batch may take: the user's budget, else a share of the free device
        memory, read once (later reads would see ORT's own arena as used)."""
        if self._memory_budget_given:
            return self._memory_budget
        if self._device_budget_bytes is None:
            memory = session.device_memory()
            free = memory[0] if memory else DEFAULT_MEMORY_BUDGET / DEVICE_MEMORY_SHARE
            self._device_budget_bytes = max(int(free * DEVICE_MEMORY_SHARE), 1 << 26)
        return self._device_budget_bytes

    # Inputs -------------------------------------------------------------------------------------

    def _encode(self, text, truncate) -> _Encoded:
        spec = self._spec
        if _is_id_list(text):
            if any(not -(2**63) <= int(i) < 2**63 for i in text):
                raise InvalidInputError("token ids must be int64 values (and in the vocabulary)")
            ids = np.asarray(list(text), dtype=np.int64)
            if ids.size == 0:
                raise InvalidInputError("the input has no tokens")
            tokens = tuple(str(i) for i in ids)
            offsets = np.zeros((ids.size, 2), np.int64)
            special = np.array([int(i) in spec.special_ids for i in ids], bool)
            text = ""
        else:
            if not isinstance(text, str):
                raise InvalidInputError(f"inputs must be text or token ids, got {type(text).__name__}")
            if not text.strip():
                raise InvalidInputError("the input text is empty")
            if spec.tokenizer is None:
                raise InvalidInputError("this model has no tokenizer: pass token ids, or give tokenizer= to from_onnx")
            encoding = spec.tokenizer.encode(text)
            ids = np.asarray(encoding.ids, dtype=np.int64)
            offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
            special = np.asarray(encoding.special_tokens_mask, dtype=bool)
            special |= np.array([int(i) in spec.special_ids for i in ids], bool)
            tokens = tuple(
                _readable(text, tok, start, end, is_special)
                for tok, (start, end), is_special in zip(encoding.tokens, offsets, special, strict=True)
            )
            if ids.size == 0:
                raise InvalidInputError("the input text tokenizes to nothing")
        if spec.vocab_size is not None and (ids.min() < 0 or ids.max() >= spec.vocab_size):
            raise InvalidInputError(f"token ids must be in [0, {spec.vocab_size})")
        encoded = _Encoded(ids, tokens, offsets, special, text)
        return self._fit_length(encoded, truncate, reserve=0)

    def _fit_length(self, encoded: _Encoded, truncate, reserve: int) -> _Encoded:
        limit = self._spec.max_length
        if limit is None or encoded.ids.size + reserve <= limit:
            return encoded
        keep = limit - reserve
        if truncate is None or keep < 1:
            raise InputTooLongError(
                f"the input has {encoded.ids.size} tokens (+{reserve} for targets) but the model takes at most "
                f"{limit}; shorten it or pass truncate='left' or 'right'"
            )
        part = slice(encoded.ids.size - keep, None) if truncate == "left" else slice(0, keep)
        return _Encoded(
            encoded.ids[part], encoded.tokens[part], encoded.offsets[part], encoded.special[part], encoded.text
        )

    def _baseline_id(self, baseline) -> int:
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

    def _pad_id(self) -> int:
        special = self._spec.special_tokens
        return next((int(special[n]) for n in ("pad", "eos", "unk") if special.get(n) is not None), 0)

    def _groups(self, groups, encoded: _Encoded) -> list[int]:
        n = encoded.ids.size
        if groups == "token":
            return list(range(n))
        if groups == "word":
            if not encoded.text:
                raise InvalidInputError("word groups need text input (offsets)")
            return word_groups(encoded.text, encoded.offsets, encoded.special)
        groups = [int(g) for g in groups]
        if len(groups) != n:
            raise InvalidInputError(f"groups has {len(groups)} entries for {n} tokens")
        return groups

    # Targets ------------------------------------------------------------------------------------

    def _plan_targets(self, encoded: _Encoded, targets, generate) -> _Targets:
        if isinstance(targets, Mapping):
            # {label: target}: the columns show the labels, the targets are what is scored.
            if not targets:
                raise TargetError("targets is an empty mapping")
            plan = self._plan_targets(encoded, list(targets.values()), generate)
            plan.labels = tuple(str(label) for label in targets)
            return plan
        task = self._spec.task
        if generate is not None:
            if task != "causal-lm":
                raise TargetError(f"generate applies to causal LMs, not to {task}")
            if targets is not None:
                raise TargetError("give targets or generate, not both")
            if not isinstance(generate, int) or isinstance(generate, bool) or generate < 1:
                raise TargetError("generate must be a positive number of tokens")
        if task == "causal-lm":
            if targets is None:
                return self._generated_targets(encoded, generate or 1)
            return self._continuation_targets(encoded, _as_list(targets, str, "continuation strings"))
        if task == "sequence-classification":
            return self._class_targets(encoded, targets)
        if task == "sentence-similarity":
            if targets is None:
                raise TargetError("sentence similarity needs reference sentences as targets")
            return self._reference_targets(_as_list(targets, str, "reference sentences"))
        return self._column_targets(encoded, targets)

    def _continuation_targets(self, encoded: _Encoded, continuations: list[str]) -> _Targets:
        tokenizer = self._spec.tokenizer
        pieces = []
        for text in continuations:
            ids = tokenizer.encode(text, add_special_tokens=False).ids if text else []
            if not ids:
                raise TargetError(f"the continuation {text!r} tokenizes to nothing")
            pieces.append(np.asarray(ids, np.int64))
        longest = max(p.size for p in pieces)
        self._fit_length(encoded, None, reserve=longest - 1)
        n = encoded.ids.size
        positions = np.zeros((len(pieces), 1, longest), np.int64)
        ids = np.zeros_like(positions)
        weights = np.zeros(positions.shape, np.float32)
        for k, piece in enumerate(pieces):
            positions[k, 0, : piece.size] = n - 1 + np.arange(piece.size)
            ids[k, 0, : piece.size] = piece
            weights[k, 0, : piece.size] = 1.0
        suffixes = [p[:-1].tolist() for p in pieces]  # the last token is only predicted, never read
        extras = {"score_positions": positions, "score_ids": ids, "score_weights": weights}
        return _Targets(
            labels=tuple(continuations),
            suffixes=suffixes,
            extras=extras,
            column_targets=[[k] for k in range(len(pieces))],
            horizons=[n - 2 + p.size for p in pieces],
            gradient_suffixes=suffixes,
            gradient_extras=extras,
        )

    def _generated_targets(self, encoded: _Encoded, count: int) -> _Targets:
        self._fit_length(encoded, None, reserve=count - 1)
        session = self.session("next_token")
        sequence = encoded.ids.tolist()
        generated = []
        for _ in range(count):
            ids = np.asarray([sequence], np.int64)
            (logits,) = session.run(
                {"input_ids": ids, "attention_mask": np.ones_like(ids), "positions": np.asarray([len(sequence) - 1])}
            )
            if not np.all(np.isfinite(logits)):
                raise NonFiniteScoreError("the model returned non-finite logits while generating")
            token = int(np.argmax(logits[0]))
            generated.append(token)
            sequence.append(token)
        n = encoded.ids.size
        labels = tuple(_unique_labels([self._spec.tokenizer.decode([t]) for t in generated]))
        suffix = generated[:-1]
        positions = (n - 1 + np.arange(count, dtype=np.int64)).reshape(1, count, 1)
        ids = np.asarray(generated, np.int64).reshape(1, count, 1)
        weights = np.ones((1, count, 1), np.float32)
        return _Targets(
            labels=labels,
            suffixes=[suffix],
            extras={"score_positions": positions, "score_ids": ids, "score_weights": weights},
            column_targets=[list(range(count))],
            horizons=[n - 1 + count - 1],
            gradient_suffixes=[suffix] * count,
            gradient_extras={
                "score_positions": positions.reshape(count, 1, 1),
                "score_ids": ids.reshape(count, 1, 1),
                "score_weights": weights.reshape(count, 1, 1),
            },
        )

    def _class_targets(self, encoded: _Encoded, targets) -> _Targets:
        labels = self._spec.labels or ()
        if targets is None:
            classes = np.arange(len(labels), dtype=np.int64).reshape(1, -1)
            (scores,) = self.session("forward").run(
                {
                    "input_ids": encoded.ids[None],
                    "attention_mask": np.ones_like(encoded.ids[None]),
                    "target_classes": classes,
                }
            )
            if not np.all(np.isfinite(scores)):
                raise NonFiniteScoreError("the model returned non-finite class scores")
            chosen = [int(np.argmax(scores[0]))]
        else:
            chosen = []
            for target in _as_list(targets, (str, int), "class names or ids"):
                if isinstance(target, str):
                    if target not in labels:
                        raise TargetError(f"unknown class {target!r} (classes: {', '.join(labels)})")
                    chosen.append(labels.index(target))
                elif not 0 <= target < len(labels):
                    raise TargetError(f"class id {target} is out of range (0..{len(labels) - 1}: {', '.join(labels)})")
                else:
                    chosen.append(int(target))
        classes = np.asarray(chosen, np.int64)
        return _Targets(
            labels=tuple(labels[c] for c in chosen),
            suffixes=[[]],
            extras={"target_classes": classes.reshape(1, -1)},
            column_targets=[list(range(len(chosen)))],
            horizons=[-1],
            gradient_suffixes=[[]] * len(chosen),
            gradient_extras={"target_classes": classes.reshape(-1, 1)},
        )

    def _reference_targets(self, references: list[str]) -> _Targets:
        if any(not sentence.strip() for sentence in references):
            raise TargetError("a reference sentence is empty")
        # One run for all references: right-padded, and the mask keeps padding out of the pooling.
        encoded = [self._spec.tokenizer.encode(sentence).ids for sentence in references]
        longest = max(len(ids) for ids in encoded)
        if self._spec.max_length is not None and longest > self._spec.max_length:
            raise InputTooLongError(
                f"a reference sentence has {longest} tokens; the model takes at most {self._spec.max_length}"
            )
        ids = np.full((len(encoded), longest), self._pad_id(), np.int64)
        mask = np.zeros_like(ids)
        for row, tokens in enumerate(encoded):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        (stacked,) = self.session("embed").run({"input_ids": ids, "attention_mask": mask})
        stacked = stacked.astype(np.float32)
        return _Targets(
            labels=tuple(references),
            suffixes=[[]],
            extras={"reference_embeddings": stacked[None]},
            column_targets=[list(range(len(references)))],
            horizons=[-1],
            gradient_suffixes=[[]] * len(references),
            gradient_extras={"reference_embeddings": stacked[:, None, :]},
        )

    def _column_targets(self, encoded: _Encoded, targets) -> _Targets:
        n_columns = self._byo_columns
        names = self._spec.labels
        if targets is None:
            feeds = {self._spec.ids_input: encoded.ids[None]}
            if self._spec.mask_input:
                feeds[self._spec.mask_input] = np.ones_like(encoded.ids[None])
            (scores,) = self.session("forward").run(feeds, [self._spec.score_output])
            columns = [int(np.argmax(scores[0]))]
        else:
            columns = []
            for target in _as_list(targets, (str, int), "score column names or indices"):
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
        n = encoded.ids.size
        return _Targets(
            labels=tuple(names[c] if names else str(c) for c in columns),
            suffixes=[[]],
            extras={},
            column_targets=[mapping],
            horizons=[n - 1 if self._spec.causal else -1],
            gradient_suffixes=[],
            gradient_extras={},
        )

    def _check_byo_graph(self) -> None:
        session = self.session("forward")
        names = {i["name"] for i in session.inputs}
        expected = {self._spec.ids_input} | ({self._spec.mask_input} if self._spec.mask_input else set())
        if names != expected:
            raise InvalidInputError(
                f"the model's inputs are {sorted(names)}; attribfast feeds only {sorted(expected)} "
                "(set ids_input / mask_input)"
            )
        outputs = {o["name"]: o for o in session.outputs}
        if self._spec.score_output not in outputs:
            raise InvalidInputError(
                f"the model has no output {self._spec.score_output!r} (outputs: {', '.join(outputs)})"
            )
        shape = outputs[self._spec.score_output]["shape"]
        if len(shape) != 2 or not isinstance(shape[1], int):
            raise InvalidInputError(
                f"the score output must have shape [batch, n_scores] with fixed n_scores, got {shape}"
            )
        self._byo_columns = shape[1]
        if self._spec.labels is not None and len(self._spec.labels) != shape[1]:
            raise InvalidInputError(f"{len(self._spec.labels)} labels for {shape[1]} score columns")

    # Compute ------------------------------------------------------------------------------------

    def _compute(self, method: Method, encoded: _Encoded, plan: _Targets, policy, progress, seed):
        if method.needs == "gradient":
            return self._compute_gradient(method, encoded, plan, policy, progress)
        problem = _core.ScoreProblem()
        problem.ids_input = self._spec.ids_input
        problem.mask_input = self._spec.mask_input
        problem.score_output = self._spec.score_output
        problem.pad_id = self._pad_id()
        problem.ids = encoded.ids.tolist()
        problem.suffixes = plan.suffixes
        problem.extras = [_core.ExtraInput(name, value) for name, value in plan.extras.items()]
        problem.column_targets = plan.column_targets
        problem.horizons = plan.horizons
        problem.n_targets = len(plan.labels)
        session = self.session("forward")._session
        baseline = self._baseline_id(method.baseline)
        seed = method.seed if getattr(method, "seed", None) is not None else (seed or 0)
        if isinstance(method, Occlusion):
            if method.window > encoded.ids.size:
                raise InvalidInputError(
                    f"occlusion window {method.window} is longer than the input ({encoded.ids.size} tokens)"
                )
            return _core.occlusion(session, problem, method.window, method.stride, baseline, policy, progress)
        groups = self._groups(method.groups, encoded)
        if isinstance(method, FeatureAblation):
            return _core.feature_ablation(session, problem, groups, baseline, policy, progress)
        if isinstance(method, ShapleySampling):
            permutations = (
                [] if method.permutations is None else np.asarray(method.permutations, np.int64).ravel().tolist()
            )
            return _core.shapley_sampling(
                session,
                problem,
                groups,
                baseline,
                method.n_permutations,
                seed,
                method.max_evaluations or 0,
                method.max_seconds or 0.0,
                permutations,
                policy,
                progress,
            )
        if isinstance(method, KernelShap | Lime):
            kind = "kernel_shap" if isinstance(method, KernelShap) else "lime"
            width = getattr(method, "kernel_width", 1.0)
            return _core.surrogate(
                session, problem, kind, groups, baseline, method.n_samples, seed, width, method.ridge, policy, progress
            )
        raise MethodNotAvailableError(f"no perturbation pipeline for {method.name}")  # pragma: no cover

    def _compute_gradient(self, method: Method, encoded: _Encoded, plan: _Targets, policy, progress):
        problem = _core.GradientProblem()
        problem.ids = encoded.ids.tolist()
        problem.suffixes = plan.gradient_suffixes
        problem.extras = [_core.ExtraInput(name, value) for name, value in plan.gradient_extras.items()]
        session = self.session("gradient")._session
        embeddings = self._embedding_matrix()
        if isinstance(method, IntegratedGradients):
            baseline = self._embedding_baseline(method.baseline, encoded, embeddings)
            return _core.integrated_gradients(
                session,
                problem,
                embeddings,
                baseline,
                method.method,
                method.n_steps,
                method.tolerance or 0.0,
                max(method.max_steps, method.n_steps),
                method.aggregation,
                policy,
                progress,
            )
        if not isinstance(method, Saliency | InputXGradient):  # pragma: no cover - registry and pipeline agree
            raise MethodNotAvailableError(f"no gradient pipeline for {method.name}")
        kind = "saliency" if isinstance(method, Saliency) else "input_x_gradient"
        return _core.gradient_at_input(session, problem, embeddings, kind, method.aggregation, policy, progress)

    def _embedding_matrix(self) -> np.ndarray:
        if self._embeddings is None:
            self._embeddings = np.ascontiguousarray(self._spec.embeddings_loader(), dtype=np.float32)
        return self._embeddings

    def _embedding_baseline(self, baseline, encoded: _Encoded, embeddings: np.ndarray) -> np.ndarray:
        n, hidden = encoded.ids.size, embeddings.shape[1]
        if isinstance(baseline, np.ndarray):
            if baseline.shape != (n, hidden):
                raise InvalidInputError(f"the baseline must have shape ({n}, {hidden}), got {baseline.shape}")
            return baseline.astype(np.float32)
        if baseline == "zero":
            return np.zeros((n, hidden), np.float32)
        token = self._baseline_id(baseline)
        return np.repeat(embeddings[token][None], n, axis=0)


def _is_id_list(value) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and np.issubdtype(value.dtype, np.integer)
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value)
    )


def _as_list(targets, kinds, description: str) -> list:
    items = [targets] if isinstance(targets, str | int | np.integer) else list(targets)
    if not items:
        raise TargetError(f"targets is empty; expected {description}")
    for item in items:
        if not isinstance(item, kinds) or isinstance(item, bool):
            raise TargetError(f"targets must be {description}, got {type(item).__name__} {item!r}")
    return [int(i) if isinstance(i, np.integer) else i for i in items]


def _unique_labels(labels: list[str]) -> list[str]:
    """Column labels made unique ("a", "a" -> "a", "a (2)") so tables and plots keep them apart."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def _readable(text: str, token: str, start: int, end: int, is_special: bool) -> str:
    """A token as a reader sees it: its span of the text with spaces made visible; special tokens as is."""
    if is_special or end <= start:
        return token
    return text[start:end].replace(" ", VISIBLE_SPACE).replace("\n", "\\n")


def _progress_callback(progress):
    """(callback for the core, finaliser): a tqdm bar for True, the callable itself, or nothing."""
    if progress is None or progress is False:
        return None, lambda: None
    if callable(progress):
        return progress, lambda: None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=0, unit="rows", leave=False)

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        return update, bar.close
    raise InvalidInputError("progress must be None, True or a callable (rows_done, rows_total)")
