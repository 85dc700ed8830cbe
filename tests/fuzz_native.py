"""The part of the public-API fuzz whose values reach the compiled core: method parameters, and raw
token ids. Run by tests/test_fuzz.py in a subprocess, so that a crash is one failed test:

    python tests/fuzz_native.py {methods|ids} CASE_LOG SCRATCH_DIR

Each case is appended to CASE_LOG before it runs (the last line names the case that crashed). On
success it prints the outcome counts; a failing case is printed by hypothesis, and the exit status
is non-zero.
"""

from __future__ import annotations

import collections
import os
import sys
import warnings

import attribfast
import numpy as np
from attribfast.demo import shipped_bundle
from fuzz_support import CHEAP, EDGES, assert_varied, big_ints, budget, fuzz, numbers, outcome, reals, small_ints
from hypothesis import given
from hypothesis import strategies as st
from onnx_models import linear_score_model

TEXTS = ["12+3=", "7", "1234567890+-=", "9 x 5 = 4"]
ROWS = 20_000  # per call; a huge but valid parameter is accepted, runs, and is stopped here

int64s = st.one_of(small_ints, st.integers(-(2**63), 2**63 - 1), st.sampled_from([e for e in EDGES if e < 2**63]))
token_baselines = st.one_of(st.none(), st.sampled_from(["pad", "mask", "unk", "eos"]), st.text(max_size=4), numbers)
# Groups: names, one id per token (any size), or junk such as a scalar.
groups = st.one_of(
    st.sampled_from(["token", "word"]),
    numbers,
    st.none(),
    st.text(max_size=5),
    st.lists(small_ints, max_size=14).map(tuple),
    st.lists(st.one_of(big_ints, numbers), max_size=14).map(tuple),
)
# Explicit permutations: rows of one length with int64 entries, ragged rows, entries of any size.
permutations = st.one_of(
    st.none(),
    numbers,
    st.lists(st.lists(st.one_of(small_ints, big_ints), max_size=5).map(tuple), max_size=3).map(tuple),
    st.integers(0, 14).flatmap(
        lambda width: st.lists(
            st.one_of(st.permutations(list(range(width))), st.lists(int64s, min_size=width, max_size=width)),
            max_size=4,
        ).map(lambda rows: tuple(map(tuple, rows)))
    ),
)
counts = st.one_of(small_ints, numbers)
optional_reals = st.one_of(st.none(), reals, numbers, st.text(max_size=3))  # wrong types too


@st.composite
def embedding_baselines(draw, n_tokens: int, hidden: int):
    """IG baselines: names, junk, and arrays of any shape or dtype (strings and objects too), some
    with NaN or infinity, some float64 values beyond float32's range."""
    kind = draw(st.sampled_from(["name", "junk", "array", "array"]))
    if kind == "name":
        return draw(st.sampled_from(["pad", "mask", "unk", "eos", "zero", None]))
    if kind == "junk":
        return draw(st.one_of(st.text(max_size=4), numbers))
    right = (n_tokens, hidden)
    shape = draw(st.sampled_from([right, right, (n_tokens,), (1, hidden), (n_tokens + 1, hidden)]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.str_, object]))
    if dtype in (np.str_, object):
        return np.full(shape, "0.5", dtype)
    finite = {np.float16: np.finfo(np.float16).max, np.int32: 2**31 - 1, np.float64: 1e300}.get(dtype, 3e38)
    array = np.full(shape, draw(st.floats(-finite, finite)), dtype)
    if np.issubdtype(dtype, np.floating) and draw(st.booleans()):
        array.flat[draw(st.integers(0, array.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return array


def method_configs(n_tokens: int, hidden: int):
    """A method config with any subset of its fields set to arbitrary values (construction may raise)."""
    shared = {"groups": groups, "baseline": token_baselines, "seed": st.one_of(st.none(), numbers)}
    fields = {
        attribfast.Occlusion: {"window": counts, "stride": counts, "baseline": token_baselines},
        attribfast.FeatureAblation: {"groups": groups, "baseline": token_baselines},
        attribfast.ShapleySampling: {
            **shared,
            "n_permutations": counts,
            "max_evaluations": st.one_of(st.none(), counts),
            "max_seconds": optional_reals,
            "permutations": permutations,
        },
        attribfast.KernelShap: {**shared, "n_samples": counts, "ridge": optional_reals},
        attribfast.Lime: {
            **shared,
            "n_samples": counts,
            "ridge": optional_reals,
            "kernel_width": optional_reals,
        },
        attribfast.IntegratedGradients: {
            "n_steps": counts,
            "method": st.one_of(st.sampled_from(attribfast.methods.INTEGRATION_METHODS), st.text(max_size=8)),
            "baseline": embedding_baselines(n_tokens, hidden),
            "tolerance": optional_reals,
            "absolute_tolerance": optional_reals,
            "max_steps": counts,
            "aggregation": st.sampled_from(["sum", "l2", "L2", "", "max"]),
        },
        attribfast.Saliency: {"aggregation": st.sampled_from(["sum", "l2", "mean"])},
        attribfast.InputXGradient: {"aggregation": st.sampled_from(["sum", "l2", "mean"])},
        attribfast.NoiseTunnel: {
            "method": st.one_of(
                st.sampled_from(["saliency", "input_x_gradient", "integrated_gradients", "occlusion"]),
                st.sampled_from([attribfast.IntegratedGradients(n_steps=3), attribfast.Saliency(aggregation="l2")]),
                st.text(max_size=5),
                numbers,
            ),
            "nt_type": st.one_of(st.sampled_from(attribfast.methods.NT_TYPES), st.text(max_size=5)),
            "nt_samples": counts,
            "stdevs": optional_reals,
            "seed": st.one_of(st.none(), numbers),
        },
        attribfast.GradientShap: {
            "n_samples": counts,
            "stdevs": optional_reals,
            "baselines": st.one_of(
                embedding_baselines(n_tokens, hidden),
                st.sampled_from(
                    [(1, n_tokens, hidden), (3, n_tokens, hidden), (0, n_tokens, hidden), (2, 1, hidden)]
                ).map(lambda shape: np.random.default_rng(0).normal(0, 0.1, shape).astype(np.float32)),
            ),
            "seed": st.one_of(st.none(), numbers),
            "aggregation": st.sampled_from(["sum", "l2", "mean"]),
        },
    }
    return st.sampled_from(list(fields)).flatmap(
        lambda cls: st.tuples(st.just(cls), st.fixed_dictionaries({}, optional=fields[cls]))
    )


def fuzz_methods(log, scratch) -> collections.Counter:
    model = attribfast.load(shipped_bundle())
    hidden = model._spec.hidden_size
    tokenize = model._spec.tokenizer.encode
    seen = collections.Counter()

    @fuzz(1000)
    @given(data=st.data(), text=st.sampled_from(TEXTS), targets=st.sampled_from([["1"], ["1", "22"]]))
    def run(data, text, targets):
        cls, kwargs = data.draw(method_configs(len(tokenize(text).ids), hidden), label="method")
        log.write(f"{text!r} {targets!r} {cls.__name__}({kwargs!r})\n")
        log.flush()
        call = lambda: model.attribute(text, targets=targets, method=cls(**kwargs), progress=budget(ROWS))  # noqa: E731
        seen[outcome(call, scratch)] += 1

    run()
    assert_varied(seen, "InvalidInputError")
    return seen


def fuzz_ids(log, scratch) -> collections.Counter:
    arith = attribfast.load(shipped_bundle())
    path = os.path.join(scratch, "linear.onnx")
    with open(path, "wb") as f:
        f.write(linear_score_model(np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)))
    # Own models have no vocabulary size: out-of-range ids reach ONNX Runtime itself. pad_id gets
    # anything a user might pass.
    pad_ids = st.one_of(int64s, big_ints, numbers, reals, st.none(), st.text(max_size=3))
    id_lists = st.one_of(
        st.lists(st.integers(-25, 30), min_size=0, max_size=20),
        st.lists(big_ints, min_size=1, max_size=8),
        st.lists(st.integers(0, 24), min_size=1, max_size=64).map(np.asarray),
        st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=4).map(lambda v: np.asarray(v, np.uint64)),
        st.lists(st.integers(-128, 127), min_size=1, max_size=6).map(lambda v: np.asarray(v, np.int8)),
    )
    seen = collections.Counter()

    @fuzz(400)
    @given(ids=id_lists, pad_id=pad_ids, own=st.booleans(), method=st.sampled_from(CHEAP))
    def run(ids, pad_id, own, method):
        log.write(f"{ids!r} pad_id={pad_id} own={own} {method!r}\n")
        log.flush()
        if own:
            if method.needs == "gradient":
                method = CHEAP[0]

            def call():
                model = attribfast.AttributionModel.from_onnx(path, pad_id=pad_id)
                return model.attribute(ids, targets=[0, 2], method=method, progress=budget(ROWS))
        else:
            call = lambda: arith.attribute(ids, targets=["1"], method=method, progress=budget(ROWS))  # noqa: E731
        seen[outcome(call, scratch)] += 1

    run()
    assert_varied(seen, "InvalidInputError")
    return seen


if __name__ == "__main__":
    warnings.simplefilter("error")
    part, log_path, scratch = sys.argv[1:4]
    with open(log_path, "w") as log:
        seen = {"methods": fuzz_methods, "ids": fuzz_ids}[part](log, scratch)
    print("outcomes: " + ", ".join(f"{name}={count}" for name, count in sorted(seen.items())))
