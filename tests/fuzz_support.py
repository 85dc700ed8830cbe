"""The public-API fuzz (tests/test_fuzz.py): its hypothesis profile, its strategies and the rule every
outcome must follow.

The rule: a call returns finite Attribution objects, or raises an AttribfastError subclass, or is
stopped by the fuzz's own row budget (its progress callback raises OverBudget, so that huge but
valid parameters cannot hang the run). Anything else (another exception type, a warning, which the
suite turns into an error, a NaN in a result, a crash) fails.
"""

from __future__ import annotations

import os
import string

import attribfast
import numpy as np
from attribfast.errors import AttribfastError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# CI runs a fixed, derandomized sample so that a run is reproducible and bounded; a larger scale
# (ATTRIBFAST_FUZZ_SCALE=20, say) explores further locally, still deterministically.
SCALE = float(os.environ.get("ATTRIBFAST_FUZZ_SCALE", "1"))
settings.register_profile(
    "attribfast-fuzz",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    # Slow examples and large ones (hundreds of targets, 100k-character texts) are the point here.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
PROFILE = settings.get_profile("attribfast-fuzz")


def fuzz(examples: int) -> settings:
    return settings(PROFILE, max_examples=max(1, int(examples * SCALE)))


# Characters that break naive text handling: C0/C1 controls and NUL, bidirectional marks and
# isolates, zero-width and combining characters, line/paragraph separators, BOM, noncharacters.
CONTROLS = "".join(map(chr, range(0x20))) + "\x7f" + "".join(map(chr, range(0x80, 0xA0)))
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
ODD = "\u200b\u200c\u200d\u0301\u0336\u2028\u2029\ufeff\ufffd\ufffe\uffff\U0010ffff\U0001f600"
SURROGATES = "\ud800\udfff\udbff"  # lone halves: random code points almost never land on one
ARITH = string.digits + "+-=*/x.,$√ \n"  # what the shipped model's tokenizer knows
HOSTILE = CONTROLS + BIDI + ODD + SURROGATES + ARITH
ANY_CHAR = st.characters()
HOSTILE_CHAR = st.one_of(st.sampled_from(HOSTILE), ANY_CHAR)


def repeat_to(piece: str, length: int) -> str:
    return (piece * (length // len(piece) + 1))[:length]


# Short texts of any characters, texts of the hostile ones, and very long texts (up to 100k).
texts = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.text(HOSTILE_CHAR, min_size=1, max_size=40),
    st.builds(repeat_to, st.text(HOSTILE_CHAR, min_size=1, max_size=6), st.integers(1_000, 100_000)),
)
# Texts the shipped model mostly tokenizes to known tokens, so that most calls produce results.
arith_texts = st.text(st.sampled_from(ARITH + BIDI + "\x00\t"), min_size=1, max_size=30)

# Integers around every boundary the API has (0, 1, 2, 2^16, 2^20, 2^31, 2^63, 2^64), and anywhere.
EDGES = [b + d for b in (0, 2**16, 2**20, 2**31, 2**32, 2**63, 2**64) for d in (-1, 0, 1)]
big_ints = st.one_of(
    st.sampled_from(EDGES + [-e for e in EDGES]),
    st.integers(-(2**70), 2**70),
    st.integers(-3, 70),
)
reals = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 1e300, float("nan"), float("inf"), -float("inf")]),
)
# Any number a user might pass, as Python or numpy values (bools too, which count as ints in Python).
numbers = st.one_of(
    big_ints,
    reals,
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.integers(0, 2**64 - 1).map(np.uint64),
    st.integers(-128, 127).map(np.int8),
    st.floats(width=32).map(np.float32),
)
small_ints = st.integers(-3, 40)


# Cheap configurations of every method, for the fuzz of inputs and targets (fuzz_native.py fuzzes
# the parameters themselves).
CHEAP = [
    attribfast.Occlusion(window=2),
    attribfast.FeatureAblation(groups="word"),
    attribfast.ShapleySampling(n_permutations=2, seed=3),
    attribfast.KernelShap(n_samples=12, seed=1),
    attribfast.Lime(n_samples=12),
    attribfast.IntegratedGradients(n_steps=3),
    attribfast.Saliency(),
    attribfast.InputXGradient(aggregation="l2"),
    attribfast.NoiseTunnel(nt_samples=2, stdevs=0.1, seed=1),
    attribfast.GradientShap(n_samples=2, stdevs=0.1),
]


class OverBudget(Exception):
    """Raised by the fuzz's progress callback: the call was accepted and ran long enough."""


def budget(max_rows: int):
    """A progress callback that stops a run once it has run max_rows model rows."""

    def progress(done: int, total: int) -> None:
        if done > max_rows:
            raise OverBudget

    return progress


def check_result(result, scratch: str) -> None:
    """Raises AssertionError unless result is a consistent, finite Attribution."""
    assert isinstance(result, attribfast.Attribution), type(result)
    n_tokens, n_targets = result.matrix.shape
    assert n_tokens == len(result.tokens) >= 1 and n_targets == len(result.targets) >= 1
    assert np.all(np.isfinite(result.matrix)), result.matrix
    if result.target_scores is not None:
        assert np.all(np.isfinite(result.target_scores)), result.target_scores
    if result.deltas is not None:
        assert np.all(np.isfinite(result.deltas)), result.deltas
    if result.standard_errors is not None:
        assert not np.any(np.isnan(result.standard_errors)), result.standard_errors
    # The result's own API on whatever tokens and labels came out.
    for derived in (result.normalize("maxabs"), result.normalize("l1")):
        assert np.all(np.isfinite(derived.matrix))
    if result.offsets is not None and result.text:
        words = result.aggregate("word")
        assert np.all(np.isfinite(words.matrix)) and words.matrix.shape[1] == n_targets
    result._repr_html_()
    path = os.path.join(scratch, "result.npz")
    result.save(path)
    again = attribfast.Attribution.load(path)
    assert again.tokens == result.tokens and again.targets == result.targets and again.text == result.text
    np.testing.assert_array_equal(again.matrix, result.matrix)


def outcome(call, scratch: str) -> str:
    """Runs call(); returns "result", "budget" or the AttribfastError class name. Any other exception
    (and any non-finite or inconsistent result) propagates to fail the fuzz."""
    try:
        result = call()
    except AttribfastError as error:
        return type(error).__name__
    except OverBudget:
        return "budget"
    for one in result if isinstance(result, list) else [result]:
        check_result(one, scratch)
    return "result"


def assert_varied(seen, *errors: str) -> None:
    """The fuzz reached results and each named error: a strategy that only ever produced one kind of
    outcome would test nothing of the others."""
    missing = {"result", *errors} - set(seen)
    assert not missing, f"the fuzz never saw {sorted(missing)}; it saw {dict(seen)}"
