"""Hierarchical (coarse-to-fine) attribution: the pure selection and spreading by hand, exact values on
a linear ONNX model, keep=every span equal to the plain inner method at the finest level (Shapley on
a non-additive model, occlusion on the tiny GPT-2 with prefix reuse), and the recorded level costs."""

from __future__ import annotations

import attribfast
import numpy as np
import pytest
from attribfast import Attribution, Hierarchical
from attribfast.cli import _method_from_args
from attribfast.errors import InvalidInputError
from attribfast.methods.hierarchical import kept_spans, nested_groups, spread
from onnx_models import interaction_score_model, linear_score_model
from tokenizers import Tokenizer, models, pre_tokenizers

VOCAB = {"[PAD]": 0, "Smith": 1, "ran": 2, "sat": 3, ".": 4, "Go": 5, "Dr": 6, "He": 7}
# Column 0 adds per token: Dr 7, Smith 1, ran 2, He 3, sat 3, "." 0, Go -8; the pad baseline adds 0.
TABLE = np.array([[0, 1], [1, 0], [2, 0], [3, 1], [0, 0], [-8, 0], [7, 0], [3, 0]], np.float32)
# Sentences: "Dr. Smith ran." (7 + 0 + 1 + 2 + 0 = 10, five tokens), "He sat sat." (9, four), "Go" (-8).
TEXT = "Dr. Smith ran.\nHe sat sat. Go"


def model_of(tmp_path, graph: bytes):
    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[PAD]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "model.onnx"
    path.write_bytes(graph)
    return attribfast.AttributionModel.from_onnx(path, tokenizer=tok, pad_id=0)


def test_kept_spans_by_hand():
    scores = np.array([1.0, 5.0, 0.0, 5.0, 3.0])
    assert kept_spans(scores, 1).tolist() == [1]  # a tie goes to the earlier span
    assert kept_spans(scores, 3).tolist() == [1, 3, 4]
    assert kept_spans(scores, 9).tolist() == [0, 1, 2, 3, 4]
    # Total 14: 5 < 7 <= 5 + 5.
    assert kept_spans(scores, 0.5).tolist() == [1, 3]
    assert kept_spans(scores, 0.72).tolist() == [1, 3, 4]  # 10 < 10.08 <= 13
    assert kept_spans(scores, 1.0).tolist() == [0, 1, 3, 4]  # the span of size 0 adds nothing
    assert kept_spans(np.zeros(3), 0.5).tolist() == []


def test_nested_groups_and_spread_by_hand():
    parents = np.array([0, 0, 0, 1, 1, 2])
    words = np.array([0, 0, 1, 1, 2, 3])  # word 1 crosses the span boundary: split by the parents
    active = np.array([True, True, True, True, True, False])
    groups = nested_groups(parents, words, active)
    assert groups.tolist() == [0, 0, 1, 2, 3, -1]
    values = np.array([[4.0], [4.0], [1.0], [2.0], [6.0], [9.0]])
    assert spread(values, groups)[:, 0].tolist() == [2.0, 2.0, 1.0, 2.0, 6.0, 0.0]


@pytest.mark.parametrize("inner", ["occlusion", attribfast.ShapleySampling(n_permutations=4, seed=1)])
def test_values_and_costs_by_hand(tmp_path, inner):
    model = model_of(tmp_path, linear_score_model(TABLE))
    # keep=1: |10| is the largest sentence, refined per token; the others spread evenly (9 / 4, -8 / 1).
    result = model.attribute(TEXT, targets=[0], method=Hierarchical(keep=1, inner=inner))
    np.testing.assert_allclose(result.matrix[:, 0], [7, 0, 1, 2, 0, 2.25, 2.25, 2.25, 2.25, -8], atol=1e-5)
    # keep=0.5: half of 27 needs the two largest sentences.
    half = model.attribute(TEXT, targets=[0], method=Hierarchical(keep=0.5, inner=inner))
    np.testing.assert_allclose(half.matrix[:, 0], [7, 0, 1, 2, 0, 3, 3, 3, 0, -8], atol=1e-5)
    # The rows of each sentence sum to its coarse value.
    np.testing.assert_allclose(half.aggregate("sentence").matrix[:, 0], [10, 9, -8], atol=1e-5)
    levels = result.parameters["hierarchy"]
    assert [entry["level"] for entry in levels] == ["sentence", "token"]
    assert [entry["groups"] for entry in levels] == [3, 5]
    assert levels[0]["kept"] == 1 and "kept" not in levels[1]
    assert result.evaluations == sum(entry["rows"] for entry in levels)
    assert result.token_positions == sum(entry["token_positions"] for entry in levels)
    if inner == "occlusion":
        # Each level: the clean row and one row per group (the same coalitions' rows run once).
        assert [entry["rows"] for entry in levels] == [1 + 3, 1 + 5]
        assert result.standard_errors is None
    else:
        assert result.standard_errors is not None and result.standard_errors.max() < 1e-4  # additive: exact
    assert half.parameters["hierarchy"][0]["kept"] == 2


def test_keep_every_span_equals_plain_shapley_on_a_non_additive_model(tmp_path):
    model = model_of(tmp_path, interaction_score_model(TABLE, 0.5))
    inner = attribfast.ShapleySampling(n_permutations=6, seed=3)
    hierarchical = model.attribute(TEXT, targets=[0, 1], method=Hierarchical(keep=3, inner=inner))
    plain = model.attribute(TEXT, targets=[0, 1], method=inner)
    np.testing.assert_allclose(hierarchical.matrix, plain.matrix, atol=1e-5, rtol=0)
    np.testing.assert_allclose(hierarchical.standard_errors, plain.standard_errors, atol=1e-5, rtol=0)
    # keep=1.0 keeps every sentence of nonzero value: here all of them.
    fraction = model.attribute(TEXT, targets=[0, 1], method=Hierarchical(keep=1.0, inner=inner))
    np.testing.assert_allclose(fraction.matrix, plain.matrix, atol=1e-5, rtol=0)


def test_keep_every_span_equals_occlusion_on_gpt2_and_saves_losslessly(bundles, tmp_path):
    model = attribfast.load(bundles["gpt2"])
    text = "The quick brown fox jumps. It saw the lazy dog!\n\nAttribution tells which tokens matter."
    targets = [" hello world", " the"]
    plain = model.attribute(text, targets, method="occlusion")
    three = Hierarchical(levels=("paragraph", "sentence", "token"), keep=10)
    result = model.attribute(text, targets, method=three)
    np.testing.assert_allclose(result.matrix, plain.matrix, atol=1e-5, rtol=0)
    assert [entry["groups"] for entry in result.parameters["hierarchy"]] == [2, 3, len(result.tokens)]
    pruned = model.attribute(text, targets, method=Hierarchical(keep=1))
    assert pruned.parameters["hierarchy"][0]["kept"] == 1
    assert pruned.evaluations < plain.evaluations + 4
    pruned.save(tmp_path / "r.npz")
    loaded = Attribution.load(tmp_path / "r.npz")
    assert loaded.parameters == pruned.parameters
    assert loaded.parameters["levels"] == ["sentence", "token"] and loaded.parameters["inner"] == "feature_ablation"
    np.testing.assert_array_equal(loaded.matrix, pruned.matrix)


def test_bad_configs_raise_typed_errors(tmp_path):
    for bad in (
        dict(levels=("token",)),
        dict(levels=("token", "sentence")),  # fine to coarse
        dict(levels=("sentence", "line")),  # do not nest
        dict(levels=("sentence", "clause")),
        dict(levels=7),
        dict(keep=0),
        dict(keep=0.0),
        dict(keep=1.5),
        dict(keep=True),
        dict(keep="half"),
        dict(inner="lime"),
        dict(inner=attribfast.Occlusion(window=2)),
        dict(inner=attribfast.FeatureAblation(groups="word")),
        dict(inner=attribfast.ShapleySampling(permutations=((0, 1),))),
        dict(inner=attribfast.Saliency()),
    ):
        with pytest.raises(InvalidInputError):
            Hierarchical(**bad)
    model = model_of(tmp_path, linear_score_model(TABLE))
    with pytest.raises(InvalidInputError, match="sentence groups need text"):
        model.attribute([1, 2, 3], targets=[0], method="hierarchical")
    # The CLI's --param values: a comma-separated levels string and numbers.
    method = _method_from_args("hierarchical", ["levels=paragraph,word", "keep=2", "inner=shapley_sampling"])
    assert method.levels == ("paragraph", "word") and method.keep == 2
    assert isinstance(method.inner, attribfast.ShapleySampling)
