"""Contrastive attribution: score(target) - score(contrast) in one run, against Captum given that
difference as its forward function; the linearity claim of docs/semantics.md; Attribution.contrast."""

from __future__ import annotations

import attribfast
import numpy as np
import pytest
import torch
from attribfast import Attribution, _core
from attribfast.contrast import plan_contrast
from attribfast.errors import InvalidInputError, MethodNotAvailableError, TargetError
from captum.attr import LayerIntegratedGradients, ShapleyValueSampling
from captum.attr import Occlusion as CaptumOcclusion
from onnx_models import interaction_score_model
from reference import continuation_logprob, continuation_logprob_from_embeddings

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor.*did not already require gradients:UserWarning")

PROMPT = "the quick brown fox jumps"
TARGETS = [" over the", " is", " jumps"]


@pytest.fixture(scope="module")
def gpt2(bundles):
    return attribfast.load(bundles["gpt2"])


def ids_of(model, text=PROMPT):
    return torch.tensor([model._spec.tokenizer.encode(text).ids])


def piece(model, text):
    return model._spec.tokenizer.encode(text, add_special_tokens=False).ids


def difference(torch_model, model, a, b, embeddings=False):
    """Captum's forward: score(a) - score(b), the oracle of contrast."""
    make = continuation_logprob_from_embeddings if embeddings else continuation_logprob
    fa, fb = make(torch_model, piece(model, a)), make(torch_model, piece(model, b))
    return lambda x: fa(x) - fb(x)


def test_plan_contrast_weights_by_hand():
    one = plan_contrast(["a", "b"], "c")
    assert one.items == ("a", "b", "c") and one.against == (2, 2)
    np.testing.assert_array_equal(one.weights, [[1, 0], [0, 1], [-1, -1]])
    aligned = plan_contrast(["a", "b", "c"], ["b", "a", "d"])  # contrasts among the targets are reused
    assert aligned.items == ("a", "b", "c", "d") and aligned.against == (1, 0, 3)
    np.testing.assert_array_equal(aligned.weights, [[1, -1, 0], [-1, 1, 0], [0, 0, 1], [0, 0, -1]])
    others = plan_contrast(["a", "b", "c"], "others")
    np.testing.assert_allclose(others.weights, [[1, -0.5, -0.5], [-0.5, 1, -0.5], [-0.5, -0.5, 1]])
    assert plan_contrast([1, 2], 0).items == (1, 2, 0)
    with pytest.raises(TargetError, match="itself"):
        plan_contrast(["a", "b"], ["b", "b"])
    with pytest.raises(TargetError, match="2 entries for 3"):
        plan_contrast(["a", "b", "c"], ["x", "y"])
    with pytest.raises(TargetError, match="at least two"):
        plan_contrast(["a"], "others")
    with pytest.raises(TargetError):
        plan_contrast(["a"], 1.5)


@pytest.mark.parametrize(
    "contrast, against",
    [(" the", [" the"] * 3), ([" is", " jumps", " over the"], [" is", " jumps", " over the"]), ("others", None)],
)
def test_occlusion_contrast_equals_captum_on_the_difference(gpt2, torch_models, contrast, against):
    result = gpt2.attribute(PROMPT, targets=TARGETS, method=attribfast.Occlusion(window=2), contrast=contrast)
    ids, baseline = ids_of(gpt2), gpt2._baseline_id(None)
    torch_model = torch_models["gpt2"]
    for column, target in enumerate(TARGETS):
        if against is None:  # "others": score(a) - mean of the others' scores
            rest = [continuation_logprob(torch_model, piece(gpt2, t)) for t in TARGETS if t != target]
            own = continuation_logprob(torch_model, piece(gpt2, target))

            def forward(x, own=own, rest=rest):
                return own(x) - sum(f(x) for f in rest) / len(rest)

            label = f"{target} vs others"
        else:
            forward = difference(torch_model, gpt2, target, against[column])
            label = f"{target} vs {against[column]}"
        expected = CaptumOcclusion(forward).attribute(ids, sliding_window_shapes=(2,), baselines=baseline)[0]
        np.testing.assert_allclose(result.matrix[:, column], expected.numpy(), atol=1e-5, rtol=0)
        assert result.targets[column] == label
        assert abs(result.target_scores[column] - float(forward(ids)[0])) < 1e-5
    assert result.contrasts == (tuple(against) if against else ("others",) * 3)


def test_integrated_gradients_contrast_equals_captum_on_the_difference(gpt2, torch_models):
    result = gpt2.attribute(
        PROMPT, targets=TARGETS[:2], method=attribfast.IntegratedGradients(n_steps=16), contrast=" jumps"
    )
    torch_model = torch_models["gpt2"]
    embedding = torch_model.get_input_embeddings()
    ids = ids_of(gpt2)
    for column, target in enumerate(TARGETS[:2]):
        score = difference(torch_model, gpt2, target, " jumps", embeddings=True)
        lig = LayerIntegratedGradients(lambda x, score=score: score(embedding(x)), embedding)
        expected, delta = lig.attribute(
            ids,
            baselines=torch.full_like(ids, gpt2._baseline_id(None)),
            n_steps=16,
            method="gausslegendre",
            return_convergence_delta=True,
        )
        np.testing.assert_allclose(result.matrix[:, column], expected.sum(-1)[0].detach().numpy(), atol=1e-4, rtol=0)
        assert abs(result.deltas[column] - float(delta[0])) < 1e-4


def test_shapley_contrast_equals_captum_with_the_same_permutations(gpt2, torch_models):
    n = ids_of(gpt2).shape[1]
    permutations = _core.permutations(n, 5, 7)
    method = attribfast.ShapleySampling(permutations=tuple(map(tuple, permutations)))
    result = gpt2.attribute(PROMPT, targets=[" over the"], method=method, contrast=" is")
    captum = ShapleyValueSampling(difference(torch_models["gpt2"], gpt2, " over the", " is"))
    captum.permutation_generator = lambda num_features, num_samples: iter(permutations.tolist())
    expected = captum.attribute(ids_of(gpt2), baselines=gpt2._baseline_id(None), n_samples=len(permutations))[0]
    np.testing.assert_allclose(result.matrix[:, 0], expected.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "method",
    [
        attribfast.Occlusion(),
        attribfast.ShapleySampling(n_permutations=4, seed=3),
        attribfast.KernelShap(n_samples=40, seed=3),
        attribfast.Lime(n_samples=40, seed=3),
        attribfast.InputXGradient(),
    ],
    ids=lambda m: m.name,
)
def test_contrast_is_the_difference_of_columns_of_one_run(gpt2, method):
    """The claim of docs/semantics.md: methods linear in the score give contrast = column difference."""
    plain = gpt2.attribute(PROMPT, targets=TARGETS, method=method)
    contrastive = gpt2.attribute(PROMPT, targets=TARGETS[:2], method=method, contrast=" jumps")
    expected = plain.matrix[:, :2] - plain.matrix[:, 2:]
    np.testing.assert_allclose(contrastive.matrix, expected, atol=1e-5, rtol=0)
    after = plain.contrast(" over the", " jumps")
    np.testing.assert_allclose(after.matrix[:, 0], contrastive.matrix[:, 0], atol=1e-6, rtol=0)
    if plain.standard_errors is not None:  # the bound se(a) + se(b)
        np.testing.assert_allclose(
            contrastive.standard_errors, plain.standard_errors[:, :2] + plain.standard_errors[:, 2:], rtol=1e-6
        )


def test_linearity_is_in_the_score_not_the_model(tmp_path):
    """A model whose score is not additive in the tokens: contrast still equals the column difference,
    exactly (occlusion and Shapley), because the methods are linear in the score function."""
    table = np.random.default_rng(2).standard_normal((10, 3)).astype(np.float32)
    path = tmp_path / "interaction.onnx"
    path.write_bytes(interaction_score_model(table, pair_weight=1.5))
    model = attribfast.AttributionModel.from_onnx(path, pad_id=0)
    ids = [3, 7, 2, 9, 4]
    for method in (attribfast.Occlusion(window=2), attribfast.ShapleySampling(n_permutations=6)):
        plain = model.attribute(ids, targets=[0, 1, 2], method=method)
        contrastive = model.attribute(ids, targets=[0, 1, 2], method=method, contrast="others")
        expected = plain.matrix - (plain.matrix.sum(1, keepdims=True) - plain.matrix) / 2
        np.testing.assert_allclose(contrastive.matrix, expected, atol=1e-5, rtol=0)


def test_logprob_contrast_of_single_tokens_is_a_logit_difference(gpt2, torch_models):
    """log p(a) - log p(b) at one position = logit(a) - logit(b): the softmax normaliser cancels, so a
    log-prob contrast of one-token targets does not depend on the rest of the vocabulary."""
    torch_model = torch_models["gpt2"]
    a, b = piece(gpt2, " is"), piece(gpt2, " the")
    assert len(a) == len(b) == 1, "the test needs one-token continuations"

    def logit_difference(x):
        with torch.no_grad():
            logits = torch_model(x).logits[:, -1]
        return logits[:, a[0]] - logits[:, b[0]]

    result = gpt2.attribute(PROMPT, targets=[" is"], method="occlusion", contrast=" the")
    expected = CaptumOcclusion(logit_difference).attribute(
        ids_of(gpt2), sliding_window_shapes=(1,), baselines=gpt2._baseline_id(None)
    )[0]
    np.testing.assert_allclose(result.matrix[:, 0], expected.numpy(), atol=1e-5, rtol=0)


def test_contrast_metadata_survives_save_load_dict_and_pandas(gpt2, tmp_path):
    result = gpt2.attribute(PROMPT, targets={"over": " over the", "is": " is"}, method="occlusion", contrast="others")
    assert result.targets == ("over vs others", "is vs others") and result.contrasts == ("others", "others")
    result.save(tmp_path / "c.npz")
    loaded = Attribution.load(tmp_path / "c.npz")
    assert loaded.contrasts == result.contrasts and loaded.targets == result.targets
    np.testing.assert_array_equal(loaded.matrix, result.matrix)
    assert result.to_dict()["contrasts"] == ["others", "others"]
    frame = result.to_pandas()
    assert list(frame.columns) == list(result.targets) and frame.columns.name == "target vs contrast"
    # A contrast among a mapping's targets is named by its label; another one by itself.
    targets = {"over": " over the", "is": " is"}
    named = gpt2.attribute(PROMPT, targets=targets, method="occlusion", contrast=[" is", " the"])
    assert named.targets == ("over vs is", "is vs  the") and named.contrasts == ("is", " the")


def test_attribution_contrast_on_an_existing_result(gpt2):
    plain = gpt2.attribute(PROMPT, targets=TARGETS, method="occlusion")
    column = plain.contrast(0, "others")
    np.testing.assert_allclose(column.matrix[:, 0], plain.matrix[:, 0] - plain.matrix[:, 1:].mean(1), atol=1e-6)
    assert column.targets == (" over the vs others",) and column.contrasts == ("others",)
    assert column.target_scores[0] == pytest.approx(plain.target_scores[0] - plain.target_scores[1:].mean())
    with pytest.raises(InvalidInputError, match="itself"):
        plain.contrast(" is", 1)
    with pytest.raises(InvalidInputError, match="no column"):
        plain.contrast(" nope", 0)
    with pytest.raises(InvalidInputError, match="contrastive already"):
        column.contrast(0, "others")
    with pytest.raises(MethodNotAvailableError, match="normalize"):
        plain.normalize().contrast(0, 1)


def test_contrast_refuses_what_it_cannot_mean(gpt2):
    with pytest.raises(MethodNotAvailableError, match="linear in the score"):
        gpt2.attribute(PROMPT, targets=TARGETS, method="saliency", contrast="others")
    with pytest.raises(MethodNotAvailableError, match="linear in the score"):
        gpt2.attribute(PROMPT, targets=TARGETS, method=attribfast.IntegratedGradients(aggregation="l2"), contrast=" a")
    with pytest.raises(TargetError, match="explicit targets"):
        gpt2.attribute(PROMPT, method="occlusion", contrast=" is")
    with pytest.raises(TargetError, match="generate or per_token"):
        gpt2.attribute(PROMPT, targets=[" is"], per_token=True, method="occlusion", contrast=" a")
    with pytest.raises(TargetError, match="itself"):
        gpt2.attribute(PROMPT, targets=[" is"], method="occlusion", contrast=" is")
    saliency = gpt2.attribute(PROMPT, targets=TARGETS, method="saliency")
    with pytest.raises(MethodNotAvailableError, match="linear in the score"):
        saliency.contrast(0, 1)


def test_demo_contrast_makes_the_columns_distinct(tmp_path, capsys):
    """Plain demo columns are nearly alike; --contrast ("others") cancels their shared part."""
    import matplotlib

    matplotlib.use("Agg")
    from attribfast.cli import main
    from attribfast.demo import SEED_EXPRESSIONS

    assert main(["demo", "--contrast", "--out", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert "this expression rather than the others" in out and all(e in out for e in SEED_EXPRESSIONS)
    from attribfast.demo import run_demo

    plain = run_demo(out=tmp_path / "p.png")
    contrastive = run_demo(out=tmp_path / "q.png", contrast=True)
    assert contrastive.targets == tuple(f"{e} vs others" for e in SEED_EXPRESSIONS)
    assert plain.targets == SEED_EXPRESSIONS and plain.contrasts is None  # the seed's look is unchanged

    def mean_correlation(matrix):
        c = np.corrcoef(matrix.T)
        return c[~np.eye(len(c), dtype=bool)].mean()

    assert mean_correlation(plain.matrix) > 0.9
    assert mean_correlation(contrastive.matrix) < 0.3
    np.testing.assert_allclose(contrastive.matrix.sum(1), 0, atol=1e-5)  # "others" cancels the row's shared part
    expected = plain.matrix - (plain.matrix.sum(1, keepdims=True) - plain.matrix) / 4
    np.testing.assert_allclose(contrastive.matrix, expected, atol=1e-5)


def test_explain_command_takes_contrast(bundles, capsys):
    from attribfast.cli import main

    common = ["explain", str(bundles["gpt2"]), "--text", PROMPT, "--target", " is", "--target", " jumps", "--quiet"]
    assert main([*common, "--contrast", "others"]) == 0
    assert " is vs others" in capsys.readouterr().out
    assert main([*common, "--contrast", " the", "--contrast", " is"]) == 0
    out = capsys.readouterr().out
    assert " is vs  the" in out and " jumps vs  is" in out


def test_adaptive_integrated_gradients_contrast_reports_the_larger_step_count(gpt2):
    method = attribfast.IntegratedGradients(n_steps=4, tolerance=1e-3, max_steps=64)
    plain = gpt2.attribute(PROMPT, targets=TARGETS, method=method)
    contrastive = gpt2.attribute(PROMPT, targets=TARGETS[:2], method=method, contrast=" jumps")
    np.testing.assert_array_equal(contrastive.steps, np.maximum(plain.steps[:2], plain.steps[2]))
    np.testing.assert_allclose(contrastive.deltas, plain.deltas[:2] - plain.deltas[2], atol=1e-6)
    np.testing.assert_allclose(contrastive.matrix, plain.matrix[:, :2] - plain.matrix[:, 2:], atol=1e-5)
