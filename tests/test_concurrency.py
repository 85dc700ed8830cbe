"""The threading contract (docs/reliability.md): one loaded model may serve many threads at once, and
every method, seeded sampling included, gives each thread exactly the single-threaded result.

Exactly means bit for bit: a run's batches, seeds and reductions do not depend on what other
threads do. The threads start together (a barrier) on a model that has created no session yet, so
the lazy session creation races too.
"""

from __future__ import annotations

import threading

import attribfast
import numpy as np
import pytest
from attribfast.demo import shipped_bundle

THREADS = 8
TEXTS = ["12+34=", "-$16,000√-0.8="]
TARGETS = ["46", "\n9 + 3 = 12"]
# Every method; the sampling ones seeded by their config, and one by the call's seed.
JOBS = [
    (attribfast.Occlusion(window=2), None),
    (attribfast.FeatureAblation(), None),
    (attribfast.ShapleySampling(n_permutations=4, seed=11), None),
    (attribfast.ShapleySampling(n_permutations=3), 12345),
    (attribfast.KernelShap(n_samples=40, seed=5), None),
    (attribfast.Lime(n_samples=40, seed=7), None),
    (attribfast.IntegratedGradients(n_steps=12), None),
    (attribfast.Saliency(), None),
    (attribfast.InputXGradient(), None),
]
WORK = [(text, job) for text in TEXTS for job in range(len(JOBS))]


def run(model, text, job):
    method, seed = JOBS[job]
    return model.attribute(text, targets=TARGETS, method=method, seed=seed)


def fields(result):
    return {
        name: getattr(result, name)
        for name in ("matrix", "target_scores", "standard_errors", "deltas", "steps")
        if getattr(result, name) is not None
    }


@pytest.fixture(scope="module")
def reference():
    """Every job's result, computed one after the other on a model of its own."""
    model = attribfast.load(shipped_bundle())
    return {(text, job): fields(run(model, text, job)) for text, job in WORK}


def in_threads(work, prepare=lambda i: None) -> list:
    """Runs work(i, prepare(i)) in THREADS threads, each starting work when all have prepared;
    returns their return values and re-raises the first exception any of them raised."""
    barrier = threading.Barrier(THREADS)
    outcomes: list = [None] * THREADS

    def body(i):
        try:
            prepared = prepare(i)
            barrier.wait()
            outcomes[i] = ("ok", work(i, prepared))
        except BaseException as error:  # handed to the main thread
            outcomes[i] = ("error", error)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    for kind, value in outcomes:
        if kind == "error":
            raise value
    return [value for _, value in outcomes]


def assert_identical(results: dict, reference: dict) -> None:
    for key, got in results.items():
        expected = reference[key]
        assert got.keys() == expected.keys(), key
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{key} {name}")


def test_eight_threads_on_one_model_match_single_threaded_runs(reference):
    model = attribfast.load(shipped_bundle())  # no session yet: creation races as well

    def work(i, _):
        # Each thread runs every job, in its own rotated order, so that different methods overlap.
        order = WORK[i % len(WORK) :] + WORK[: i % len(WORK)]
        return {key: fields(run(model, *key)) for key in order}

    for results in in_threads(work):
        assert_identical(results, reference)


def test_eight_models_in_eight_threads_match_single_threaded_runs(reference):
    def work(i, model):
        order = WORK[i % len(WORK) :] + WORK[: i % len(WORK)]
        return {key: fields(run(model, *key)) for key in order}

    # The loads (and their hash checks) race too; then all runs start together.
    for results in in_threads(work, prepare=lambda i: attribfast.load(shipped_bundle())):
        assert_identical(results, reference)

