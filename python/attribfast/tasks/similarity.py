"""Sentence similarity: a target is a reference sentence, scored by the cosine similarity of the
mean-pooled, L2-normalised sentence embeddings (as sentence-transformers computes them)."""

from __future__ import annotations

import numpy as np

from ..errors import InputTooLongError, TargetError
from .base import ExtraGraph, TargetPlan, Task, as_list, no_generate, shared
from .shared_gradient import one_row


class Similarity(Task):
    name = "sentence-similarity"
    target_inputs = ("reference_embeddings",)
    target_axes = {0: "batch", 1: "targets"}
    score_kinds = ("cosine",)
    auto_class = "AutoModel"

    # Export side -------------------------------------------------------------------------------

    def score_module(self, model, score: str):
        import torch

        class SentenceEmbedding(torch.nn.Module):
            # Mean pooling over the mask, then L2 normalisation, as sentence-transformers does.
            def __init__(self):
                super().__init__()
                self.base = model.base_model

            def forward(self, inputs_embeds, attention_mask):
                def run(embeds, mask):
                    return self.base(inputs_embeds=embeds, attention_mask=mask).last_hidden_state

                hidden = shared(self.base, run, inputs_embeds, attention_mask)
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, p=2, dim=-1)

        class SimilarityScore(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = SentenceEmbedding()

            def forward(self, inputs_embeds, attention_mask, reference_embeddings):
                embedding = self.embed(inputs_embeds, attention_mask)
                reference = torch.nn.functional.normalize(reference_embeddings, p=2, dim=-1)
                return (reference @ embedding.unsqueeze(-1)).squeeze(-1)

        return SimilarityScore().eval()

    def extra_graphs(self, model, score_module) -> list[ExtraGraph]:
        return [ExtraGraph("embed", "sentence_embedding", score_module.embed)]

    def example_targets(self, model, lengths, n_targets, length, generator) -> tuple:
        import torch

        return (torch.randn(len(lengths), n_targets, model.config.hidden_size, generator=generator),)

    # Run side -----------------------------------------------------------------------------------

    def plan(self, model, encoded, targets, generate, per_token) -> TargetPlan:
        no_generate(self.name, generate, per_token)
        if targets is None:
            raise TargetError("sentence similarity needs reference sentences as targets")
        references = as_list(targets, str, "reference sentences")
        if any(not sentence.strip() for sentence in references):
            raise TargetError("a reference sentence is empty")
        # One run for all references: right-padded, and the mask keeps padding out of the pooling.
        spec = model._spec
        encoded_refs = [spec.tokenizer.encode(sentence).ids for sentence in references]
        longest = max(len(ids) for ids in encoded_refs)
        if spec.max_length is not None and longest > spec.max_length:
            raise InputTooLongError(
                f"a reference sentence has {longest} tokens; the model takes at most {spec.max_length}"
            )
        ids = np.full((len(encoded_refs), longest), model._pad_id(), np.int64)
        mask = np.zeros_like(ids)
        for row, tokens in enumerate(encoded_refs):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        (stacked,) = model.session("embed").run({"input_ids": ids, "attention_mask": mask})
        stacked = stacked.astype(np.float32)
        return TargetPlan(
            labels=tuple(references),
            suffixes=[[]],
            extras={"reference_embeddings": stacked[None]},
            column_targets=[list(range(len(references)))],
            horizons=[-1],
            gradient_suffixes=[[]] * len(references),
            gradient_extras={"reference_embeddings": stacked[:, None, :]},
            shared_gradient=one_row({"reference_embeddings": stacked[None]}, len(references)),
        )
