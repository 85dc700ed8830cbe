"""The prefix-reuse graphs of causal LMs (export side; torch only inside the functions).

A variant whose first change is at position p has the clean input's keys and values on [0, p): a
causal model's key/value at a position depends only on the tokens up to it. Two graphs let the
engine compute that part once per attribution:

- `prefix`: (input_ids [batch, n], attention_mask) -> present [batch, n, 2 * layers * kv_heads *
  head_dim]: every layer's keys and values, sequence-major. The cache of a prefix of length b is
  rows [:b] of the clean row's (causality again): one run of the clean input serves every boundary,
  and the slice is contiguous. One flat dimension for the model's fixed sizes also keeps symbolic
  tracing from taking a head count equal to an example size for a dynamic dimension.
- `suffix_score`: (input_ids [batch, s] = the tokens from position p on, attention_mask [batch, s],
  past [p, 2 * layers * kv_heads * head_dim], the score graph's target inputs) -> the scores the
  forward graph gives for the whole sequence. The past is expanded over the batch inside the
  graph; positions continue at p (read from past's shape); score_positions stay absolute.

Both go through the Hugging Face cache API (DynamicCache, past_key_values, position_ids), so every
family whose forward takes a cache gets them; the export validates them against the full forward.
"""

from __future__ import annotations

import inspect

from .base import ExtraGraph

PREFIX = "prefix"
SUFFIX = "suffix_score"
PAST = "past"
PRESENT = "present"
# The prefix length of the example the graphs are traced with: distinct from the other example
# sizes (batch 2, sequence 11, targets 3, target length 5) so tracing keeps it a dimension of its own.
EXAMPLE_PREFIX = 7


def stack_cache(cache):
    """A DynamicCache -> one tensor [batch, length, 2 * layers * kv_heads * head_dim], sequence-major."""
    import torch

    stacked = torch.stack([t for layer in cache.layers for t in (layer.keys, layer.values)])  # [2L, b, h, n, d]
    batch, length = stacked.shape[1], stacked.shape[3]
    return stacked.permute(1, 3, 0, 2, 4).reshape(batch, length, -1)


def unstack_cache(past, layout: tuple, batch):
    """past [length, 2 * layers * kv_heads * head_dim] -> a DynamicCache whose keys/values are
    expanded over `batch` rows. layout: (2 * layers, kv_heads, head_dim), fixed by the model."""
    from transformers import DynamicCache

    pairs, heads, dim = layout
    per_layer = past.reshape(past.shape[0], pairs, heads, dim).permute(1, 2, 0, 3).unsqueeze(1)
    return DynamicCache(
        ddp_cache_data=[
            (per_layer[2 * i].expand(batch, -1, -1, -1), per_layer[2 * i + 1].expand(batch, -1, -1, -1))
            for i in range(pairs // 2)
        ]
    )


def cache_layout(model, base, cache_name: str):
    """(2 * layers, kv_heads, head_dim) of the model's key/value cache, or None where there is no
    cache to reuse or its layers differ in shape (one flat past cannot hold them)."""
    import torch
    from transformers import DynamicCache

    try:
        with torch.no_grad():
            probe = model.get_input_embeddings()(torch.zeros(1, 2, dtype=torch.long))
            cache = base(inputs_embeds=probe, use_cache=True, **{cache_name: DynamicCache()})[cache_name]
        keys = [layer.keys for layer in cache.layers]
    except Exception:
        return None
    if not keys or any(k is None or k.ndim != 4 or k.shape != keys[0].shape for k in keys):
        return None
    return (2 * len(keys), keys[0].shape[1], keys[0].shape[3])


def prefix_graphs(model, score_module, reduce_scores, final_logits) -> list[ExtraGraph]:
    """The two graphs, as extra graphs of the joint trace."""
    import torch
    from transformers import DynamicCache

    base, head = score_module.base, score_module.head
    score = score_module.score_kind
    parameters = inspect.signature(base.forward).parameters
    # transformers renamed past_key_values to cache (the old name warns); models without
    # position_ids (ALiBi) place the suffix by the mask alone.
    cache_name = "cache" if "cache" in parameters else "past_key_values"
    takes_positions = "position_ids" in parameters

    layout = cache_layout(model, base, cache_name)
    if layout is None:
        return []  # the bundle attributes without reuse

    def run(inputs_embeds, attention_mask, cache, positions=None):
        kwargs = {cache_name: cache}
        if takes_positions and positions is not None:
            kwargs["position_ids"] = positions
        out = base(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=True, **kwargs)
        return out.last_hidden_state, out[cache_name]

    class Prefix(torch.nn.Module):
        def forward(self, inputs_embeds, attention_mask):
            # A cache without the config: every layer keeps all its positions (a sliding-window
            # layer cache would drop the early ones the suffix graph needs).
            return stack_cache(run(inputs_embeds, attention_mask, DynamicCache())[1])

    class SuffixScore(torch.nn.Module):
        def forward(self, inputs_embeds, attention_mask, past, score_positions, score_ids, score_weights):
            batch, length = inputs_embeds.shape[0], inputs_embeds.shape[1]
            offset = past.shape[0]
            full_mask = torch.cat([attention_mask.new_ones(batch, offset), attention_mask], dim=1)
            positions = torch.arange(length, device=inputs_embeds.device).unsqueeze(0) + offset
            hidden = run(inputs_embeds, full_mask, unstack_cache(past, layout, batch), positions)[0]
            b, t, n = score_positions.shape
            # Scores read absolute positions; the engine never asks for one before the prefix ends
            # (the clamp only keeps a bad request from reading out of bounds).
            local = (score_positions - offset).clamp(min=0)
            index = local.reshape(b, t * n, 1).expand(b, t * n, hidden.shape[-1])
            logits = final_logits(model, head(torch.gather(hidden, 1, index)))
            return reduce_scores(logits, score_positions, score_ids, score_weights, score)

    def example_past(ids, mask):
        generator = torch.Generator().manual_seed(7)
        prefix_ids = torch.randint(
            0, model.get_input_embeddings().weight.shape[0], (1, EXAMPLE_PREFIX), generator=generator
        )
        with torch.no_grad():
            embeds = model.get_input_embeddings()(prefix_ids)
            return (Prefix()(embeds, torch.ones_like(prefix_ids))[0],)

    return [
        ExtraGraph(PREFIX, PRESENT, Prefix().eval(), validated=False),
        ExtraGraph(
            SUFFIX,
            "suffix_scores",
            SuffixScore().eval(),
            inputs={PAST: {0: "past"}},
            example=example_past,
            with_targets=True,
            validated=False,
        ),
    ]
