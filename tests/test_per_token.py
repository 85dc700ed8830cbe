"""per_token=True on causal LMs: one column per continuation token, log p(token | text, tokens before)."""

from __future__ import annotations

import attribfast
import numpy as np
import pytest
import torch
from attribfast.errors import TargetError
from captum.attr import Occlusion as CaptumOcclusion
from reference import continuation_logprob
from tolerances import float32_tolerance

PROMPT = "the quick brown fox"
CONTINUATIONS = [" jumps over the", " is"]


@pytest.fixture(scope="module")
def gpt2(bundles):
    return attribfast.load(bundles["gpt2"])


def test_token_columns_equal_captum_and_sum_to_the_whole_continuation(gpt2, torch_models):
    per = gpt2.attribute(PROMPT, targets=CONTINUATIONS, per_token=True, method="occlusion")
    whole = gpt2.attribute(PROMPT, targets=CONTINUATIONS, method="occlusion")
    tokenizer = gpt2._spec.tokenizer
    pieces = [tokenizer.encode(c, add_special_tokens=False).ids for c in CONTINUATIONS]
    assert per.matrix.shape == (whole.matrix.shape[0], sum(len(p) for p in pieces))
    assert per.targets[: len(pieces[0])] == tuple(tokenizer.decode([t]) for t in pieces[0])
    first = len(pieces[0])
    # A whole continuation's score sums its tokens' log-probabilities (tests/tolerances.py).
    tolerance = float32_tolerance(whole.target_scores, 1e-5, roundings=max(map(len, pieces)))
    np.testing.assert_allclose(per.matrix[:, :first].sum(1), whole.matrix[:, 0], atol=tolerance, rtol=0)
    np.testing.assert_allclose(per.matrix[:, first:].sum(1), whole.matrix[:, 1], atol=tolerance, rtol=0)
    ids = torch.tensor([tokenizer.encode(PROMPT).ids])
    baseline = gpt2._baseline_id(None)
    for j in range(first):
        # Token j's own log-probability (not a difference of running sums, which rounds at their size).
        token = continuation_logprob(torch_models["gpt2"], pieces[0], only=j)
        expected = CaptumOcclusion(token).attribute(ids, sliding_window_shapes=(1,), baselines=baseline)[0]
        np.testing.assert_allclose(per.matrix[:, j], expected.numpy(), atol=1e-5, rtol=0)


def test_token_columns_of_integrated_gradients_add_up(gpt2):
    method = attribfast.IntegratedGradients(n_steps=8, tolerance=None)  # one step count for every column
    per = gpt2.attribute(PROMPT, targets=CONTINUATIONS[:1], per_token=True, method=method)
    whole = gpt2.attribute(PROMPT, targets=CONTINUATIONS[:1], method=method)
    np.testing.assert_allclose(per.matrix.sum(1), whole.matrix[:, 0], atol=1e-5)


def test_per_token_is_refused_where_it_has_no_meaning(gpt2, bundles):
    with pytest.raises(TargetError, match="per_token applies"):
        attribfast.load(bundles["bert"]).attribute("hello world", targets=[0], per_token=True)
    with pytest.raises(TargetError, match="labelled by their tokens"):
        gpt2.attribute(PROMPT, targets={"a": " is"}, per_token=True)
