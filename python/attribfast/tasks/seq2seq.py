"""Encoder-decoder models (T5, BART, Marian, mBART): the rows are the source tokens (the encoder's
input); a target is an output text, scored by teacher forcing.

Score of a target = sum over its tokens of log p(token | source, the tokens before it) (or the
probability, or the summed logits). Its tokens are the text's plus the special tokens the tokenizer
adds to targets (T5's and Marian's </s>, BART's <s> ... </s>, mBART's </s> and language code), read
from the tokenizer at export; the decoder starts from decoder_start_token_id. The decoder side is a
fixed input per target (decoder_input_ids), so every perturbation and gradient method runs through
the same core as the other tasks. per_token=True: one column per target token. generate=N: greedy
tokens as columns.
"""

from __future__ import annotations

import numpy as np

from ..errors import ExportError, NonFiniteScoreError, TargetError, UnsupportedArchitectureError
from .base import ExtraGraph, TargetPlan, Task, as_list, shared, unique_labels

# Without targets or generate: the greedy output, ending at the end-of-sequence token, at most this long.
DEFAULT_GENERATE = 32
PROBES = ("the quick brown fox", "hello world", "a")


class Seq2Seq(Task):
    name = "seq2seq"
    # decoder_input_ids [b, L]: the decoder's input (start token, target tokens but the last);
    # score_ids [b, L]: the token scored at each decoder position; score_weights [b, k, L]: score
    # column k sums weight * (log p of score_ids) over the positions.
    target_inputs = ("decoder_input_ids", "score_ids", "score_weights")
    target_axes = {0: "batch", 1: "targets", 2: "target_length"}
    score_kinds = ("logprob", "prob", "logit")
    auto_class = "AutoModelForSeq2SeqLM"

    def target_input_axes(self) -> dict:
        positions = {0: "batch", 1: "target_length"}
        return {"decoder_input_ids": positions, "score_ids": positions, "score_weights": self.target_axes}

    # Export side -------------------------------------------------------------------------------

    def check_model(self, model) -> None:
        if not getattr(model.config, "is_encoder_decoder", False):
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} is not an encoder-decoder model; seq2seq needs one (t5, bart, marian, mbart)"
            )
        if model.get_output_embeddings() is None:
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} has no language-model head (get_output_embeddings() is None)"
            )
        if getattr(model.config, "decoder_start_token_id", None) is None:
            raise UnsupportedArchitectureError(f"{type(model).__name__}'s config has no decoder_start_token_id")

    def score_module(self, model, score: str):
        import torch

        class Seq2SeqScore(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, inputs_embeds, attention_mask, decoder_input_ids, score_ids, score_weights):
                logits = decoder_logits(model, inputs_embeds, attention_mask, decoder_input_ids)
                return reduce_tokens(logits, score_ids, score_weights, score)

        module = Seq2SeqScore().eval()
        module.score_kind = score
        return module

    def model_scores_from_ids(self, model, ids, mask, decoder_input_ids, score_ids, score_weights, *, score_module):
        """The same scores from the model's own forward on token ids, to catch an embedding the
        score module would read differently (Marian scales its embeddings outside the module)."""
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids, use_cache=False).logits
        return reduce_tokens(logits, score_ids, score_weights, score_module.score_kind).numpy()

    def extra_graphs(self, model, score_module) -> list[ExtraGraph]:
        import torch

        class NextTokenLogits(torch.nn.Module):
            # Full-vocabulary logits after the decoder's last input token: only used to generate greedily.
            def forward(self, inputs_embeds, attention_mask, generated_ids):
                return decoder_logits(model, inputs_embeds, attention_mask, generated_ids)[:, -1]

        vocab = model.get_input_embeddings().weight.shape[0]
        return [
            ExtraGraph(
                "next_token",
                "logits",
                NextTokenLogits().eval(),
                inputs={"generated_ids": {0: "batch", 1: "generated"}},
                # 7: a length no other example dimension has, so tracing keeps it apart.
                example=lambda ids, mask: ((ids[:, :1] + torch.arange(7) * 7) % vocab,),
            )
        ]

    def example_targets(self, model, lengths, n_targets, length, generator) -> tuple:
        import torch

        vocab = model.get_input_embeddings().weight.shape[0]
        batch = len(lengths)
        decoder_ids = torch.randint(0, vocab, (batch, length), generator=generator)
        score_ids = torch.randint(0, vocab, (batch, length), generator=generator)
        weights = torch.rand(batch, n_targets, length, generator=generator)  # non-trivial weights
        return decoder_ids, score_ids, weights

    def manifest_fields(self, model, tokenizer) -> dict:
        config = model.config
        generation = getattr(model, "generation_config", None)
        eos = getattr(generation, "eos_token_id", None) if generation is not None else None
        eos = eos if eos is not None else config.eos_token_id
        forced = getattr(generation, "forced_bos_token_id", None) if generation is not None else None
        prefix, suffix = target_specials(tokenizer)
        limit = getattr(config, "max_position_embeddings", None)
        return {
            "decoder_start_token_id": int(config.decoder_start_token_id),
            "target_prefix": prefix,
            "target_suffix": suffix,
            "eos_token_ids": sorted({int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}),
            "forced_bos_token_id": None if forced is None else int(forced),
            # Learned decoder positions bound the target length; relative ones (T5) do not.
            "max_target_length": None if limit is None else int(limit),
        }

    # Run side -----------------------------------------------------------------------------------

    def plan(self, model, encoded, targets, generate, per_token) -> TargetPlan:
        if generate is not None:
            if targets is not None:
                raise TargetError("give targets or generate, not both")
            if not isinstance(generate, int) or isinstance(generate, bool) or generate < 1:
                raise TargetError("generate must be a positive number of tokens")
        manifest = model._spec.manifest
        if targets is None:
            return self._generated(model, encoded, generate or DEFAULT_GENERATE)
        tokenizer = model._spec.tokenizer
        texts = as_list(targets, str, "target texts")
        pieces = []
        for text in texts:
            inner = tokenizer.encode(text, add_special_tokens=False).ids if text else []
            ids = [*manifest["target_prefix"], *inner, *manifest["target_suffix"]]
            if not ids:
                raise TargetError(f"the target {text!r} tokenizes to nothing")
            pieces.append(np.asarray(ids, np.int64))
        check_target_length(manifest, max(p.size for p in pieces))
        start = int(manifest["decoder_start_token_id"])
        if per_token:
            labels = [label for piece in pieces for label in token_labels(tokenizer, piece)]
            return token_columns(pieces, start, tuple(unique_labels(labels)))
        return whole_targets(pieces, start, tuple(texts))

    def _generated(self, model, encoded, count: int) -> TargetPlan:
        manifest = model._spec.manifest
        limit = manifest.get("max_target_length")
        count = min(count, limit) if limit else count
        start = int(manifest["decoder_start_token_id"])
        eos = set(manifest.get("eos_token_ids") or ())
        forced = manifest.get("forced_bos_token_id")
        session = model.session("next_token")
        ids = encoded.ids[None]
        generated: list[int] = []
        while len(generated) < count:
            if not generated and forced is not None:
                token = int(forced)  # the language code mBART-50 and NLLB force as the first token
            else:
                decoder = np.asarray([[start, *generated]], np.int64)
                feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "generated_ids": decoder}
                (logits,) = session.run(feeds)
                if not np.all(np.isfinite(logits)):
                    raise NonFiniteScoreError("the model returned non-finite logits while generating")
                token = int(np.argmax(logits[0]))
            generated.append(token)
            if token in eos:
                break
        tokenizer = model._spec.tokenizer
        labels = tuple(unique_labels(token_labels(tokenizer, generated)))
        return token_columns([np.asarray(generated, np.int64)], start, labels)


def decoder_logits(model, inputs_embeds, attention_mask, decoder_input_ids):
    """Logits [b, L, vocab] of the decoder reading decoder_input_ids, over the encoder's output for
    the source embeddings (computed once per trace for the score and the next-token graphs)."""
    from transformers.modeling_outputs import BaseModelOutput

    encoder = model.get_encoder()
    # Marian scales the token embeddings in its encoder, outside the embedding module (BART and
    # mBART scale inside it): the attributed embeddings are the embedding module's output.
    scale = getattr(encoder, "embed_scale", None)
    scale = scale if isinstance(scale, int | float) and scale != 1 else None

    def run(embeds, mask):
        embeds = embeds * scale if scale is not None else embeds
        return encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state

    hidden = shared(encoder, run, inputs_embeds, attention_mask)
    return model(
        encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input_ids,
        use_cache=False,
    ).logits


def reduce_tokens(logits, score_ids, score_weights, score: str):
    """logits [b, L, vocab] -> scores [b, k]: per column, the weighted sum over decoder positions of
    the scored token's log-probability (or logit); "prob" is the exponential of that sum."""
    import torch

    picked = torch.gather(logits, 2, score_ids.unsqueeze(-1)).squeeze(-1)
    if score != "logit":
        picked = picked - torch.logsumexp(logits, dim=-1)
    total = (score_weights * picked.unsqueeze(1)).sum(-1)
    return torch.exp(total) if score == "prob" else total


def target_specials(tokenizer) -> tuple[list[int], list[int]]:
    """(prefix, suffix): the special token ids the tokenizer puts around a target text, as it
    tokenizes labels (text_target=...: mBART switches to the target language there)."""
    import copy

    tokenizer = copy.deepcopy(tokenizer)  # mBART's tokenizer switches modes while encoding targets
    for probe in PROBES:
        plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = tokenizer(text_target=probe)["input_ids"]
        if not plain:
            continue
        for i in range(len(full) - len(plain) + 1):
            if full[i : i + len(plain)] == plain:
                return [int(t) for t in full[:i]], [int(t) for t in full[i + len(plain) :]]
    raise ExportError("cannot tell which special tokens the tokenizer adds to target texts")


def check_target_length(manifest: dict, length: int) -> None:
    limit = manifest.get("max_target_length")
    if limit and length > limit:
        raise TargetError(f"a target has {length} tokens; the decoder takes at most {limit}")


def token_labels(tokenizer, ids) -> list[str]:
    """Each token's piece of the decoded text (" fox" rather than "fox": a lone SentencePiece
    token decodes without its leading space); special tokens as they are written."""
    ids = [int(t) for t in ids]
    labels, before = [], ""
    for j, token in enumerate(ids):
        text = tokenizer.decode(ids[: j + 1], skip_special_tokens=False)
        piece = text[len(before) :] if text.startswith(before) else ""
        labels.append(piece or tokenizer.decode([token], skip_special_tokens=False) or str(token))
        before = text
    return labels


def _decoder_rows(pieces: list[np.ndarray], start: int):
    """decoder_input_ids and score_ids [n_pieces, longest], right-padded (the decoder is causal, so
    padding after a target changes none of its positions; the padding's weights are zero)."""
    longest = max(p.size for p in pieces)
    decoder = np.full((len(pieces), longest), start, np.int64)
    scored = np.zeros_like(decoder)
    for k, piece in enumerate(pieces):
        decoder[k, 1 : piece.size] = piece[:-1]
        scored[k, : piece.size] = piece
    return decoder, scored


def whole_targets(pieces: list[np.ndarray], start: int, labels: tuple) -> TargetPlan:
    """One column per target text: one segment each (its own decoder input), summed over its tokens."""
    decoder, scored = _decoder_rows(pieces, start)
    weights = np.zeros((len(pieces), 1, decoder.shape[1]), np.float32)
    for k, piece in enumerate(pieces):
        weights[k, 0, : piece.size] = 1.0
    extras = {"decoder_input_ids": decoder, "score_ids": scored, "score_weights": weights}
    return TargetPlan(
        labels=labels,
        suffixes=[[] for _ in pieces],
        extras=extras,
        column_targets=[[k] for k in range(len(pieces))],
        horizons=[-1] * len(pieces),
        gradient_suffixes=[[] for _ in pieces],
        gradient_extras=extras,
    )


def token_columns(pieces: list[np.ndarray], start: int, labels: tuple) -> TargetPlan:
    """One column per token of each target: log p(token | source, the target tokens before it)."""
    decoder, scored = _decoder_rows(pieces, start)
    longest = decoder.shape[1]
    weights = np.zeros((len(pieces), longest, longest), np.float32)
    column_targets, rows, first = [], [], 0
    for k, piece in enumerate(pieces):
        weights[k, np.arange(piece.size), np.arange(piece.size)] = 1.0
        # The padding positions of shorter targets map to no column (-1).
        column_targets.append([first + j if j < piece.size else -1 for j in range(longest)])
        rows += [(k, j) for j in range(piece.size)]
        first += piece.size
    index = np.asarray(rows, np.int64).reshape(-1, 2)
    return TargetPlan(
        labels=labels,
        suffixes=[[] for _ in pieces],
        extras={"decoder_input_ids": decoder, "score_ids": scored, "score_weights": weights},
        column_targets=column_targets,
        horizons=[-1] * len(pieces),
        gradient_suffixes=[[] for _ in rows],
        gradient_extras={
            "decoder_input_ids": decoder[index[:, 0]],
            "score_ids": scored[index[:, 0]],
            "score_weights": weights[index[:, 0], index[:, 1]][:, None, :],
        },
    )
