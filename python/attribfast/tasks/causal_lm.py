"""Causal language models: a target is a continuation, scored by teacher forcing.

Score of a continuation = sum over its tokens of log p(token | text, the tokens before it) (or the
probability, or the summed logits). per_token=True makes one column per continuation token. Without
targets, greedy generation picks them (the bundle's next_token graph).
"""

from __future__ import annotations

import numpy as np

from ..errors import NonFiniteScoreError, TargetError, UnsupportedArchitectureError
from .base import ExtraGraph, TargetPlan, Task, as_list, shared, unique_labels
from .packed import pack_continuations, packed_graphs
from .prefix import prefix_graphs
from .shared_gradient import packed_gradient_layout


class CausalLM(Task):
    name = "causal-lm"
    target_inputs = ("score_positions", "score_ids", "score_weights")
    target_axes = {0: "batch", 1: "targets", 2: "target_length"}
    score_kinds = ("logprob", "prob", "logit")
    auto_class = "AutoModelForCausalLM"
    causal = True

    # Export side -------------------------------------------------------------------------------

    def check_model(self, model) -> None:
        if model.get_output_embeddings() is None:
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} has no language-model head (get_output_embeddings() is None)"
            )

    def score_module(self, model, score: str):
        import torch

        class CausalLMScore(torch.nn.Module):
            # Hidden states are gathered at the scored positions before the LM head, so the head's
            # cost is paid only for the targets, never for the whole vocabulary at every position.
            def __init__(self):
                super().__init__()
                self.base = model.base_model
                self.head = model.get_output_embeddings()

            def forward(self, inputs_embeds, attention_mask, score_positions, score_ids, score_weights):
                hidden = last_hidden(self.base, inputs_embeds, attention_mask)
                b, t, n = score_positions.shape
                index = score_positions.reshape(b, t * n, 1).expand(b, t * n, hidden.shape[-1])
                logits = final_logits(model, self.head(torch.gather(hidden, 1, index)))
                return reduce_scores(logits, score_positions, score_ids, score_weights, score)

        module = CausalLMScore().eval()
        module.score_kind = score
        return module

    def model_scores(self, model, embeds, mask, score_positions, score_ids, score_weights, *, score_module):
        """The same scores from the model's own forward (full logits at every position), to catch a
        head the score module would read differently (logit soft-capping, scaling)."""
        logits = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
        b, t, n = score_positions.shape
        index = score_positions.reshape(b, t * n, 1).expand(b, t * n, logits.shape[-1])
        picked = logits.gather(1, index)
        return reduce_scores(picked, score_positions, score_ids, score_weights, score_module.score_kind).numpy()

    def extra_graphs(self, model, score_module) -> list[ExtraGraph]:
        import torch

        class NextTokenLogits(torch.nn.Module):
            # Full-vocabulary logits at one position per row: only used to generate targets greedily.
            def forward(self, inputs_embeds, attention_mask, positions):
                hidden = last_hidden(score_module.base, inputs_embeds, attention_mask)
                index = positions.reshape(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
                return final_logits(model, score_module.head(torch.gather(hidden, 1, index).squeeze(1)))

        return [
            *prefix_graphs(model, score_module, reduce_scores, final_logits),
            ExtraGraph(
                "next_token",
                "logits",
                NextTokenLogits().eval(),
                inputs={"positions": {0: "batch"}},
                example=lambda ids, mask: ((mask.sum(1) - 1).to(torch.long),),
            )
        ]

    def packed_graphs(self, model, score_module, with_reuse: bool, max_length: int):
        return packed_graphs(model, score_module, reduce_scores, final_logits, with_reuse, max_length)

    def example_targets(self, model, lengths, n_targets, length, generator) -> tuple:
        import torch

        vocab = model.get_input_embeddings().weight.shape[0]
        batch = len(lengths)
        positions = torch.stack([torch.randint(0, n - 1, (n_targets, length), generator=generator) for n in lengths])
        score_ids = torch.randint(0, vocab, (batch, n_targets, length), generator=generator)
        weights = torch.ones(batch, n_targets, length)
        weights[:, :, -1] = 0.5  # non-trivial weights exercise the reduction
        return positions, score_ids, weights

    # Run side -----------------------------------------------------------------------------------

    def plan(self, model, encoded, targets, generate, per_token) -> TargetPlan:
        if generate is not None:
            if targets is not None:
                raise TargetError("give targets or generate, not both")
            if not isinstance(generate, int) or isinstance(generate, bool) or generate < 1:
                raise TargetError("generate must be a positive number of tokens")
        if targets is None:
            return self._generated(model, encoded, generate or 1)
        continuations = as_list(targets, str, "continuation strings")
        tokenizer = model._spec.tokenizer
        pieces = []
        for text in continuations:
            ids = tokenizer.encode(text, add_special_tokens=False).ids if text else []
            if not ids:
                raise TargetError(f"the continuation {text!r} tokenizes to nothing")
            pieces.append(np.asarray(ids, np.int64))
        model._fit_length(encoded, None, reserve=max(p.size for p in pieces) - 1)
        if per_token:
            labels = [tokenizer.decode([int(t)]) for piece in pieces for t in piece]
            return token_columns(encoded.ids.size, pieces, tuple(unique_labels(labels)))
        plan = whole_continuations(encoded.ids.size, pieces, tuple(continuations))
        # fp16 copies convert the packed graphs' score head to fp16 (the converter keeps only the
        # forward graph's head in fp32), and int8 copies scale activations over each whole tensor,
        # so a packed row would not score as its unpacked rows do: both keep the unpacked plan, as
        # they run without prefix reuse.
        manifest = model._spec.manifest
        derived = manifest.get("dtype") == "float16" or manifest.get("quantization")
        if len(pieces) > 1 and "packed_score" in model._spec.graphs and not derived:
            plan.packed = pack_continuations(encoded.ids.size, pieces, model._pad_id())
        if len(pieces) > 1:
            plan.shared_gradient = packed_gradient_layout(encoded.ids.size, pieces, model._pad_id())
        return plan

    def _generated(self, model, encoded, count: int) -> TargetPlan:
        model._fit_length(encoded, None, reserve=count - 1)
        session = model.session("next_token")
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
        labels = tuple(unique_labels([model._spec.tokenizer.decode([t]) for t in generated]))
        return token_columns(encoded.ids.size, [np.asarray(generated, np.int64)], labels)


def reduce_scores(logits, score_positions, score_ids, score_weights, score: str):
    """logits [b, t*n, vocab] at the scored positions -> scores [b, t]: weighted sums of the
    picked logits, log-probabilities, or the probability of the whole continuation."""
    import torch

    b, t, n = score_positions.shape
    picked = torch.gather(logits, 2, score_ids.reshape(b, t * n, 1)).reshape(b, t, n)
    if score == "logit":
        return (picked * score_weights).sum(-1)
    log_probs = picked - torch.logsumexp(logits, dim=-1).reshape(b, t, n)
    total = (log_probs * score_weights).sum(-1)
    return total if score == "logprob" else torch.exp(total)


def last_hidden(base, inputs_embeds, attention_mask):
    def run(embeds, mask):
        return base(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state

    return shared(base, run, inputs_embeds, attention_mask)


def final_logits(model, logits):
    """Applies the final logit soft-capping of the models that have one (Gemma 2)."""
    import torch

    cap = getattr(model.config, "final_logit_softcapping", None)
    return logits if cap is None else torch.tanh(logits / cap) * cap


def whole_continuations(n: int, pieces: list[np.ndarray], labels: tuple) -> TargetPlan:
    """One column per continuation: one segment each, its score summed over its tokens."""
    longest = max(p.size for p in pieces)
    positions = np.zeros((len(pieces), 1, longest), np.int64)
    ids = np.zeros_like(positions)
    weights = np.zeros(positions.shape, np.float32)
    for k, piece in enumerate(pieces):
        positions[k, 0, : piece.size] = n - 1 + np.arange(piece.size)
        ids[k, 0, : piece.size] = piece
        weights[k, 0, : piece.size] = 1.0
    suffixes = [p[:-1].tolist() for p in pieces]  # the last token is only predicted, never read
    extras = {"score_positions": positions, "score_ids": ids, "score_weights": weights}
    return TargetPlan(
        labels=labels,
        suffixes=suffixes,
        extras=extras,
        column_targets=[[k] for k in range(len(pieces))],
        horizons=[n - 2 + p.size for p in pieces],
        gradient_suffixes=suffixes,
        gradient_extras=extras,
    )


def token_columns(n: int, pieces: list[np.ndarray], labels: tuple) -> TargetPlan:
    """One column per token of each continuation: log p(token | text, the tokens before it)."""
    longest = max(p.size for p in pieces)
    positions = np.zeros((len(pieces), longest, 1), np.int64)
    ids = np.zeros_like(positions)
    weights = np.zeros(positions.shape, np.float32)
    column_targets, gradient_rows, start = [], [], 0
    for k, piece in enumerate(pieces):
        positions[k, : piece.size, 0] = n - 1 + np.arange(piece.size)
        ids[k, : piece.size, 0] = piece
        weights[k, : piece.size, 0] = 1.0
        # Padding targets of shorter continuations map to no column (-1).
        column_targets.append([start + j if j < piece.size else -1 for j in range(longest)])
        gradient_rows += [(k, j) for j in range(piece.size)]
        start += piece.size
    suffixes = [p[:-1].tolist() for p in pieces]
    rows = np.asarray(gradient_rows, np.int64).reshape(-1, 2)
    return TargetPlan(
        labels=labels,
        suffixes=suffixes,
        extras={"score_positions": positions, "score_ids": ids, "score_weights": weights},
        column_targets=column_targets,
        horizons=[n - 2 + p.size for p in pieces],
        gradient_suffixes=[suffixes[k] for k, _ in gradient_rows],
        gradient_extras={
            "score_positions": positions[rows[:, 0], rows[:, 1]].reshape(-1, 1, 1),
            "score_ids": ids[rows[:, 0], rows[:, 1]].reshape(-1, 1, 1),
            "score_weights": weights[rows[:, 0], rows[:, 1]].reshape(-1, 1, 1),
        },
    )
