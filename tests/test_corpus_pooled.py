"""Pooled corpus sweeps (issue 12): the variants of many texts run in shared batches by one core call,
and every text's result equals its own attribute() call (1e-6)."""

import attribfast
import numpy as np
import pytest
from attribfast.corpus import attribute_corpus, pooled, sweep
from attribfast.errors import NonFiniteScoreError
from test_corpus import PER_TEXT, TEXTS, assert_rows_match, one_by_one

BERT_TEXTS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog and a small model says hello",
    "",
    "a fox",
    "attribution tells which tokens matter for a prediction",
]
SEEDED = [
    attribfast.Occlusion(window=2),
    attribfast.FeatureAblation(groups="word"),
    attribfast.ShapleySampling(n_permutations=3, seed=5),
    attribfast.KernelShap(n_samples=24, seed=2),
    attribfast.Lime(n_samples=24, seed=3),
]


@pytest.fixture
def core_calls(monkeypatch):
    """The number of texts of each pooled core call."""
    calls = []
    run = pooled._run

    def spy(method, engine, problems, *args):
        calls.append(len(problems))
        return run(method, engine, problems, *args)

    monkeypatch.setattr(pooled, "_run", spy)
    return calls


@pytest.mark.parametrize("method", SEEDED, ids=lambda m: m.name)
def test_pooled_classifier_sweep_equals_one_by_one_with_per_text_targets(bert, method, core_calls):
    labels = bert.labels
    # Different target counts give different score-column layouts: those texts batch apart.
    targets = [[labels[0]], None, [labels[1]], [labels[1], labels[0]], None]
    frame = attribute_corpus(bert, BERT_TEXTS, targets, method=method)
    assert core_calls == [len(BERT_TEXTS) - 1], "one core sweep for every valid text"
    expected = one_by_one(bert, BERT_TEXTS, targets, method)
    assert isinstance(expected[2], attribfast.errors.InvalidInputError)
    assert_rows_match(frame, expected)


@pytest.mark.parametrize("method", SEEDED[1:], ids=lambda m: m.name)
def test_pooled_causal_lm_sweep_equals_one_by_one_with_bad_rows(arith, method, core_calls):
    frame = attribute_corpus(arith, TEXTS, PER_TEXT, method=method)
    assert core_calls == [len(TEXTS) - 2]
    assert_rows_match(frame, one_by_one(arith, TEXTS, PER_TEXT, method))


def test_pooled_rows_run_without_prefix_reuse(bundles, core_calls):
    gpt2 = attribfast.load(bundles["gpt2"])
    texts = ["the quick brown fox jumps over", "hello world", "a small model trained on a tiny corpus"]
    targets = [[" the", " lazy"], [" says"], None]
    frame = attribute_corpus(gpt2, texts, targets, method=attribfast.Occlusion())
    # The text with two continuations runs packed (packed_score.onnx), in a core call of its own.
    assert sorted(core_calls) == [1, 2]
    full = [gpt2.attribute(t, targets=w, reuse_prefix=False) for t, w in zip(texts, targets, strict=True)]
    assert_rows_match(frame, full)
    # Prefix reuse gives the same scores up to float rounding.
    for (_, row), text, want in zip(frame.iterrows(), texts, targets, strict=True):
        reused = gpt2.attribute(text, targets=want)
        np.testing.assert_allclose(np.asarray(list(row["matrix"]), np.float32), reused.matrix, atol=1e-4)


def test_pooled_packed_rows_equal_unpacked_per_text_results(bundles, core_calls):
    """Packed rows of texts with different prompt lengths share right-padded batches where their
    packed suffixes have one width; another width batches apart, in the same core call."""
    gpt2 = attribfast.load(bundles["gpt2"])
    texts = ["the quick brown fox jumps over", "hello world", "a small model"]
    targets = [[" the dog", " a cat"], [" is here", " is it"], [" and a long tail", " x"]]
    frame = attribute_corpus(gpt2, texts, targets, method=attribfast.Occlusion())
    assert core_calls == [3]
    rows = [
        gpt2.attribute(t, targets=w, reuse_prefix=False, pack_targets=False)
        for t, w in zip(texts, targets, strict=True)
    ]
    for (_, row), want in zip(frame.iterrows(), rows, strict=True):
        np.testing.assert_allclose(np.asarray(list(row["matrix"]), np.float32), want.matrix, atol=1e-5, rtol=0)


def test_pooled_similarity_sweep_equals_one_by_one(minilm_bundle, core_calls):
    model = attribfast.load(minilm_bundle)
    texts = ["A fox jumps over a dog.", "Hello world programs are simple and short.", "Weather"]
    targets = [["The weather is nice today."], None, ["Attribution explains predictions.", "Hello"]]
    frame = attribute_corpus(model, texts, targets)
    assert core_calls == [2], "similarity needs references: the text without targets is a bad row"
    expected = one_by_one(model, texts, targets, "occlusion")
    assert isinstance(expected[1], attribfast.errors.TargetError)
    assert_rows_match(frame, expected)


def test_chunks_report_progress_in_texts_and_each_run_one_core_sweep(arith, core_calls, monkeypatch):
    monkeypatch.setattr(sweep, "POOL_CHUNK", 3)
    texts = [f"{i}+{i}=" for i in range(7)]
    steps = []
    records = list(sweep.attribute_records(arith, texts, [["1"]] * 7, "occlusion", progress=steps.append))
    assert core_calls == [3, 3, 1]
    assert sum(steps) == 7 and all(s > 0 for s in steps)
    assert [r["error"] for r in records] == [""] * 7


def test_a_failed_core_sweep_reruns_its_chunk_text_by_text(arith, monkeypatch):
    def fail(*args):
        raise NonFiniteScoreError("the model returned a non-finite score")

    monkeypatch.setattr(pooled, "_run", fail)
    frame = attribute_corpus(arith, TEXTS, PER_TEXT)
    assert_rows_match(frame, one_by_one(arith, TEXTS, PER_TEXT, "occlusion"))


def test_methods_that_cannot_pool_run_text_by_text(arith, core_calls):
    budgeted = attribfast.ShapleySampling(n_permutations=4, seed=1, max_evaluations=10)
    frame = attribute_corpus(arith, TEXTS[:2], PER_TEXT[:2], method=budgeted)
    assert core_calls == []
    assert_rows_match(frame, one_by_one(arith, TEXTS[:2], PER_TEXT[:2], budgeted))
