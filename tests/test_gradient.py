"""Gradient methods against Captum on tiny GPT-2, Llama (GQA) and BERT bundles; completeness; invariants.

Tolerance 1e-5 absolute: the gradient graph agrees with torch.autograd to ~1e-6 relative (export
validation), and both sides use the same quadrature nodes (Captum's definitions).
"""

from __future__ import annotations

import re
import warnings

import attribfast
import numpy as np
import pytest
import torch
from attribfast import _core
from attribfast.errors import ConvergenceWarning, InvalidInputError
from captum.attr import InputXGradient as CaptumInputXGradient
from captum.attr import LayerIntegratedGradients
from captum.attr import Saliency as CaptumSaliency
from reference import class_logits_from_embeddings, continuation_logprob_from_embeddings

# Captum warns when it switches requires_grad on for our embedding tensors itself.
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor.*did not already require gradients:UserWarning")

PROMPT = "the quick brown fox"
CONTINUATIONS = [" jumps over", " is"]


@pytest.fixture(scope="module")
def models(bundles):
    return {name: attribfast.load(path) for name, path in bundles.items()}


def ids_of(model, text):
    return torch.tensor([model._spec.tokenizer.encode(text).ids])


def continuation_of(model, text):
    return model._spec.tokenizer.encode(text, add_special_tokens=False).ids


def captum_lig_causal(torch_model, model, text, continuation, method, n_steps):
    score = continuation_logprob_from_embeddings(torch_model, continuation_of(model, continuation))
    embedding = torch_model.get_input_embeddings()
    lig = LayerIntegratedGradients(lambda ids: score(embedding(ids)), embedding)
    ids = ids_of(model, text)
    baseline = torch.full_like(ids, model._baseline_id(None))
    attributions, delta = lig.attribute(
        ids, baselines=baseline, n_steps=n_steps, method=method, return_convergence_delta=True
    )
    return attributions.sum(-1)[0].detach().numpy(), float(delta[0])


@pytest.mark.parametrize("name", ["gpt2", "llama"])
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_middle"])
def test_integrated_gradients_equals_captum_on_causal_lms(models, torch_models, name, method):
    model = models[name]
    result = model.attribute(
        PROMPT, targets=CONTINUATIONS, method=attribfast.IntegratedGradients(n_steps=16, method=method, tolerance=None)
    )
    for column, continuation in enumerate(CONTINUATIONS):
        expected, delta = captum_lig_causal(torch_models[name], model, PROMPT, continuation, method, 16)
        np.testing.assert_allclose(result.matrix[:, column], expected, atol=1e-5, rtol=0)
        assert abs(result.deltas[column] - delta) < 1e-5


def test_integrated_gradients_equals_captum_on_bert_classes(models, torch_models):
    model, torch_model = models["bert"], torch_models["bert"]
    text = "hello world this is a test"
    method = attribfast.IntegratedGradients(n_steps=20, tolerance=None)
    result = model.attribute(text, targets=["positive", "negative"], method=method)
    ids = ids_of(model, text)
    lig = LayerIntegratedGradients(lambda x: torch_model(x).logits, torch_model.get_input_embeddings())
    for column, label in enumerate(["positive", "negative"]):
        attributions = lig.attribute(
            ids,
            baselines=torch.full_like(ids, model._baseline_id(None)),
            target=model.labels.index(label),
            n_steps=20,
            method="gausslegendre",
        )
        np.testing.assert_allclose(result.matrix[:, column], attributions.sum(-1)[0].detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_saliency_and_input_x_gradient_equal_captum(models, torch_models, name):
    model, torch_model = models[name], torch_models[name]
    embeds = torch_model.get_input_embeddings()(ids_of(model, PROMPT)).detach()
    saliency = model.attribute(PROMPT, targets=CONTINUATIONS, method="saliency")
    input_x_gradient = model.attribute(PROMPT, targets=CONTINUATIONS, method="input_x_gradient")
    for column, continuation in enumerate(CONTINUATIONS):
        score = continuation_logprob_from_embeddings(torch_model, continuation_of(model, continuation))
        expected = CaptumSaliency(score).attribute(embeds.clone(), abs=True).sum(-1)[0].numpy()
        np.testing.assert_allclose(saliency.matrix[:, column], expected, atol=1e-5)
        expected = CaptumInputXGradient(score).attribute(embeds.clone()).sum(-1)[0].detach().numpy()
        np.testing.assert_allclose(input_x_gradient.matrix[:, column], expected, atol=1e-5)


def test_saliency_on_bert_classes_equals_captum(models, torch_models):
    model, torch_model = models["bert"], torch_models["bert"]
    text = "hello world"
    embeds = torch_model.get_input_embeddings()(ids_of(model, text)).detach()
    result = model.attribute(text, targets=[0, 2], method="saliency")
    for column, target in enumerate([0, 2]):
        expected = CaptumSaliency(class_logits_from_embeddings(torch_model)).attribute(
            embeds.clone(), target=target, abs=True
        )
        np.testing.assert_allclose(result.matrix[:, column], expected.sum(-1)[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_completeness_at_64_gauss_legendre_steps(models, name):
    targets = CONTINUATIONS if name != "bert" else ["negative", "neutral", "positive"]
    method = attribfast.IntegratedGradients(n_steps=64, tolerance=None)
    result = models[name].attribute(PROMPT, targets=targets, method=method)
    assert np.all(np.abs(result.deltas) <= 1e-3), result.deltas
    # The delta is what it says: sum of attributions minus f(x) - f(baseline).
    assert result.deltas.shape == (len(targets),)


def test_generated_tokens_are_attributed_one_column_each(models):
    result = models["gpt2"].attribute(PROMPT, generate=3, method=attribfast.IntegratedGradients(n_steps=32))
    assert result.matrix.shape[1] == 3 and len(result.targets) == 3
    assert np.all(np.abs(result.deltas) <= 1e-2)


def test_results_do_not_depend_on_the_batch_size(models):
    method = attribfast.IntegratedGradients(n_steps=8)
    results = [
        models["llama"].attribute(PROMPT, targets=CONTINUATIONS, method=method, batch_size=size) for size in (1, 3, 64)
    ]
    for other in results[1:]:
        np.testing.assert_allclose(results[0].matrix, other.matrix, atol=1e-6, rtol=0)
        # A delta subtracts two fp32 scores of magnitude ~5 (rounded at ~5e-7 each) from a sum.
        np.testing.assert_allclose(results[0].deltas, other.deltas, atol=1e-5, rtol=0)


def _path_difference(result):
    """f(input) - f(baseline) per target: the attributions' sum minus the convergence delta."""
    return result.matrix.astype(np.float64).sum(axis=0) - result.deltas


def test_by_default_steps_double_until_delta_is_within_5_percent(models):
    fixed = models["gpt2"].attribute(
        PROMPT, targets=CONTINUATIONS, method=attribfast.IntegratedGradients(n_steps=2, tolerance=None)
    )
    assert np.all(fixed.steps == 2)
    loose = np.abs(fixed.deltas) > 0.05 * np.abs(_path_difference(fixed)) + 1e-4
    assert np.any(loose), "two steps should not already converge (the control)"
    adaptive = models["gpt2"].attribute(PROMPT, targets=CONTINUATIONS, method=attribfast.IntegratedGradients(n_steps=2))
    bound = 0.05 * np.abs(_path_difference(adaptive)) + 1e-4
    assert np.all(np.abs(adaptive.deltas) <= bound + 1e-6), (adaptive.deltas, bound)
    assert np.all(adaptive.steps[loose] > 2)
    assert set(np.log2(adaptive.steps / 2)) <= set(range(9)), "steps double from n_steps"


def test_stopping_short_warns_with_the_delta_and_steps_and_records_them(models):
    method = attribfast.IntegratedGradients(n_steps=2, max_steps=4, tolerance=1e-6, absolute_tolerance=0.0)
    with pytest.warns(ConvergenceWarning) as record:
        result = models["gpt2"].attribute(PROMPT, targets=CONTINUATIONS, method=method)
    messages = [str(w.message) for w in record]
    assert len(messages) == len(CONTINUATIONS)
    for message, target, delta in zip(messages, CONTINUATIONS, result.deltas, strict=True):
        expected = rf"integrated gradients did not converge for target '{target}': \|delta\| = .* after 4 steps"
        assert re.match(expected, message)
        assert f"{abs(delta):.4g}" in message
    assert np.all(result.steps == 4) and np.all(np.abs(result.deltas) > 0)


def test_tolerance_none_keeps_fixed_steps_without_warnings(models):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = models["gpt2"].attribute(
            PROMPT, targets=CONTINUATIONS, method=attribfast.IntegratedGradients(n_steps=2, tolerance=None)
        )
    assert np.all(result.steps == 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tolerance": 0}, {"tolerance": -0.1}, {"tolerance": float("nan")}, {"tolerance": "0.05"},
        {"absolute_tolerance": -1.0}, {"absolute_tolerance": None}, {"baseline": np.zeros((2, 2), object)},
        {"baseline": np.zeros(3)}, {"baseline": np.full((2, 2), 1e300)}, {"baseline": 3},
    ],
)
def test_integrated_gradients_parameters_are_checked_when_configured(kwargs):
    with pytest.raises(InvalidInputError):
        attribfast.IntegratedGradients(**kwargs)


def test_captum_trapezoid_weights_are_biased_and_ours_are_normalised():
    _, captum_weights = _core.quadrature("riemann_trapezoid", 10)
    _, weights = _core.quadrature("trapezoid", 10)
    assert abs(captum_weights.sum() - 0.9) < 1e-12 and abs(weights.sum() - 1.0) < 1e-12
    alphas, gl = _core.quadrature("gausslegendre", 7)
    nodes, reference = np.polynomial.legendre.leggauss(7)
    np.testing.assert_allclose(alphas, 0.5 * (1 + nodes), atol=1e-14)
    np.testing.assert_allclose(gl, 0.5 * reference, atol=1e-14)


def test_l2_aggregation_and_baseline_options(models):
    model = models["bert"]
    text = "hello world"
    signed = model.attribute(text, targets=[1], method=attribfast.IntegratedGradients(n_steps=8))
    norms = model.attribute(text, targets=[1], method=attribfast.IntegratedGradients(n_steps=8, aggregation="l2"))
    # Cauchy-Schwarz over the 32 hidden dimensions: |sum| <= sqrt(32) * l2 (|sum| <= l2 does not hold in general).
    assert np.all(norms.matrix >= 0) and np.all(np.sqrt(32) * norms.matrix + 1e-7 >= np.abs(signed.matrix))
    assert not np.allclose(norms.matrix, np.abs(signed.matrix))
    zero = model.attribute(text, targets=[1], method=attribfast.IntegratedGradients(n_steps=8, baseline="zero"))
    explicit = model.attribute(
        text, targets=[1], method=attribfast.IntegratedGradients(n_steps=8, baseline=np.zeros((4, 32), np.float32))
    )
    np.testing.assert_array_equal(zero.matrix, explicit.matrix)
    with pytest.raises(InvalidInputError, match="shape"):
        model.attribute(text, targets=[1], method=attribfast.IntegratedGradients(baseline=np.zeros((3, 32))))
    with pytest.raises(InvalidInputError, match="method must be one of"):
        attribfast.IntegratedGradients(method="simpson")
