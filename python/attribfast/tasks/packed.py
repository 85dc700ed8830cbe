"""Packed continuations for causal LMs: one row scores every continuation of a prompt.

Unpacked, each continuation is its own row: K continuations re-read the same prompt K times.
Packed, the K continuations follow the prompt in one row; continuation k attends to the prompt and
to its own earlier tokens only (a block mask), and its position ids restart at the prompt's end, so
each continuation is scored exactly as if it were alone after the prompt.

The graphs take two small inputs over the row's suffix (the tokens after the prompt) and build the
positions and the block-causal mask inside:

- `suffix_offsets` [batch, s]: token j of a continuation has offset j (its position is n + j);
- `suffix_segments` [batch, s]: k >= 1 for continuation k (0 is the prompt; a segment id no query
  shares makes padding tokens invisible).

The prompt length n of a row is its length (the mask's sum) minus s, so rows of other lengths can
share a batch with right padding. `packed_suffix_score` is the same after a prefix of p cached
positions (prefix reuse): the suffix is then the changed tail of the prompt plus every continuation.
Both are exported only where the model honours a 4-D mask and position ids (probed in torch here,
and validated in ONNX against the unpacked forward after export); others keep the unpacked plan.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from .base import ExtraGraph
from .prefix import EXAMPLE_PREFIX, PAST, cache_layout, unstack_cache

PACKED = "packed_score"
PACKED_SUFFIX = "packed_suffix_score"
OFFSETS = "suffix_offsets"
SEGMENTS = "suffix_segments"
PACKED_OUTPUT = "packed_scores"
PACKED_SUFFIX_OUTPUT = "packed_suffix_scores"
# A packed row's suffix holds at most this many tokens, or the prompt's length if that is more:
# attention grows with the row, so very many continuations go into several packed rows.
MAX_PACKED_SUFFIX = 64


@dataclass
class PackedPlan:
    """The packed layout of a TargetPlan's segments, for the perturbation methods."""

    suffixes: list
    extras: dict
    column_targets: list
    horizons: list
    graph: str = PACKED
    output: str = PACKED_OUTPUT


def pack_continuations(n: int, pieces: list[np.ndarray], pad_id: int, budget: int | None = None) -> PackedPlan:
    """Continuations (token ids, each scored after a prompt of n tokens) packed into segments.

    Each continuation reads all its tokens but the last; continuations fill a segment in order
    while its suffix stays within the budget. Segments are padded to one suffix length (pad tokens
    in a segment of their own, never attended to), so every row of a sweep has the same length.
    """
    budget = budget or max(MAX_PACKED_SUFFIX, n)
    groups: list[list[int]] = [[]]
    used = 0
    for k, piece in enumerate(pieces):
        size = piece.size - 1
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(k)
        used += size
    width = max(sum(pieces[k].size - 1 for k in group) for group in groups)
    per_segment = max(len(group) for group in groups)
    longest = max(p.size for p in pieces)
    if width == 0:
        # Single-token continuations read nothing after the prompt: the forward graph scores them
        # all from one row, no mask needed.
        return _single_tokens(n, pieces)
    shape = (len(groups), per_segment, longest)
    positions, ids = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    weights = np.zeros(shape, np.float32)
    offsets = np.zeros((len(groups), width), np.int64)
    segments = np.zeros((len(groups), width), np.int64)
    suffixes, column_targets = [], []
    for g, group in enumerate(groups):
        suffix: list[int] = []
        columns = [-1] * per_segment
        for slot, k in enumerate(group):
            piece = pieces[k]
            start = n + len(suffix)  # the row index of this continuation's first read token
            read = piece[:-1].tolist()
            offsets[g, len(suffix) : len(suffix) + len(read)] = np.arange(len(read))
            segments[g, len(suffix) : len(suffix) + len(read)] = slot + 1
            suffix += read
            # Token 0 is predicted from the prompt's last token; token j from the row index of token j - 1.
            positions[g, slot, : piece.size] = [n - 1, *range(start, start + piece.size - 1)]
            ids[g, slot, : piece.size] = piece
            weights[g, slot, : piece.size] = 1.0
            columns[slot] = k
        segments[g, len(suffix) :] = per_segment + 1
        suffixes.append(suffix + [pad_id] * (width - len(suffix)))
        column_targets.append(columns)
    extras = {
        "score_positions": positions,
        "score_ids": ids,
        "score_weights": weights,
        OFFSETS: offsets,
        SEGMENTS: segments,
    }
    return PackedPlan(suffixes, extras, column_targets, [n - 2 + longest] * len(groups))


def _single_tokens(n: int, pieces: list[np.ndarray]) -> PackedPlan:
    ids = np.asarray([int(p[0]) for p in pieces], np.int64).reshape(1, -1, 1)
    extras = {
        "score_positions": np.full(ids.shape, n - 1, np.int64),
        "score_ids": ids,
        "score_weights": np.ones(ids.shape, np.float32),
    }
    return PackedPlan([[]], extras, [list(range(len(pieces)))], [n - 1], graph="forward", output="scores")


def packed_layout(attention_mask, offsets, segments, start=0, dtype=None):
    """(position ids [b, s], additive mask [b, 1, s, start + s]: 0 where a query may attend, the
    dtype's lowest value elsewhere) of rows whose first `start` positions are a cached prefix of the
    prompt (all visible) and whose tokens after the prompt are the packed suffix. The mask is
    additive, not boolean: eager attention adds a 4-D mask to the scores as it is."""
    import torch

    batch, seq = attention_mask.shape
    width = segments.shape[1]
    length = attention_mask.sum(1, keepdim=True) + start  # each row's global length
    prompt = length - width
    index = torch.arange(seq, device=attention_mask.device).unsqueeze(0) + start
    in_suffix = (index >= prompt) & (index < length)
    j = torch.where(in_suffix, index - prompt, 0)  # other positions gather column 0, then discard it
    positions = torch.where(in_suffix, prompt + torch.gather(offsets, 1, j), torch.where(index < prompt, index, 0))
    segment = torch.where(in_suffix, torch.gather(segments, 1, j), 0)
    key_index = torch.arange(seq + start, device=attention_mask.device)
    key_segment = torch.cat([segment.new_zeros(batch, start), segment], 1)
    key_valid = torch.cat([attention_mask.new_ones(batch, start), attention_mask], 1).bool()
    causal = key_index.view(1, 1, -1) <= index.unsqueeze(-1)
    same = (key_segment.unsqueeze(1) == 0) | (key_segment.unsqueeze(1) == segment.unsqueeze(-1))
    allowed = (causal & same & key_valid.unsqueeze(1)).unsqueeze(1)
    dtype = dtype or torch.float32
    return positions, torch.zeros((), dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


def local_attention(config, max_length: int) -> str | None:
    """Why a 4-D mask would change the model's attention, or None. A custom 4-D mask replaces the
    masks transformers builds, so sliding-window and chunked layers would attend beyond their window
    in a packed row: those models keep the unpacked plan unless the window covers max_length."""
    for name in ("sliding_window", "attention_chunk_size"):
        window = getattr(config, name, None)
        if window is None or window >= max_length:
            continue
        if name == "sliding_window" and getattr(config, "use_sliding_window", True) is False:
            continue
        layer_types = getattr(config, "layer_types", None)
        if name == "sliding_window" and layer_types and all(t == "full_attention" for t in layer_types):
            continue
        return f"the model has local attention ({name} = {window} < max_length {max_length})"
    return None


def packed_graphs(
    model, score_module, reduce_scores, final_logits, with_reuse: bool, max_length: int
) -> tuple[list, str | None]:
    """([packed_score, packed_suffix_score when with_reuse], None) where the model honours a block
    mask and position ids, else ([], the reason)."""
    import torch

    local = local_attention(model.config, max_length)
    if local is not None:
        return [], local
    base, head = score_module.base, score_module.head
    score = score_module.score_kind
    parameters = inspect.signature(base.forward).parameters
    if "position_ids" not in parameters:
        return [], "the model takes no position ids"
    cache_name = "cache" if "cache" in parameters else "past_key_values"

    def scores_at(hidden, score_positions, score_ids, score_weights, offset=0):
        b, t, n = score_positions.shape
        local = (score_positions - offset).clamp(min=0)
        index = local.reshape(b, t * n, 1).expand(b, t * n, hidden.shape[-1])
        logits = final_logits(model, head(torch.gather(hidden, 1, index)))
        return reduce_scores(logits, score_positions, score_ids, score_weights, score)

    class PackedScore(torch.nn.Module):
        def forward(self, inputs_embeds, attention_mask, suffix_offsets, suffix_segments, *targets):
            return scores_at(self.hidden(inputs_embeds, attention_mask, suffix_offsets, suffix_segments), *targets)

        def hidden(self, inputs_embeds, attention_mask, suffix_offsets, suffix_segments):
            positions, allowed = packed_layout(attention_mask, suffix_offsets, suffix_segments, 0, inputs_embeds.dtype)
            return base(
                inputs_embeds=inputs_embeds, attention_mask=allowed, position_ids=positions, use_cache=False
            ).last_hidden_state

        def split(self, inputs_embeds, attention_mask, suffix_offsets, suffix_segments, *targets):
            """(the hidden states at the scored positions [b, t*n, hidden], the rest of the score
            (those states -> scores [b, t]), a cotangent [b, t] spread over their rows [b, t*n, 1]).
            Each row belongs to one target, so the shared gradient graph (export/shared.py) runs
            the head's backward once for all targets and only the rest once per target."""
            hidden = self.hidden(inputs_embeds, attention_mask, suffix_offsets, suffix_segments)
            score_positions = targets[0]
            b, t, n = score_positions.shape
            index = score_positions.reshape(b, t * n, 1).expand(b, t * n, hidden.shape[-1])

            def tail(gathered):
                return reduce_scores(final_logits(model, head(gathered)), *targets, score)

            def spread(cotangent):
                return cotangent.unsqueeze(-1).expand(b, t, n).reshape(b, t * n, 1)

            return torch.gather(hidden, 1, index), tail, spread

    problem = _probe(model, score_module, PackedScore().eval())
    if problem is not None:
        return [], problem
    graphs = [
        ExtraGraph(
            PACKED,
            PACKED_OUTPUT,
            PackedScore().eval(),
            inputs={OFFSETS: {0: "batch", 1: "packed"}, SEGMENTS: {0: "batch", 1: "packed"}},
            example=example_packing,
            with_targets=True,
            validated=False,
        )
    ]
    layout = cache_layout(model, base, cache_name) if with_reuse else None
    if layout is None:
        return graphs, None

    class PackedSuffixScore(torch.nn.Module):
        def forward(self, inputs_embeds, attention_mask, past, suffix_offsets, suffix_segments, *targets):
            offset = past.shape[0]
            dtype = inputs_embeds.dtype
            positions, allowed = packed_layout(attention_mask, suffix_offsets, suffix_segments, offset, dtype)
            cache = unstack_cache(past, layout, inputs_embeds.shape[0])
            out = base(
                inputs_embeds=inputs_embeds,
                attention_mask=allowed,
                position_ids=positions,
                use_cache=True,
                **{cache_name: cache},
            )
            return scores_at(out.last_hidden_state, *targets, offset=offset)

    def example_suffix(ids, mask):
        from .prefix import stack_cache

        generator = torch.Generator().manual_seed(7)
        vocab = model.get_input_embeddings().weight.shape[0]
        prefix_ids = torch.randint(0, vocab, (1, EXAMPLE_PREFIX), generator=generator)
        with torch.no_grad():
            embeds = model.get_input_embeddings()(prefix_ids)
            from transformers import DynamicCache

            cache = base(inputs_embeds=embeds, use_cache=True, **{cache_name: DynamicCache()})[cache_name]
        return (stack_cache(cache)[0], *example_packing(ids, mask))

    graphs.append(
        ExtraGraph(
            PACKED_SUFFIX,
            PACKED_SUFFIX_OUTPUT,
            PackedSuffixScore().eval(),
            inputs={PAST: {0: "past"}, OFFSETS: {0: "batch", 1: "packed"}, SEGMENTS: {0: "batch", 1: "packed"}},
            example=example_suffix,
            with_targets=True,
            validated=False,
        )
    )
    return graphs, None


def example_packing(ids, mask):
    """Suffix offsets and segments for example rows: two continuations in the last few tokens."""
    import torch

    width = max(1, min(4, int(mask.sum(1).min()) - 1))
    offsets = torch.tensor([0, 1, 0, 1][:width]).expand(ids.shape[0], width).contiguous()
    segments = torch.tensor([1, 1, 2, 2][:width]).expand(ids.shape[0], width).contiguous()
    return offsets, segments


def _probe(model, score_module, packed) -> str | None:
    """None where packed scores equal the unpacked ones in torch on a small example, else why not."""
    import torch

    generator = torch.Generator().manual_seed(3)
    vocab = model.get_input_embeddings().weight.shape[0]
    n = 6
    pieces = [torch.randint(0, vocab, (size,), generator=generator).numpy() for size in (3, 1, 2)]
    prompt = torch.randint(0, vocab, (n,), generator=generator)
    plan = pack_continuations(n, pieces, 0)
    ids = torch.cat([prompt, torch.tensor(plan.suffixes[0])]).unsqueeze(0)
    extras = {name: torch.from_numpy(value) for name, value in plan.extras.items()}
    embed = model.get_input_embeddings()
    try:
        with torch.no_grad():
            got = packed(embed(ids), torch.ones_like(ids), extras[OFFSETS], extras[SEGMENTS],
                         extras["score_positions"], extras["score_ids"], extras["score_weights"])[0]
            expected = []
            for piece in pieces:
                row = torch.cat([prompt, torch.from_numpy(piece[:-1])]).unsqueeze(0)
                positions = torch.arange(n - 1, n - 1 + piece.size).view(1, 1, -1)
                expected.append(score_module(embed(row), torch.ones_like(row), positions,
                                             torch.from_numpy(piece).view(1, 1, -1),
                                             torch.ones(1, 1, piece.size))[0, 0])
    except Exception as e:
        return f"the model does not run with a block mask and position ids: {type(e).__name__}: {str(e)[:300]}"
    error = float((got - torch.stack(expected)).abs().max())
    if not error <= 1e-4:
        return f"packed scores differ from unpacked ones by {error:.3g} in torch (the mask or positions are ignored)"
    return None
