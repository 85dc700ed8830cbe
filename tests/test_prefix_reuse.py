"""Prefix (key/value) reuse on causal LMs: the exported prefix/suffix graphs, and every perturbation
method giving the no-reuse result within 1e-5 while computing fewer token positions."""

from __future__ import annotations

import json
import shutil

import attribfast
import numpy as np
import pytest
from attribfast.export.reuse import validate_reuse

TEXT = "the quick brown fox jumps over the lazy dog and attribution tells which tokens matter"
# Scores below 32 in magnitude: float32's spacing there is 3.8e-6, so two exact computations that
# round differently (other batch shapes, a cache instead of a recomputation) stay within 1e-5. At
# |score| >= 64 one rounding step alone is 7.6e-6, as the no-reuse path shows between batch sizes.
TARGETS = [" hello world", " the", " small"]
METHODS = [
    attribfast.Occlusion(),
    attribfast.Occlusion(window=3, stride=2),
    attribfast.FeatureAblation(groups="word"),
    attribfast.ShapleySampling(n_permutations=3),
    # Enough coalitions for a well-posed fit: with fewer samples than ~10x the features, the
    # least-squares solve magnifies float rounding of the scores beyond 1e-5 on either path.
    attribfast.KernelShap(n_samples=300),
    attribfast.Lime(n_samples=60),
]


def both(model, method, **kwargs):
    # Small batches make many buckets, so the reuse path runs several prefix boundaries.
    reused = model.attribute(TEXT, TARGETS, method=method, batch_size=4, **kwargs)
    full = model.attribute(TEXT, TARGETS, method=method, batch_size=4, reuse_prefix=False, **kwargs)
    return reused, full


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_bundle_has_validated_reuse_graphs(bundles, name):
    manifest = json.loads((bundles[name] / "attribfast.json").read_text())
    assert {"prefix", "suffix_score"} <= set(manifest["graphs"])
    assert manifest["graphs"]["suffix_score"]["inputs"] == [
        "input_ids",
        "attention_mask",
        "past",
        "score_positions",
        "score_ids",
        "score_weights",
    ]
    assert manifest["prefix_reuse"]["available"] is True
    assert manifest["prefix_reuse"]["error"] <= 1e-4
    assert attribfast.load(bundles[name])._engine.reuses_prefix()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.name}-{getattr(m, 'window', '')}")
@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_reuse_equals_no_reuse(bundles, name, method):
    model = attribfast.load(bundles[name])
    reused, full = both(model, method)
    np.testing.assert_allclose(reused.matrix, full.matrix, atol=1e-5, rtol=0)
    np.testing.assert_allclose(reused.target_scores, full.target_scores, atol=1e-5, rtol=0)
    assert reused.evaluations == full.evaluations  # the same rows, each shorter
    assert 0 < reused.token_positions < full.token_positions


def test_per_token_and_generated_targets(bundles):
    model = attribfast.load(bundles["gpt2"])
    reused, full = both(model, attribfast.Occlusion(), per_token=True)
    np.testing.assert_allclose(reused.matrix, full.matrix, atol=1e-5, rtol=0)
    reused = model.attribute(TEXT, method="occlusion", generate=2, batch_size=2)
    full = model.attribute(TEXT, method="occlusion", generate=2, batch_size=2, reuse_prefix=False)
    np.testing.assert_allclose(reused.matrix, full.matrix, atol=1e-5, rtol=0)
    assert reused.token_positions < full.token_positions


def test_token_positions_count_the_rows(bundles):
    model = attribfast.load(bundles["gpt2"])
    n = len(model._spec.tokenizer.encode(TEXT).ids)
    k = len(model._spec.tokenizer.encode(" hello world", add_special_tokens=False).ids)
    full = model.attribute(TEXT, [" hello world"], method="occlusion", batch_size=4, reuse_prefix=False)
    # n occluded rows and the clean row, each the input plus the continuation but its last token.
    assert full.evaluations == n + 1
    assert full.token_positions == (n + 1) * (n + k - 1)
    assert full.to_dict()["token_positions"] == full.token_positions


def test_bucket_edges(bundles):
    """A change only at position 0 has nothing to reuse; one at the last position reuses all but one
    token; a window that spans a bucket edge is bucketed by its first change."""
    model = attribfast.load(bundles["gpt2"])
    n = len(model._spec.tokenizer.encode(TEXT).ids)
    for groups in (
        (0,) + (-1,) * (n - 1),  # position 0 only
        (-1,) * (n - 1) + (0,),  # the last position only
        (-1,) * 3 + (0, 0) + (-1,) * (n - 5),  # a 2-token window over positions 3 and 4
        (0,) * n,  # everything at once
    ):
        # Unpacked: one packed row per variant would leave the last-position case nothing to save.
        reused, full = both(model, attribfast.FeatureAblation(groups=groups), pack_targets=False)
        np.testing.assert_allclose(reused.matrix, full.matrix, atol=1e-5, rtol=0)
        assert reused.token_positions <= full.token_positions + n  # at most the one prefix run more
    last, last_full = both(model, attribfast.FeatureAblation(groups=(-1,) * (n - 1) + (0,)), pack_targets=False)
    assert last.token_positions < last_full.token_positions


def test_old_bundle_without_the_graphs_uses_the_full_path(bundles, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(bundles["gpt2"], old)
    manifest = json.loads((old / "attribfast.json").read_text())
    for name in ("prefix", "suffix_score"):
        del manifest["graphs"][name]
        del manifest["files"][f"{name}.onnx"]
        (old / f"{name}.onnx").unlink()
    del manifest["prefix_reuse"]
    (old / "attribfast.json").write_text(json.dumps(manifest))
    model = attribfast.load(old)
    assert not model._engine.reuses_prefix()
    result = model.attribute(TEXT, TARGETS, method="occlusion", batch_size=4)
    full = attribfast.load(bundles["gpt2"]).attribute(
        TEXT, TARGETS, method="occlusion", batch_size=4, reuse_prefix=False
    )
    np.testing.assert_array_equal(result.matrix, full.matrix)
    assert result.token_positions == full.token_positions


def test_reuse_prefix_must_be_a_bool(bundles):
    model = attribfast.load(bundles["gpt2"])
    with pytest.raises(attribfast.errors.InvalidInputError):
        model.attribute(TEXT, TARGETS, reuse_prefix="yes")


def test_validation_catches_a_wrong_prefix_graph(bundles, hf_dirs, tmp_path):
    """The export's check of the reuse graphs can fail: a cache scaled by 2 is caught."""
    import onnx
    from attribfast.tasks import get_task
    from transformers import AutoModelForCausalLM

    bad = tmp_path / "bad"
    shutil.copytree(bundles["gpt2"], bad)
    proto = onnx.load(str(bad / "prefix.onnx"))
    graph = proto.graph
    output = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{o}_raw" if o == output else o for o in node.output]
    graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(2.0, np.float32), "scale_bad"))
    graph.node.append(onnx.helper.make_node("Mul", [f"{output}_raw", "scale_bad"], [output]))
    onnx.save(proto, str(bad / "prefix.onnx"))
    task = get_task("causal-lm")
    torch_model = AutoModelForCausalLM.from_pretrained(hf_dirs["gpt2"]).eval()
    score_module = task.score_module(torch_model, "logprob")
    assert validate_reuse(task, torch_model, score_module, bundles["gpt2"], 64) <= 1e-4
    assert validate_reuse(task, torch_model, score_module, bad, 64) > 1e-4  # the export tolerance
