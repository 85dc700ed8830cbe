"""Packed continuations: every perturbation method gives the unpacked results from fewer token
positions; the layout itself is checked by hand; bundles that cannot pack fall back."""

import json

import attribfast
import numpy as np
import pytest
from attribfast.bundle import MANIFEST
from attribfast.errors import InvalidInputError
from attribfast.tasks.packed import OFFSETS, SEGMENTS, local_attention, pack_continuations, packed_layout
from tolerances import float32_tolerance

PROMPT = "the quick fox"
LONGER_PROMPT = "the quick brown fox jumps"
# One token, several, and one longer than the prompt (in tokens).
TARGETS = [" a", " no it is not", " maybe so", " a very long continuation here"]
METHODS = [
    attribfast.Occlusion(),
    attribfast.FeatureAblation(),
    attribfast.ShapleySampling(n_permutations=3, seed=1),
    attribfast.KernelShap(n_samples=40, seed=2),
    attribfast.Lime(n_samples=40, seed=3),
]
# Packing changes the row a score is computed in (other lengths, other batches), so float32
# rounding differs. 1e-5 absolute, or a few float32 roundings of the largest score where that is
# more (tests/tolerances.py): a 20-token continuation's log-probability is about -116 (ulp 7.6e-6),
# and an attribution is the difference of two such scores.
TOLERANCE = 1e-5


def close(result, reference):
    atol = float32_tolerance(reference.target_scores, TOLERANCE)
    np.testing.assert_allclose(result.matrix, reference.matrix, atol=atol, rtol=0)
    np.testing.assert_allclose(result.target_scores, reference.target_scores, atol=atol, rtol=0)


def test_layout_by_hand():
    pieces = [np.array([5, 6, 7]), np.array([8]), np.array([9, 10])]
    plan = pack_continuations(4, pieces, pad_id=0)
    # Reads 5, 6 (continuation 1), nothing (2), 9 (3); predicts from the prompt's last token (3).
    assert plan.suffixes == [[5, 6, 9]]
    assert plan.extras[OFFSETS].tolist() == [[0, 1, 0]]
    assert plan.extras[SEGMENTS].tolist() == [[1, 1, 3]]
    assert plan.extras["score_positions"][0].tolist() == [[3, 4, 5], [3, 0, 0], [3, 6, 0]]
    assert plan.extras["score_ids"][0].tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert plan.extras["score_weights"][0].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert plan.column_targets == [[0, 1, 2]] and plan.horizons == [4 - 2 + 3]


def test_layout_splits_and_pads_segments():
    pieces = [np.arange(1, 6) for _ in range(5)]  # each reads 4 tokens
    plan = pack_continuations(3, pieces, pad_id=99, budget=8)
    assert plan.column_targets == [[0, 1], [2, 3], [4, -1]]
    assert plan.suffixes[2] == [1, 2, 3, 4, 99, 99, 99, 99]  # padded to one width
    assert plan.extras[SEGMENTS][2].tolist() == [1, 1, 1, 1, 3, 3, 3, 3]  # padding: a segment of its own


def test_single_token_continuations_share_the_forward_row():
    plan = pack_continuations(5, [np.array([7]), np.array([8])], pad_id=0)
    assert plan.graph == "forward" and plan.suffixes == [[]] and plan.column_targets == [[0, 1]]


def test_mask_and_positions_by_hand():
    import torch

    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    offsets = torch.tensor([[0, 1, 0], [0, 1, 0]])
    segments = torch.tensor([[1, 1, 2], [1, 1, 2]])
    positions, additive = packed_layout(mask, offsets, segments)
    allowed = (additive == 0)[:, 0].int().tolist()
    # Row 0: prompt of 2, then continuation 1 (2 tokens) and continuation 2 (1 token) restart at 2.
    assert positions[0].tolist() == [0, 1, 2, 3, 2]
    assert allowed[0] == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 1]]
    # Row 1 is one shorter (right padding): a prompt of 1; the padding position attends causally.
    assert positions[1].tolist() == [0, 1, 2, 1, 0]
    assert allowed[1][4] == [1, 0, 0, 0, 0]
    # After a cached prefix of 2 positions, the same rows read as positions 2.. of the whole.
    positions, additive = packed_layout(mask[:, 2:], offsets, segments, start=2)
    assert positions[0].tolist() == [2, 3, 2]
    assert (additive == 0)[0, 0].int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 1]]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_bundles_carry_validated_packed_graphs(bundles, family):
    manifest = json.loads((bundles[family] / MANIFEST).read_text())
    note = manifest["packing"]
    assert note["available"] and note["reuse"] and note["error"] <= 1e-4 and note["reuse_error"] <= 1e-4
    assert {"packed_score", "packed_suffix_score"} <= set(manifest["graphs"])


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_packed_equals_unpacked(bundles, family, method):
    model = attribfast.load(bundles[family])
    # batch_size=2 makes small prefix buckets, so the reuse runs read cached prefixes.
    results = {
        (pack, reuse): model.attribute(
            LONGER_PROMPT, targets=TARGETS, method=method, pack_targets=pack, reuse_prefix=reuse, batch_size=2
        )
        for pack in (True, False)
        for reuse in (True, False)
    }
    unpacked = results[(False, False)]
    for result in results.values():
        close(result, unpacked)
    assert results[(True, False)].token_positions < 0.6 * unpacked.token_positions
    assert results[(True, True)].token_positions < results[(True, False)].token_positions


def test_one_continuation_is_not_packed(bundles):
    model = attribfast.load(bundles["gpt2"])
    one = model.attribute(PROMPT, targets=[" over"], method="occlusion")
    rows = model.attribute(PROMPT, targets=[" over"], method="occlusion", pack_targets=False)
    np.testing.assert_array_equal(one.matrix, rows.matrix)
    assert one.token_positions == rows.token_positions


def test_fifty_continuations_split_into_several_rows(bundles):
    model = attribfast.load(bundles["gpt2"])
    words = "red green blue cyan black white grey pink gold teal".split()
    targets = [f" {a} and {b} then" for a in words[:5] for b in words]  # 50 continuations
    encoded = model._encode(PROMPT, None)
    plan = model._plan_targets(encoded, targets, None)
    assert len(plan.packed.suffixes) > 1  # the planner splits them
    packed = model.attribute(PROMPT, targets=targets, method="occlusion", reuse_prefix=False)
    rows = model.attribute(PROMPT, targets=targets, method="occlusion", pack_targets=False, reuse_prefix=False)
    close(packed, rows)
    assert packed.token_positions < rows.token_positions


def test_position_limit_reached(bundles):
    """Prompt + longest continuation fill the model's 64 positions; the packed row is longer."""
    model = attribfast.load(bundles["gpt2"])
    tokenizer = model._spec.tokenizer
    targets = [" one two three four five six seven eight nine ten", " yes", " no no"]
    longest = max(len(tokenizer.encode(t, add_special_tokens=False).ids) for t in targets)
    limit = model._spec.max_length
    prompt = tokenizer.encode("lorem ipsum dolor sit amet " * 20).ids[: limit - longest + 1]  # token ids
    n = len(prompt)
    assert n + longest - 1 == limit
    packed = model.attribute(prompt, targets=targets, method="occlusion")
    plan = model._plan_targets(model._encode(prompt, None), targets, None)
    assert n + len(plan.packed.suffixes[0]) > model._spec.max_length
    rows = model.attribute(prompt, targets=targets, method="occlusion", pack_targets=False)
    close(packed, rows)


def test_unpackable_bundle_falls_back(bundles, tmp_path):
    """A bundle without the packed graphs (an older bundle, or a family that declines) runs unpacked."""
    model = attribfast.load(bundles["gpt2"])
    plan = model._plan_targets(model._encode(PROMPT, None), TARGETS, None)
    assert plan.packed is not None
    del model._spec.graphs["packed_score"]
    assert model._plan_targets(model._encode(PROMPT, None), TARGETS, None).packed is None
    result = model.attribute(PROMPT, targets=TARGETS, method="occlusion")
    reference = attribfast.load(bundles["gpt2"]).attribute(PROMPT, targets=TARGETS, method="occlusion")
    close(result, reference)


def test_local_attention_declines_packing():
    """A 4-D mask replaces transformers' sliding-window masks, so windowed models keep the unpacked plan."""
    from transformers import Gemma2Config, LlamaConfig, MistralConfig, Qwen2Config

    assert local_attention(LlamaConfig(), 64) is None
    assert local_attention(MistralConfig(sliding_window=4096), 64) is None  # the window covers every row
    assert "sliding_window = 4" in local_attention(MistralConfig(sliding_window=4), 64)
    assert local_attention(Qwen2Config(sliding_window=4, use_sliding_window=False), 64) is None
    assert "sliding_window = 16" in local_attention(Gemma2Config(sliding_window=16), 64)


def test_failed_check_drops_the_packed_graphs(hf_dirs, bundles, tmp_path, monkeypatch):
    """Packed graphs that disagree with the unpacked forward are dropped; the bundle runs unpacked."""
    from attribfast import export

    failing = {"available": False, "reuse": False, "error": 1.0, "reason": "packed scores differ by 1"}
    monkeypatch.setattr(export, "validate_packing", lambda *args: failing)
    bundle = attribfast.export_model(hf_dirs["gpt2"], task="causal-lm", out_dir=tmp_path / "b", prefix_reuse=False)
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["packing"] == failing
    assert "packed_score" not in manifest["graphs"] and not (bundle / "packed_score.onnx").exists()
    model = attribfast.load(bundle)
    assert model._plan_targets(model._encode(PROMPT, None), TARGETS, None).packed is None
    # The same weights as the session bundle, which runs packed.
    packed = attribfast.load(bundles["gpt2"]).attribute(PROMPT, targets=TARGETS, method="occlusion")
    close(model.attribute(PROMPT, targets=TARGETS, method="occlusion"), packed)


def test_pack_targets_must_be_a_bool(bundles):
    model = attribfast.load(bundles["gpt2"])
    with pytest.raises(InvalidInputError, match="pack_targets"):
        model.attribute(PROMPT, targets=TARGETS, pack_targets="yes")
