"""Pooled corpus sweeps of gradient methods (issue 12): every round of every text's method runs in
shared batches of one core call per gradient graph, and each text's result equals its own attribute()
call within 1e-5 absolute (test_corpus.ROW_TOLERANCE) or 1e-6 relative (test_corpus.GRADIENT_RTOL).
Gradient attributions of the arithmetic model reach ~200, where one float32 step is 1.5e-5; a row
padded into a longer batch sums its attention over a longer (zero-weighted) span, which moves the
result by such steps. On CUDA the relative bound is 1e-5 (as for batch-size independence there):
cuBLAS picks its GEMM kernel, and with it the order of the sums, by the batch's shape (an H200 gave
1.7e-6 relative)."""

import attribfast
import pytest
from attribfast import _core
from attribfast.corpus import attribute_corpus, pooled
from test_corpus import GRADIENT_RTOL, PER_TEXT, TEXTS, assert_rows_match, one_by_one
from test_corpus_pooled import BERT_TEXTS

GRADIENT = [
    attribfast.IntegratedGradients(n_steps=8, tolerance=None),
    # Adaptive: rounds of 8, 16, 32 steps, the texts that need a round running it together.
    attribfast.IntegratedGradients(n_steps=8, tolerance=1e-3, max_steps=32),
    attribfast.Saliency(),
    attribfast.InputXGradient(aggregation="l2"),
    attribfast.NoiseTunnel(method="saliency", nt_samples=3, stdevs=0.05, seed=4),
    attribfast.NoiseTunnel(method=attribfast.IntegratedGradients(n_steps=4), nt_type="vargrad", nt_samples=2,
                           stdevs=0.02, seed=1),
    attribfast.GradientShap(n_samples=4, stdevs=0.01, seed=9),
]
RTOL = GRADIENT_RTOL  # 1e-6, or 1e-5 on CUDA
CORE_CALLS = ("pooled_integrated_gradients", "pooled_gradient_at_input", "pooled_sampled_gradients")


@pytest.fixture
def gradient_calls(monkeypatch):
    """The number of texts of each pooled gradient core call."""
    calls = []

    def counted(run):
        def spy(session, problems, *args, **kwargs):
            calls.append(len(problems))
            return run(session, problems, *args, **kwargs)

        return spy

    for name in CORE_CALLS:
        monkeypatch.setattr(_core, name, counted(getattr(_core, name)))
    return calls


def method_id(method):
    return f"{method.name}-{getattr(method, 'tolerance', '')}-{getattr(method, 'nt_type', '')}"


@pytest.mark.parametrize("method", GRADIENT, ids=method_id)
def test_pooled_classifier_gradients_equal_one_by_one(bert, method, gradient_calls):
    labels = bert.labels
    targets = [[labels[0]], None, [labels[1]], [labels[1], labels[0]], None]
    frame = attribute_corpus(bert, BERT_TEXTS, targets, method=method)
    # One call per gradient graph: the text with two targets runs on the shared graph.
    assert sum(gradient_calls[:2]) == len(BERT_TEXTS) - 1 and max(gradient_calls) == 3
    assert_rows_match(frame, one_by_one(bert, BERT_TEXTS, targets, method), rtol=RTOL)


@pytest.mark.filterwarnings("ignore::attribfast.errors.ConvergenceWarning")
@pytest.mark.parametrize("method", GRADIENT, ids=method_id)
def test_pooled_causal_lm_gradients_equal_one_by_one_with_bad_rows(arith, method, gradient_calls):
    frame = attribute_corpus(arith, TEXTS, PER_TEXT, method=method)
    assert sum(gradient_calls[:2]) == len(TEXTS) - 2 and max(gradient_calls) >= 3
    assert_rows_match(frame, one_by_one(arith, TEXTS, PER_TEXT, method), rtol=RTOL)


def test_adaptive_rounds_pool_the_texts_that_need_them(bundles, gradient_calls):
    """GPT-2 with per-text targets: the text with one continuation runs all its rounds on the
    per-target graph (one call); the two with two continuations take their first round together on
    the shared graph, then their unconverged targets' later rounds together on the per-target graph."""
    gpt2 = attribfast.load(bundles["gpt2"])
    texts = ["the quick brown fox jumps over", "hello world", "a small model trained on a tiny corpus"]
    targets = [[" the dog", " a cat"], [" says"], [" and a long tail", " x"]]
    method = attribfast.IntegratedGradients(n_steps=2, tolerance=1e-9, absolute_tolerance=0.0, max_steps=8)
    with pytest.warns(attribfast.errors.ConvergenceWarning):
        frame = attribute_corpus(gpt2, texts, targets, method=method)
    assert gradient_calls == [1, 2, 2]
    with pytest.warns(attribfast.errors.ConvergenceWarning):
        expected = one_by_one(gpt2, texts, targets, method)
    assert_rows_match(frame, expected, rtol=RTOL)
    assert all(max(want.steps) == 8 for want in expected), "later rounds ran (2 -> 4 -> 8 steps)"


def test_pooled_gradient_batches_mix_texts(bert):
    """Saliency's one row per target: 4 texts' rows in one shared batch where alone they take 4."""
    engine = bert._engine
    items = []
    for text in BERT_TEXTS[:2] + BERT_TEXTS[3:]:
        encoded = bert._encode(text, None)
        items.append((encoded, bert._plan_targets(encoded, [bert.labels[0]], None, False)))
    policy = bert._policy(attribfast.Saliency(), 0, False)
    seen = []
    results = attribfast.Saliency().run_pooled(engine, items, policy, lambda done, total: seen.append(done), 0)
    assert seen == [4] and [r.rows_run for r in results] == [1, 1, 1, 1]


def test_long_texts_split_a_chunk_into_calls_that_bound_the_state(bert, gradient_calls, monkeypatch):
    """The per-text state of a call (noisy inputs, float64 sums) is bounded: a small bound splits the
    chunk into several calls, with the same results."""
    method = GRADIENT[4]  # NoiseTunnel, 3 samples
    texts = [t for t in BERT_TEXTS if t]
    monkeypatch.setattr(pooled, "GRADIENT_STATE_VALUES", 1)  # below any text's: one call each
    frame = attribute_corpus(bert, texts, [bert.labels[0]], method=method)
    assert gradient_calls == [1] * len(texts)
    assert_rows_match(frame, one_by_one(bert, texts, [[bert.labels[0]]] * len(texts), method), rtol=RTOL)


def test_gradient_methods_pool_in_corpus_sweeps():
    for method in GRADIENT:
        assert pooled.poolable(method, {"seed": 1})
    assert not pooled.poolable(GRADIENT[0], {"contrast": "x"})
