"""Perturbation methods against Captum on tiny GPT-2 and BERT, against exact values, and invariants.

Tolerance 1e-5: both sides compute the same fp32 scores (ONNX Runtime vs torch differ by ~1e-6 per
score, see the export errors) and an attribution is a difference of two such scores.
"""

from __future__ import annotations

import itertools
import math

import attribfast
import numpy as np
import pytest
import torch
from attribfast import _core
from attribfast._runtime import default_providers
from attribfast.errors import InvalidInputError, MethodNotAvailableError, NonFiniteScoreError, TargetError
from captum.attr import FeatureAblation as CaptumAblation
from captum.attr import Occlusion as CaptumOcclusion
from captum.attr import ShapleyValueSampling
from onnx_models import interaction_score_model, linear_score_model, nan_score_model
from reference import class_logits, continuation_logprob
from tolerances import float32_tolerance

PROMPT = "the quick brown fox jumps"
CONTINUATIONS = [" over the", " is"]


@pytest.fixture(scope="module")
def gpt2(bundles):
    return attribfast.load(bundles["gpt2"])


def prompt_ids(model, text=PROMPT):
    return torch.tensor([model._spec.tokenizer.encode(text).ids])


def continuation_ids(model, text):
    return model._spec.tokenizer.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("window,stride", [(1, 1), (2, 1), (3, 2)])
def test_occlusion_equals_captum_on_gpt2(gpt2, torch_models, window, stride):
    result = gpt2.attribute(PROMPT, targets=CONTINUATIONS, method=attribfast.Occlusion(window=window, stride=stride))
    ids = prompt_ids(gpt2)
    baseline = gpt2._baseline_id(None)
    for column, continuation in enumerate(CONTINUATIONS):
        forward = continuation_logprob(torch_models["gpt2"], continuation_ids(gpt2, continuation))
        expected = (
            CaptumOcclusion(forward)
            .attribute(ids, sliding_window_shapes=(window,), strides=stride, baselines=baseline)[0]
            .numpy()
        )
        np.testing.assert_allclose(result.matrix[:, column], expected, atol=1e-5, rtol=0)
        assert abs(result.target_scores[column] - float(forward(ids)[0])) < 1e-5


def test_occlusion_equals_captum_on_bert_classes(bert, torch_models):
    text = "hello world this is a test"
    result = bert.attribute(text, targets=["negative", "positive", "neutral"], method="occlusion")
    ids = prompt_ids(bert, text)
    for column, label in enumerate(["negative", "positive", "neutral"]):
        expected = (
            CaptumOcclusion(class_logits(torch_models["bert"]))
            .attribute(
                ids, sliding_window_shapes=(1,), baselines=bert._baseline_id(None), target=bert.labels.index(label)
            )[0]
            .numpy()
        )
        np.testing.assert_allclose(result.matrix[:, column], expected, atol=1e-5, rtol=0)


def test_feature_ablation_with_word_groups_equals_captum(bert, torch_models):
    text = "quickly tokenizing brownish foxes"
    result = bert.attribute(text, targets=[0, 2], method=attribfast.FeatureAblation(groups="word", baseline="mask"))
    encoded = bert._encode(text, None)
    groups = bert._engine.groups("word", encoded)
    assert len(set(groups)) < len(groups), "the text should contain multi-token words"
    ids = prompt_ids(bert, text)
    for column, target in enumerate([0, 2]):
        expected = (
            CaptumAblation(class_logits(torch_models["bert"]))
            .attribute(ids, baselines=bert._baseline_id("mask"), target=target, feature_mask=torch.tensor([groups]))[0]
            .numpy()
        )
        np.testing.assert_allclose(result.matrix[:, column], expected, atol=1e-5, rtol=0)


def test_shapley_sampling_equals_captum_with_the_same_permutations(gpt2, torch_models):
    text = "the lazy dog"
    ids = prompt_ids(gpt2, text)
    n = ids.shape[1]
    permutations = _core.permutations(n, 6, 123)
    result = gpt2.attribute(
        text, targets=[" jumps"], method=attribfast.ShapleySampling(permutations=tuple(map(tuple, permutations)))
    )
    forward = continuation_logprob(torch_models["gpt2"], continuation_ids(gpt2, " jumps"))
    captum = ShapleyValueSampling(forward)
    captum.permutation_generator = lambda num_features, num_samples: iter(permutations.tolist())
    expected = captum.attribute(ids, baselines=gpt2._baseline_id(None), n_samples=len(permutations))[0].numpy()
    np.testing.assert_allclose(result.matrix[:, 0], expected, atol=1e-5, rtol=0)
    assert result.standard_errors is not None and np.all(result.standard_errors >= 0)


def exact_shapley(forward, ids: torch.Tensor, baseline: int) -> np.ndarray:
    """Brute-force Shapley values over all 2^n coalitions (n <= 8)."""
    n = ids.shape[1]
    coalitions = list(itertools.product([0, 1], repeat=n))
    inputs = torch.stack([torch.where(torch.tensor(c, dtype=torch.bool), ids[0], baseline) for c in coalitions])
    values = dict(zip(coalitions, forward(inputs).numpy(), strict=True))
    phi = np.zeros(n)
    for i in range(n):
        for coalition in coalitions:
            if coalition[i]:
                continue
            k = sum(coalition)
            weight = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
            with_i = coalition[:i] + (1,) + coalition[i + 1 :]
            phi[i] += weight * (values[with_i] - values[coalition])
    return phi


def test_shapley_sampling_is_within_three_standard_errors_of_exact_values(gpt2, torch_models):
    text = "the fox is"
    ids = prompt_ids(gpt2, text)
    assert ids.shape[1] <= 8
    forward = continuation_logprob(torch_models["gpt2"], continuation_ids(gpt2, " jumps"))
    exact = exact_shapley(forward, ids, gpt2._baseline_id(None))
    result = gpt2.attribute(text, targets=[" jumps"], method=attribfast.ShapleySampling(n_permutations=40, seed=7))
    errors = result.standard_errors[:, 0].astype(np.float64)
    assert np.all(np.abs(result.matrix[:, 0] - exact) <= 3 * errors + 1e-6), (result.matrix[:, 0], exact, errors)
    assert np.all(errors > 0), "a non-additive model must show sampling error"


def test_shapley_budget_returns_the_estimate_so_far(gpt2):
    full = gpt2.attribute(PROMPT, targets=[" is"], method=attribfast.ShapleySampling(n_permutations=200, seed=1))
    budget = gpt2.attribute(
        PROMPT, targets=[" is"], method=attribfast.ShapleySampling(n_permutations=200, seed=1, max_evaluations=300)
    )
    assert budget.evaluations < full.evaluations
    assert budget.standard_errors is not None and np.all(np.isfinite(budget.standard_errors))


@pytest.mark.parametrize("kind", ["kernel_shap", "lime"])
def test_surrogates_equal_a_numpy_weighted_least_squares_on_the_same_samples(bert, torch_models, kind):
    text = "hello world this is"
    config = (
        attribfast.KernelShap(n_samples=60, seed=3) if kind == "kernel_shap" else attribfast.Lime(n_samples=60, seed=3)
    )
    result = bert.attribute(text, targets=[1], method=config)
    ids = prompt_ids(bert, text)
    n = ids.shape[1]
    coalitions, weights = _core.surrogate_samples(kind, n, 60, 3, 1.0)
    baseline = bert._baseline_id(None)
    inputs = torch.where(torch.from_numpy(coalitions.astype(bool)), ids[0], baseline)
    y = class_logits(torch_models["bert"])(inputs)[:, 1].double().numpy()
    x = np.hstack([coalitions.astype(np.float64), np.ones((len(y), 1))])
    penalty = np.diag([config.ridge] * n + [0.0])
    beta = np.linalg.solve(x.T @ (weights[:, None] * x) + penalty, x.T @ (weights * y))
    np.testing.assert_allclose(result.matrix[:, 0], beta[:n], atol=2e-4, rtol=1e-3)


def test_matrices_do_not_depend_on_the_batch_size(gpt2):
    for method in (attribfast.Occlusion(window=2), attribfast.ShapleySampling(n_permutations=3, seed=2)):
        results = [gpt2.attribute(PROMPT, targets=CONTINUATIONS, method=method, batch_size=size) for size in (1, 3, 64)]
        # Row order inside a batch is the same; only the batching differs. fp32 kernels may tile
        # differently by batch, hence a few float32 roundings of the scores rather than bit equality
        # (tests/tolerances.py; at least 1e-6, or 1e-5 on CUDA, whose kernels change their summation
        # order with the batch shape: 1.9e-6 seen on an H100).
        floor = 1e-5 if "cuda" in default_providers() else 1e-6
        tolerance = float32_tolerance(results[0].target_scores, floor)
        np.testing.assert_allclose(results[0].matrix, results[1].matrix, atol=tolerance, rtol=0)
        np.testing.assert_allclose(results[0].matrix, results[2].matrix, atol=tolerance, rtol=0)


def test_sampling_collisions_and_causal_horizons_skip_evaluations(tmp_path):
    table = np.arange(30, dtype=np.float32).reshape(10, 3) / 7
    path = tmp_path / "linear.onnx"
    path.write_bytes(linear_score_model(table))
    model = attribfast.AttributionModel.from_onnx(path, labels=["a", "b", "c"])
    result = model.attribute([1, 2, 3], targets=["a"], method=attribfast.ShapleySampling(n_permutations=50, seed=0))
    # Only 2^3 coalitions exist: each distinct one (minus the clean input) runs once.
    assert result.evaluations <= 8
    causal = attribfast.AttributionModel.from_onnx(path, labels=["a", "b", "c"], causal=True)
    occlusion = causal.attribute([1, 2, 3, 4], targets=["b"], method="occlusion")
    assert occlusion.evaluations == 1 + 4


def test_bring_your_own_onnx_model_exact_values(tmp_path):
    table = np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32)
    path = tmp_path / "linear.onnx"
    path.write_bytes(linear_score_model(table))
    model = attribfast.AttributionModel.from_onnx(path, labels=["w", "x", "y", "z"], pad_id=0)
    ids = [3, 7, 7, 1, 11]
    assert set(model.methods) == {"occlusion", "feature_ablation", "shapley_sampling", "kernel_shap", "lime",
                                  "hierarchical"}
    expected = table[ids][:, [3, 0]] - table[0][[3, 0]]
    for method in ("occlusion", "feature_ablation", "shapley_sampling", "kernel_shap", "lime"):
        result = model.attribute(ids, targets=["z", 0], method=method)
        tolerance = 2e-3 if method == "lime" else 1e-4  # LIME's ridge shrinks a little
        np.testing.assert_allclose(result.matrix, expected, atol=tolerance, err_msg=method)
    with pytest.raises(MethodNotAvailableError, match="possible here: occlusion"):
        model.attribute(ids, targets=[0], method="integrated_gradients")


def test_interaction_model_shapley_matches_brute_force(tmp_path):
    table = np.random.default_rng(1).standard_normal((8, 1)).astype(np.float32)
    path = tmp_path / "pair.onnx"
    path.write_bytes(interaction_score_model(table, 0.5))
    model = attribfast.AttributionModel.from_onnx(path)
    ids = [2, 5, 1, 7]
    # Exhaustive permutations of 4 features give exact Shapley values.
    permutations = tuple(itertools.permutations(range(4)))
    result = model.attribute(ids, targets=[0], method=attribfast.ShapleySampling(permutations=permutations))

    def value(coalition):
        kept = [ids[i] if i in coalition else 0 for i in range(4)]
        pair = table[kept[0], 0] + table[kept[1], 0]
        return table[kept, 0].sum() + 0.5 * pair * pair

    exact = [
        sum(value(set(p[: p.index(i) + 1])) - value(set(p[: p.index(i)])) for p in permutations) / 24 for i in range(4)
    ]
    np.testing.assert_allclose(result.matrix[:, 0], exact, atol=1e-5)


def test_bad_requests_raise_typed_errors(gpt2, bert, tmp_path):
    with pytest.raises(MethodNotAvailableError, match="available: occlusion"):
        gpt2.attribute(PROMPT, targets=[" x"], method="gradcam")
    with pytest.raises(InvalidInputError, match="window"):
        attribfast.Occlusion(window=0)
    with pytest.raises(InvalidInputError, match="longer than the input"):
        gpt2.attribute("the", targets=[" x"], method=attribfast.Occlusion(window=50))
    with pytest.raises(InvalidInputError, match="no mask token"):
        gpt2.attribute(PROMPT, targets=[" x"], method=attribfast.Occlusion(baseline="mask"))
    with pytest.raises(TargetError, match="tokenizes to nothing"):
        gpt2.attribute(PROMPT, targets=[""])
    with pytest.raises(TargetError, match="unknown class 'angry'"):
        bert.attribute("hello world", targets=["angry"])
    with pytest.raises(TargetError, match="class names or ids"):
        bert.attribute("hello world", targets=[1.5])
    with pytest.raises(InvalidInputError, match="empty"):
        gpt2.attribute("   ", targets=[" x"])
    path = tmp_path / "nan.onnx"
    path.write_bytes(nan_score_model())
    with pytest.raises(InvalidInputError, match="no output 'logits'"):
        attribfast.AttributionModel.from_onnx(path, score_output="logits")
    with pytest.raises(InvalidInputError, match="inputs are"):
        attribfast.AttributionModel.from_onnx(path, mask_input=None)
    nan_model = attribfast.AttributionModel.from_onnx(path)
    with pytest.raises(NonFiniteScoreError, match="non-finite"):
        nan_model.attribute([1, 2, 3], targets=[0])
