"""Torch score functions the benchmarks hand to Captum: as a typical user writes them, and tuned."""

from __future__ import annotations

import torch


def causal_full_logits(model, n_prompt: int, continuation: list[int], *, grad: bool = False):
    """The HF model's own forward on prompt + continuation ids: full-vocabulary logits at every
    position, as a typical user scores a continuation. grad=False wraps it in no_grad (perturbation)."""
    cont = torch.tensor(continuation, device=model.device)

    def score(full_ids):
        logits = model(full_ids).logits
        log_probs = torch.log_softmax(logits[:, n_prompt - 1 : n_prompt - 1 + len(continuation)], -1)
        return log_probs.gather(-1, cont.expand(full_ids.shape[0], -1).unsqueeze(-1)).squeeze(-1).sum(-1)

    if grad:
        return score

    def forward(prompt_ids):
        with torch.no_grad():
            return score(torch.cat([prompt_ids, cont.expand(prompt_ids.shape[0], -1)], 1))

    return forward


def causal_target_only_from_embeddings(model, continuation: list[int]):
    """Hidden states gathered at the scored positions before the LM head (what the bundle computes)."""
    cont = torch.tensor(continuation, device=model.device)
    table = model.get_input_embeddings().weight

    def forward(embeds):
        batch, n, _ = embeds.shape
        tail = torch.nn.functional.embedding(cont[:-1], table).expand(batch, -1, -1)
        hidden = model.base_model(inputs_embeds=torch.cat([embeds, tail], 1)).last_hidden_state
        logits = model.get_output_embeddings()(hidden[:, n - 1 : n - 1 + len(continuation)])
        return torch.log_softmax(logits, -1).gather(-1, cont.expand(batch, -1).unsqueeze(-1)).squeeze(-1).sum(-1)

    return forward


def causal_target_only(model, continuation: list[int]):
    score = causal_target_only_from_embeddings(model, continuation)
    embedding = model.get_input_embeddings()

    def forward(ids):
        with torch.no_grad():
            return score(embedding(ids))

    return forward


def similarity_score(model, reference_ids, *, grad: bool = False):
    """Cosine similarity of mean-pooled, normalised MiniLM embeddings, as sentence-transformers.
    grad=False wraps the score in no_grad (perturbation methods)."""

    def embed(ids):
        hidden = model(ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        return torch.nn.functional.normalize(hidden.mean(1), dim=-1)

    with torch.no_grad():
        reference = embed(reference_ids)

    def forward(ids):
        with torch.set_grad_enabled(grad):
            return embed(ids) @ reference[0]

    return forward
