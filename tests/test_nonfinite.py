"""A model that returns NaN or infinity for some rows: NonFiniteScoreError, naming the target and the
row (which tokens the variant replaced, or where on the integrated-gradients path it was).

The graphs are built for it (onnx_models.log_score_model, singular_gradient_model), so which rows
are non-finite is derived by hand below.
"""

from __future__ import annotations

import attribfast
import numpy as np
import pytest
from attribfast import _core
from attribfast.errors import NonFiniteScoreError
from onnx_models import log_score_model, singular_gradient_model

# log_score_model: score t = log(sum of table[id, t] over the tokens). Column 0 stays positive for
# every variant; column 1 is negative exactly when token 1 (id 1) is replaced by the pad (id 0):
# clean 1 + 3 + 1 = 5; pad at 0: -3 + 3 + 1 = 1; pad at 1: 1 - 3 + 1 = -1 (NaN); pad at 2: 1.
TABLE = np.array([[0.0, -3.0], [1.0, 1.0], [1.0, 3.0], [2.0, 2.0]], np.float32)
IDS = [1, 2, 1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("nonfinite") / "log.onnx"
    path.write_bytes(log_score_model(TABLE))
    return attribfast.AttributionModel.from_onnx(path, pad_id=0)


def test_a_finite_model_is_attributed_as_usual(model):
    # Column 0 alone never leaves the log's domain: log 3 against log 2 for each replaced token.
    result = model.attribute(IDS, targets=[0], method="occlusion")
    np.testing.assert_allclose(result.matrix[:, 0], np.log(3) - np.log(2), atol=1e-6, rtol=0)


def test_occlusion_names_the_target_and_the_replaced_token(model):
    expected = r"non-finite score \(nan\) for target 1 on the input with token 1 replaced$"
    with pytest.raises(NonFiniteScoreError, match=expected):
        model.attribute(IDS, targets=[0, 1], method="occlusion")


def test_the_target_is_numbered_as_the_caller_ordered_it(model):
    # Column 1 asked for first is target 0 of the call.
    with pytest.raises(NonFiniteScoreError, match=r"for target 0 on the input with token 1 replaced$"):
        model.attribute(IDS, targets=[1, 0], method="occlusion")


def test_a_group_of_tokens_is_named_as_a_range(model):
    # Tokens 0 and 1 replaced together: -3 - 3 + 1 < 0; then token 2 alone: 1 + 3 - 3 > 0.
    with pytest.raises(NonFiniteScoreError, match=r"for target 0 on the input with tokens 0 to 1 replaced$"):
        model.attribute(IDS, targets=[1], method=attribfast.FeatureAblation(groups=(0, 0, 1)))


def test_a_scattered_set_is_named_up_to_eight_runs(model):
    # Every other token of 20 replaced: 10 x -3 + 10 x 1 < 0 in column 1.
    groups = tuple(0 if p % 2 == 0 else -1 for p in range(20))
    with pytest.raises(NonFiniteScoreError, match=r"with tokens 0, 2, 4, 6, 8, 10, 12, 14, \.\.\. replaced$"):
        model.attribute([1] * 20, targets=[1], method=attribfast.FeatureAblation(groups=groups))


def test_minus_infinity_and_the_unperturbed_input(model):
    # Column 0 of ids (0, 0) sums to 0 on the input itself: log 0 = -inf. (Replacing a pad by the pad
    # gives the input again, so the input is the only row.)
    with pytest.raises(NonFiniteScoreError, match=r"non-finite score \(-inf\) for target 0 on the unperturbed input$"):
        model.attribute([0, 0], targets=[0], method="occlusion")


@pytest.mark.parametrize(
    "method",
    [attribfast.ShapleySampling(n_permutations=3, seed=0), attribfast.KernelShap(n_samples=30), attribfast.Lime()],
    ids=lambda m: m.name,
)
def test_sampling_methods_name_a_replaced_token_set(model, method):
    with pytest.raises(NonFiniteScoreError, match=r"for target 0 on the input with tokens? [0-9, to]+ replaced$"):
        model.attribute(IDS, targets=[1], method=method)


def gradient_run(log_score: bool, method: str, n_steps: int, kind: str = "integrated_gradients"):
    """Runs the core on singular_gradient_model, embeddings e(0) = (-1, -1) (the baseline),
    e(1) = (1, 1), e(2) = (2, 0), input ids (1, 2): the row sum S goes from -4 at the baseline to 4
    at the input, S = -4 + 8 alpha, so it is 0 at alpha 1/2 only."""
    session = attribfast.Session(singular_gradient_model(log_score))._session
    problem = _core.GradientProblem()
    problem.ids = [1, 2]
    problem.suffixes = [[], []]  # two targets, the same score
    embeddings = np.array([[-1, -1], [1, 1], [2, 0]], np.float32)
    baseline = np.repeat(embeddings[:1], 2, axis=0)
    policy = _core.BatchPolicy()
    if kind == "integrated_gradients":
        return _core.integrated_gradients(
            session, problem, embeddings, baseline, method, n_steps, 0.0, 0.0, n_steps, "sum", policy, None
        )
    return _core.gradient_at_input(session, problem, embeddings, kind, "sum", policy, None)


def test_integrated_gradients_away_from_the_singular_point_is_finite():
    # Captum's left Riemann rule with 3 steps: alphas 0, 1/3, 2/3, never 1/2. Each element's
    # gradient is 2 / S, weighted 1/3: sum over alphas of 2 / (-4 + 8 a) / 3, times (x - b) summed.
    result = gradient_run(False, "riemann_left", 3)
    inverse_sum = sum(2 / (-4 + 8 * a) for a in (0, 1 / 3, 2 / 3)) / 3
    np.testing.assert_allclose(result.matrix[:, 0], [4 * inverse_sum, 4 * inverse_sum], rtol=1e-6)


def test_a_non_finite_gradient_names_token_dimension_target_and_alpha():
    # riemann_left with 2 steps evaluates alpha 0 and 1/2: the gradient 2 / 0 is +inf at alpha 1/2.
    with pytest.raises(
        NonFiniteScoreError,
        match=r"non-finite gradient \(inf\) at token 0, dimension 0, for target 0 at alpha 0.5 on the path from "
        r"the baseline to the input$",
    ):
        gradient_run(False, "riemann_left", 2)


def test_a_non_finite_score_names_target_and_alpha():
    # log(S^2) = -inf at alpha 1/2 (the score is checked before the gradient).
    with pytest.raises(NonFiniteScoreError, match=r"non-finite score \(-inf\) for target 0 at alpha 0.5 on the path"):
        gradient_run(True, "riemann_left", 2)


def test_saliency_on_a_non_finite_point_names_the_input():
    # At the input S = 4: finite. Moving the input to S = 0 (ids (1, 0): 2 + -2) makes it singular.
    session = attribfast.Session(singular_gradient_model(True))._session
    problem = _core.GradientProblem()
    problem.ids = [1, 0]
    problem.suffixes = [[]]
    embeddings = np.array([[-1, -1], [1, 1]], np.float32)
    with pytest.raises(NonFiniteScoreError, match=r"non-finite score \(-inf\) for target 0 at the input$"):
        _core.gradient_at_input(session, problem, embeddings, "saliency", "sum", _core.BatchPolicy(), None)
