"""The public API under hypothesis: arbitrary texts, targets, token ids, call arguments and method
parameters. Every outcome is a finite Attribution or an AttribfastError (fuzz_support.outcome).

The sample is derandomized and bounded (about a minute in all). Method parameters and raw token
ids are the cases that reach the compiled core; they run in a subprocess (fuzz_native.py), so that
a crash fails one test with the case that caused it instead of killing the suite.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import attribfast
import numpy as np
import pytest
from fuzz_support import ANY_CHAR, CHEAP, arith_texts, assert_varied, budget, fuzz, numbers, outcome, texts
from hypothesis import given
from hypothesis import strategies as st
from onnx_models import linear_score_model

HERE = os.path.dirname(os.path.abspath(__file__))


def test_any_text(arith, tmp_path):
    seen = collections.Counter()

    @fuzz(500)
    @given(
        inputs=st.one_of(texts, arith_texts, st.lists(st.one_of(texts, arith_texts), min_size=1, max_size=3)),
        method=st.sampled_from(CHEAP),
        truncate=st.sampled_from([None, None, "left", "right"]),
    )
    def run(inputs, method, truncate):
        call = lambda: arith.attribute(inputs, targets=["1", "2+3"], method=method, truncate=truncate)  # noqa: E731
        seen[outcome(call, tmp_path)] += 1

    run()
    assert_varied(seen, "InputTooLongError", "InvalidInputError")


short_targets = st.one_of(st.text(ANY_CHAR, max_size=8), arith_texts.map(lambda t: t[:6]))
continuations = st.one_of(
    st.none(),
    short_targets,
    st.lists(short_targets, max_size=5),
    st.lists(short_targets, min_size=1, max_size=4).map(lambda items: items * 3),  # duplicated
    st.lists(st.sampled_from(["1", "2", "+3", "=4", "5"]), min_size=100, max_size=300),  # hundreds
    st.dictionaries(st.one_of(st.text(ANY_CHAR, max_size=4), st.integers()), short_targets, max_size=4),
    st.lists(st.one_of(st.integers(), st.none(), st.binary(max_size=3), st.floats()), min_size=1, max_size=3),
)


def test_any_continuation_targets(arith, tmp_path):
    seen = collections.Counter()

    @fuzz(200)
    @given(
        text=arith_texts,
        targets=continuations,
        method=st.sampled_from([CHEAP[0], CHEAP[3], CHEAP[5], CHEAP[6]]),
        generate=st.sampled_from([None, None, None, 1, 3]),
    )
    def run(text, targets, method, generate):
        call = lambda: arith.attribute(text, targets=targets, method=method, generate=generate)  # noqa: E731
        seen[outcome(call, tmp_path)] += 1

    run()
    assert_varied(seen, "TargetError")


def class_targets(labels):
    """Class or column targets: names, unknown names, ids in and out of range, hundreds, mappings."""
    item = st.one_of(
        st.sampled_from(labels),
        st.text(ANY_CHAR, max_size=6),
        st.integers(-3, len(labels) + 2),
        st.sampled_from([2**63, -(2**70)]),
    )
    return st.one_of(
        st.none(),
        item,
        st.lists(item, max_size=4),
        st.lists(st.sampled_from(labels), min_size=150, max_size=300),  # hundreds, duplicated
        st.dictionaries(st.text(ANY_CHAR, max_size=3), item, max_size=3),
        st.lists(st.one_of(st.none(), st.floats(), st.booleans()), min_size=1, max_size=2),
    )


def test_any_class_targets(bundles, tmp_path):
    bert = attribfast.load(bundles["bert"])
    seen = collections.Counter()

    @fuzz(150)
    @given(
        text=st.one_of(st.text(ANY_CHAR, max_size=20), st.sampled_from(["hello world", "the quick fox"])),
        targets=class_targets(list(bert.labels)),
        method=st.sampled_from([CHEAP[0], CHEAP[5], CHEAP[7]]),
    )
    def run(text, targets, method):
        seen[outcome(lambda: bert.attribute(text, targets=targets, method=method), tmp_path)] += 1

    run()
    assert_varied(seen, "TargetError", "InvalidInputError")


def test_any_score_column_targets(tmp_path):
    # An own ONNX model (from_onnx): 6 named score columns, token ids only (no tokenizer).
    table = np.random.default_rng(0).standard_normal((20, 6)).astype(np.float32)
    (tmp_path / "linear.onnx").write_bytes(linear_score_model(table))
    model = attribfast.AttributionModel.from_onnx(tmp_path / "linear.onnx", labels=list("abcdef"))
    seen = collections.Counter()

    @fuzz(200)
    @given(
        ids=st.lists(st.integers(0, 19), min_size=1, max_size=12),
        targets=class_targets(list("abcdef")),
        method=st.sampled_from(CHEAP[:5]),
    )
    def run(ids, targets, method):
        seen[outcome(lambda: model.attribute(ids, targets=targets, method=method), tmp_path)] += 1

    run()
    assert_varied(seen, "TargetError")


arguments = st.fixed_dictionaries(
    {},
    optional={
        "batch_size": st.one_of(numbers, st.none()),
        "seed": st.one_of(numbers, st.none()),
        "generate": st.one_of(numbers, st.none()),
        "truncate": st.one_of(st.text(max_size=5), st.sampled_from(["left", "right"]), numbers),
        "method": st.one_of(st.sampled_from(list(attribfast.METHODS)), st.text(max_size=12), numbers),
        "progress": st.one_of(st.booleans(), numbers, st.text(max_size=3)),
    },
)


def test_any_call_arguments(arith, tmp_path):
    seen = collections.Counter()

    @fuzz(400)
    @given(text=st.one_of(arith_texts, texts), targets=st.sampled_from([None, ["1"], ["1", "22"]]), kwargs=arguments)
    def run(text, targets, kwargs):
        if kwargs.get("progress") is True or kwargs.get("method") in ("shapley_sampling", "integrated_gradients"):
            kwargs["progress"] = budget(5_000)  # no bar on the terminal; the budget bounds the default configs
        seen[outcome(lambda: arith.attribute(text, targets=targets, **kwargs), tmp_path)] += 1

    run()
    assert_varied(seen, "InvalidInputError", "MethodNotAvailableError")


def test_results_of_configs_with_numpy_numbers_save_and_load(arith, tmp_path):
    # Found by the fuzz: KernelShap(seed=np.int64(0)) gave a result whose save() raised json's TypeError.
    method = attribfast.KernelShap(n_samples=np.int64(20), seed=np.uint64(3))
    result = arith.attribute("12+3=", targets=["4"], method=method)
    assert result.parameters["seed"] == 3 and type(result.parameters["seed"]) is int
    json.dumps(result.to_dict())
    result.save(tmp_path / "result.npz")
    assert attribfast.Attribution.load(tmp_path / "result.npz").parameters == result.parameters


@pytest.mark.parametrize("part", ["methods", "ids"])
def test_native_fuzz_in_a_subprocess(tmp_path, part):
    log = tmp_path / "cases.log"
    run = subprocess.run(
        [sys.executable, os.path.join(HERE, "fuzz_native.py"), part, str(log), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    last = log.read_text().splitlines()[-1:] if log.exists() else []
    assert run.returncode == 0, f"exit {run.returncode}; last case: {last}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    # The subprocess checked that it saw results and typed errors; here, that it said so.
    assert "outcomes:" in run.stdout and "result=" in run.stdout, run.stdout
