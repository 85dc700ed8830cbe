"""Torch score functions matching the bundles' graph contract, for Captum and brute-force references."""

from __future__ import annotations

import torch


def continuation_logprob(model, continuation_ids: list[int], only: int | None = None):
    """f(prompt ids [B, n]) -> [B]: log p(continuation | prompt), teacher-forced, summed over its tokens;
    with `only`, the log p of that one continuation token (given the prompt and the tokens before it)."""
    continuation = torch.tensor(continuation_ids)

    def forward(prompt_ids):
        batch, n = prompt_ids.shape
        full = torch.cat([prompt_ids, continuation.expand(batch, -1)], dim=1)
        with torch.no_grad():
            log_probs = torch.log_softmax(model(full).logits, dim=-1)
        positions = torch.arange(n - 1, n - 1 + len(continuation_ids))
        picked = log_probs[:, positions].gather(-1, continuation.expand(batch, -1).unsqueeze(-1)).squeeze(-1)
        return picked.sum(-1) if only is None else picked[:, only]

    return forward


def continuation_logprob_from_embeddings(model, continuation_ids: list[int]):
    """The same score as a function of the prompt's embeddings [B, n, H] (continuation embedded apart)."""
    continuation = torch.tensor(continuation_ids)
    table = model.get_input_embeddings().weight

    def forward(prompt_embeds):
        batch, n, _ = prompt_embeds.shape
        tail = torch.nn.functional.embedding(continuation, table).expand(batch, -1, -1)
        logits = model(inputs_embeds=torch.cat([prompt_embeds, tail], dim=1)).logits
        log_probs = torch.log_softmax(logits, dim=-1)
        positions = torch.arange(n - 1, n - 1 + len(continuation_ids))
        picked = log_probs[:, positions].gather(-1, continuation.expand(batch, -1).unsqueeze(-1))
        return picked.squeeze(-1).sum(-1)

    return forward


def class_logits(model):
    """f(ids [B, n]) -> logits [B, classes]."""

    def forward(ids):
        with torch.no_grad():
            return model(ids).logits

    return forward


def class_logits_from_embeddings(model):
    def forward(embeds):
        return model(inputs_embeds=embeds).logits

    return forward
