"""Sequence classification: a target is a class (by name or id), scored by its logit, log-probability
or probability."""

from __future__ import annotations

import numpy as np

from ..errors import NonFiniteScoreError, TargetError, UnsupportedArchitectureError
from .base import TargetPlan, Task, as_list, no_generate
from .shared_gradient import one_row


class Classification(Task):
    name = "sequence-classification"
    target_inputs = ("target_classes",)
    target_axes = {0: "batch", 1: "targets"}
    score_kinds = ("logit", "logprob", "prob")
    auto_class = "AutoModelForSequenceClassification"

    # Export side -------------------------------------------------------------------------------

    def check_model(self, model) -> None:
        # BartForSequenceClassification lists inputs_embeds but refuses it: its base model is used.
        if "inputs_embeds" not in _forward_parameters(model):
            if _bart_like(model) is None:
                raise UnsupportedArchitectureError(
                    f"{type(model).__name__} takes no inputs_embeds, which the gradient graph needs"
                )

    def score_module(self, model, score: str):
        import torch

        logits_of = _logits_function(model)

        class ClassifierScore(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, inputs_embeds, attention_mask, target_classes):
                logits = logits_of(inputs_embeds, attention_mask)
                if score == "logprob":
                    logits = torch.log_softmax(logits, dim=-1)
                elif score == "prob":
                    logits = torch.softmax(logits, dim=-1)
                return torch.gather(logits, 1, target_classes)

        return ClassifierScore().eval()

    def example_targets(self, model, lengths, n_targets, length, generator) -> tuple:
        import torch

        return (torch.randint(0, model.config.num_labels, (len(lengths), n_targets), generator=generator),)

    def manifest_fields(self, model, tokenizer) -> dict:
        id2label = getattr(model.config, "id2label", None) or {}
        return {"labels": {str(k): v for k, v in id2label.items()}}

    # Run side -----------------------------------------------------------------------------------

    def plan(self, model, encoded, targets, generate, per_token) -> TargetPlan:
        no_generate(self.name, generate, per_token)
        labels = model._spec.labels or ()
        if targets is None:
            classes = np.arange(len(labels), dtype=np.int64).reshape(1, -1)
            (scores,) = model.session("forward").run(
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
            for target in as_list(targets, (str, int), "class names or ids"):
                if isinstance(target, str):
                    if target not in labels:
                        raise TargetError(f"unknown class {target!r} (classes: {', '.join(labels)})")
                    chosen.append(labels.index(target))
                elif not 0 <= target < len(labels):
                    raise TargetError(f"class id {target} is out of range (0..{len(labels) - 1}: {', '.join(labels)})")
                else:
                    chosen.append(int(target))
        classes = np.asarray(chosen, np.int64)
        return TargetPlan(
            labels=tuple(labels[c] for c in chosen),
            suffixes=[[]],
            extras={"target_classes": classes.reshape(1, -1)},
            column_targets=[list(range(len(chosen)))],
            horizons=[-1],
            gradient_suffixes=[[]] * len(chosen),
            gradient_extras={"target_classes": classes.reshape(-1, 1)},
            shared_gradient=one_row({"target_classes": classes.reshape(1, -1)}, len(chosen)),
        )


def _forward_parameters(module) -> set:
    import inspect

    return set(inspect.signature(module.forward).parameters)


def _bart_like(model):
    """The encoder-decoder base of a classifier whose head class reads input ids to find the EOS
    token (BART): its base model takes inputs_embeds, and the head reads the decoder's state at the
    last EOS token."""
    base = getattr(model, "model", None)
    head = getattr(model, "classification_head", None)
    if base is None or head is None or not getattr(model.config, "is_encoder_decoder", False):
        return None
    return base if "inputs_embeds" in _forward_parameters(base) else None


def _logits_function(model):
    """(inputs_embeds, attention_mask) -> class logits, through the head class where it takes
    inputs_embeds, else through the base model (BART: the decoder reads the input shifted right
    after decoder_start_token_id; the head reads the decoder state at the last attended position,
    where BART's tokenizer puts the EOS token that BartForSequenceClassification looks up)."""
    import torch

    base = _bart_like(model)
    if base is None:
        return lambda embeds, mask: model(inputs_embeds=embeds, attention_mask=mask).logits
    head = model.classification_head
    embedding = model.get_input_embeddings()
    start = int(model.config.decoder_start_token_id)

    def logits(embeds, mask):
        first = embedding(torch.full_like(mask[:, :1], start))
        decoder_embeds = torch.cat([first, embeds[:, :-1]], dim=1)
        hidden = base(
            inputs_embeds=embeds, attention_mask=mask, decoder_inputs_embeds=decoder_embeds, use_cache=False
        ).last_hidden_state
        last = (mask.sum(1) - 1).reshape(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
        return head(torch.gather(hidden, 1, last).squeeze(1))

    return logits
