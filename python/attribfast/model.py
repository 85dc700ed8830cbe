"""Loading a model and attributing: normalise inputs -> validate once -> task plans the targets ->
the method runs itself through the core -> Attribution."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from . import _core
from ._runtime import PROVIDERS_ENV, default_providers
from .attribution import Attribution
from .bundle import Bundle
from .checks import check_target_texts, check_text, optional_count
from .contrast import apply_contrast, plan_with_contrast
from .engine import Encoded, Engine, Spec
from .errors import InputTooLongError, InvalidInputError, TargetError
from .faithfulness.params import Faithfulness, as_params
from .faithfulness.run import evaluate_planned, evaluate_result
from .int8 import quantization, warn_float32_gradients
from .methods import METHODS, Method, resolve_method
from .precision import bundle_dtype
from .session import Session
from .tasks import get_task
from .words import tokenizer_word_ids

DEFAULT_MEMORY_BUDGET = 1 << 30
# On a GPU, each session's batches may take this share of the device memory free when it first runs
# (ORT's arenas and the weights need the rest).
DEVICE_MEMORY_SHARE = 0.5
TRUNCATIONS = ("left", "right")
VISIBLE_SPACE = "\u2423"  # ␣

# Names kept for code that imported them from here before the split.
_Spec = Spec
_Encoded = Encoded


def load(
    bundle_dir: str | os.PathLike,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    memory_budget: int | None = None,
    device_id: int = 0,
    verify: bool | str = True,
) -> AttributionModel:
    """Loads a bundle (verifying its file hashes) for attribution; needs no torch.

    providers: execution providers in order of preference ("cuda", "cpu"); a provider that cannot
    be used falls back to CPU with a ProviderWarning. None: $ATTRIBFAST_PROVIDERS, else ("cpu",).
    threads: intra-op threads (None: ORT decides). memory_budget: bytes of activations a batch may
    take (default: 1 GiB on CPU, half the free device memory on a GPU); batch sizes follow from it.
    device_id: the CUDA device ordinal.
    verify: True (default) checks every file's sha256 against the manifest, skipping files whose
    stamp in the user's cache ($ATTRIBFAST_CACHE, else ~/.cache/attribfast) shows them unchanged
    since they were verified; "always" re-hashes every file; False skips hashing. The manifest
    schema, bundle paths and graph contract are checked in every mode.
    """
    bundle = Bundle.load(bundle_dir, verify=verify)
    manifest = bundle.manifest
    bundle_dtype(manifest)  # refuses a precision this version cannot run
    graphs = {name: bundle.graph_path(name) for name in manifest["graphs"]}
    labels = None
    if manifest.get("labels"):
        labels = tuple(manifest["labels"][str(i)] for i in range(len(manifest["labels"])))
    spec = Spec(
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
        manifest=manifest,
    )
    return AttributionModel(
        spec, providers=providers, threads=threads, memory_budget=memory_budget, device_id=device_id
    )


class AttributionModel:
    """A model ready to attribute. Create it with :func:`attribfast.load` or :meth:`from_onnx`."""

    def __init__(
        self,
        spec: Spec,
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
        self._task = get_task(spec.task)
        self._memory_budget_given = memory_budget is not None
        self._memory_budget = memory_budget or DEFAULT_MEMORY_BUDGET
        self._device_budgets: dict[int, int] = {}  # id(session) -> bytes
        self._engine = Engine(spec, providers[0], threads, device_id)

    @classmethod
    def from_onnx(
        cls,
        model: str | os.PathLike,
        *,
        tokenizer: str | os.PathLike | object | None = None,
        ids_input: str = "input_ids",
        mask_input: str | None = "attention_mask",
        score_output: str | None = None,
        labels: Sequence[str] | None = None,
        pad_id: int | None = None,
        causal: bool = False,
        max_length: int | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        memory_budget: int | None = None,
        device_id: int = 0,
    ) -> AttributionModel:
        """Brings your own ONNX model whose output is a score vector [batch, n_scores] (e.g. the
        logits of a classifier as optimum exports it).

        model: an .onnx file, or a directory with model.onnx (and optionally config.json, whose
            id2label names the columns, and tokenizer.json).
        tokenizer: a tokenizer.json path (or its directory), a tokenizers.Tokenizer or a transformers
            fast tokenizer; needed to attribute text (token id lists work without).
        ids_input / mask_input: the graph's input names (mask_input=None: the graph takes no mask).
            A token_type_ids input is fed zeros. score_output: the output to attribute (None: "scores",
            else "logits", else the only float output). labels: column names (None: config.json's
            id2label). pad_id: the replacement token (None: the tokenizer's or config's pad, else 0).
            causal: the model is a causal LM (scores at the last position).
        Targets are score columns, by index or label. Perturbation methods only (no gradient graph).
        """
        from .own_onnx import own_onnx_spec

        spec = own_onnx_spec(
            model,
            tokenizer=tokenizer,
            ids_input=ids_input,
            mask_input=mask_input,
            score_output=score_output,
            labels=labels,
            pad_id=pad_id,
            causal=causal,
            max_length=max_length,
        )
        attribution_model = cls(
            spec, providers=providers, threads=threads, memory_budget=memory_budget, device_id=device_id
        )
        from .own_onnx import check_graph

        attribution_model._byo_columns = check_graph(attribution_model.session("forward"), spec)
        return attribution_model

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
        return self._engine.session(graph)

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
        per_token: bool = False,
        contrast: str | int | Sequence | None = None,
        reuse_prefix: bool = True,
        pack_targets: bool = True,
        evaluate=False,
    ) -> Attribution | list[Attribution]:
        """Attributes targets to the input tokens.

        inputs: a text (or a list of token ids); a list of texts gives a list of results.
        targets: continuation strings (causal LMs: score = log-probability of the continuation given
            the text, teacher-forced, summed over its tokens), output texts (seq2seq: the same for
            the decoder, with the special tokens the tokenizer adds to targets), class names or ids
            (classifiers), reference sentences (similarity), score columns (own ONNX models); or a
            mapping {column label: target}. None: the model's top prediction (seq2seq: its greedy
            output, up to the end-of-sequence token or 32 tokens).
        generate: greedily generate this many tokens (causal LMs; seq2seq: at most this many,
            ending at the end-of-sequence token) and attribute each.
        per_token: causal LMs and seq2seq: one column per target token (log p of that token given
            the text and the tokens before it), labelled by the token.
        method: a name from attribfast.METHODS or a config such as attribfast.Occlusion(window=2).
        batch_size: rows per model run (default: chosen from the memory budget).
        progress: True for a progress bar, or a callable (rows_done, rows_total).
        seed: seed of sampling methods whose config has none (default 0).
        truncate: inputs longer than the model's maximum raise InputTooLongError unless this is
            "left" (drop the first tokens) or "right" (drop the last).
        contrast: attribute score(target) - score(contrast), in the same run: one target for every
            column, a list aligned with targets, or "others" (the mean score of the other targets);
            columns are labelled "target vs contrast". Linear methods only (docs/semantics.md).
        reuse_prefix: causal LMs whose bundle has the prefix-reuse graphs: perturbed rows reuse the
            clean input's key/value cache before their first change (same results within float
            rounding, fewer token positions computed). False runs every row in full.
        pack_targets: causal LMs whose bundle has the packed graphs: perturbation methods score every
            continuation from one row (same results within float rounding; a Shapley max_evaluations
            budget counts packed rows); bundles with the shared gradient graph: gradient methods take
            every target's gradient from one forward. False: a row per target.
        evaluate: True, metric names or an attribfast.Faithfulness: attach faithfulness figures (evaluate()).
        """
        method = resolve_method(method, self.methods)
        if truncate is not None and truncate not in TRUNCATIONS:
            raise InvalidInputError(f"truncate must be None, 'left' or 'right', got {truncate!r}")
        batch_size = optional_count("batch_size", batch_size, 1)
        seed = optional_count("seed", seed, 0)
        generate = optional_count("generate", generate, 1, TargetError)
        check_target_texts(targets)
        check_target_texts(contrast)
        if not isinstance(per_token, bool):
            raise InvalidInputError("per_token must be True or False")
        for flag, value in (("reuse_prefix", reuse_prefix), ("pack_targets", pack_targets)):
            if not isinstance(value, bool):
                raise InvalidInputError(f"{flag} must be True or False")
        evaluate = evaluate and as_params(evaluate)
        options = (targets, method, generate, batch_size, progress, seed, truncate, per_token, contrast, reuse_prefix,
                   pack_targets, evaluate)
        if isinstance(inputs, str) or _is_id_list(inputs):
            return self._attribute_one(inputs, *options)
        texts = list(inputs)
        if not texts:
            raise InvalidInputError("inputs is an empty list")
        return [self._attribute_one(t, *options) for t in texts]

    def _attribute_one(
        self,
        text,
        targets,
        method,
        generate,
        batch_size,
        progress,
        seed,
        truncate,
        per_token,
        contrast=None,
        reuse_prefix=True,
        pack_targets=True,
        evaluate=None,
    ) -> Attribution:
        encoded = self._encode(text, truncate)
        if contrast is None:
            plan, contrast_plan = self._plan_targets(encoded, targets, generate, per_token), None
        else:
            plan, contrast_plan = plan_with_contrast(self, encoded, targets, contrast, generate, per_token, method)
        if not pack_targets:
            plan.packed = plan.shared_gradient = None
        policy = self._policy(method, batch_size, reuse_prefix)
        callback, finish = _progress_callback(progress)
        try:
            result = method.run(self._engine, encoded, plan, policy, callback, seed)
        finally:
            finish()
        attribution = self._attribution(encoded, plan, method, result, contrast_plan)
        if not evaluate:
            return attribution
        return evaluate_planned(self, encoded, plan, attribution, evaluate, progress, reuse_prefix)

    def _policy(self, method: Method, batch_size, reuse_prefix: bool):
        policy = _core.BatchPolicy()
        policy.batch_size = batch_size or 0
        policy.memory_budget = self._memory_budget
        policy.hidden_size = self._spec.hidden_size
        policy.num_heads = self._spec.num_heads
        policy.reuse_prefix = reuse_prefix
        session = self.session(method.needs)
        warn_float32_gradients(self._spec.manifest, method.needs)
        if session.provider == "cuda":
            policy.max_batch_tokens = 0  # GPUs want the largest batch the memory budget allows
            policy.memory_budget = self._device_budget(session)
        return policy

    def _attribution(self, encoded: Encoded, plan, method: Method, result, contrast_plan=None) -> Attribution:
        fields = dict(
            matrix=result.matrix.astype(np.float32),
            tokens=encoded.tokens,
            targets=plan.labels,
            method=method.name,
            parameters={**method.parameters(), **getattr(result, "details", {})},  # Hierarchical's level costs
            text=encoded.text,
            token_ids=encoded.ids,
            offsets=encoded.offsets,
            special=encoded.special,
            word_ids=encoded.word_ids,
            target_scores=result.clean_scores,
            standard_errors=None if result.standard_error is None else result.standard_error.astype(np.float32),
            deltas=result.delta,
            steps=result.steps,
            task=self._spec.task,
            score=self._spec.score,
            bundle_hash=self._spec.bundle_hash,
            quantization=quantization(self._spec.manifest),
            evaluations=result.rows_run,
            token_positions=result.token_positions,
            seconds=result.seconds,
        )
        return Attribution(**(fields if contrast_plan is None else apply_contrast(fields, contrast_plan)))

    def evaluate(self, result: Attribution, metrics=None, targets=None, progress=None, **params) -> Attribution:
        """The result with faithfulness figures (docs/faithfulness.md); params: attribfast.Faithfulness's."""
        return evaluate_result(self, result, Faithfulness(metrics=metrics, **params), targets, progress)

    def _device_budget(self, session: Session) -> int:
        """Activation bytes a GPU batch may take: the user's budget, else a share of the device memory
        free when `session` (the graph the method needs: forward or gradient) first runs, read once per
        session (later reads would see its own arena as used), so the gradient graph takes a share of
        what the forward's arena left. The suffix and packed graphs a sweep runs instead of the
        forward share the forward's budget, and their arenas add up (not solved yet)."""
        if self._memory_budget_given:
            return self._memory_budget
        if id(session) not in self._device_budgets:
            memory = session.device_memory()
            free = memory[0] if memory else DEFAULT_MEMORY_BUDGET / DEVICE_MEMORY_SHARE
            self._device_budgets[id(session)] = max(int(free * DEVICE_MEMORY_SHARE), 1 << 26)
        return self._device_budgets[id(session)]

    def _plan_targets(self, encoded: Encoded, targets, generate, per_token=False):
        if isinstance(targets, Mapping):
            # {label: target}: the columns show the labels, the targets are what is scored.
            if not targets:
                raise TargetError("targets is an empty mapping")
            if per_token:
                raise TargetError("per_token columns are labelled by their tokens; give targets as a list")
            plan = self._plan_targets(encoded, list(targets.values()), generate)
            plan.labels = tuple(str(label) for label in targets)
            return plan
        return self._task.plan(self, encoded, targets, generate, per_token)

    # Inputs -------------------------------------------------------------------------------------

    def _encode(self, text, truncate) -> Encoded:
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
            word_ids = None
        else:
            if not isinstance(text, str):
                raise InvalidInputError(f"inputs must be text or token ids, got {type(text).__name__}")
            check_text(text, "the input text")
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
            word_ids = tokenizer_word_ids(spec.tokenizer, encoding)
        if spec.vocab_size is not None and (ids.min() < 0 or ids.max() >= spec.vocab_size):
            raise InvalidInputError(f"token ids must be in [0, {spec.vocab_size})")
        encoded = Encoded(ids, tokens, offsets, special, text, word_ids)
        return self._fit_length(encoded, truncate, reserve=0)

    def _fit_length(self, encoded: Encoded, truncate, reserve: int) -> Encoded:
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
        words = None if encoded.word_ids is None else encoded.word_ids[part]
        return Encoded(
            encoded.ids[part], encoded.tokens[part], encoded.offsets[part], encoded.special[part], encoded.text, words
        )

    def _baseline_id(self, baseline) -> int:
        return self._engine.baseline_id(baseline)

    def _pad_id(self) -> int:
        return self._engine.pad_id()

    def _byo_feeds(self, ids: np.ndarray) -> dict:
        """Feeds of an own ONNX model for a batch of ids (mask of ones, zeros for token_type_ids)."""
        spec = self._spec
        feeds = {spec.ids_input: ids}
        if spec.mask_input:
            feeds[spec.mask_input] = np.ones_like(ids)
        feeds.update({name: np.zeros_like(ids) for name in spec.zero_inputs})
        return feeds


def _is_id_list(value) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and np.issubdtype(value.dtype, np.integer)
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value)
    )


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
