"""Issue 17's fuzzing finds, each turned into a test: crashes, silent truncation, silent inf/NaN and
uncancellable work all become a typed AttribfastError or a correct finite result.

The repros use the shipped arithmetic bundle, as the issue did. Those that crashed the process run
in a subprocess, so a regression kills only that.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import attribfast
import numpy as np
import pytest
from attribfast import _core
from attribfast.demo import shipped_bundle
from attribfast.errors import AttributionOverflowError, InvalidInputError, NonFiniteScoreError
from onnx_models import linear_score_model

TEXT = "1234567890+"  # 11 tokens, one a character
MAX_STEPS = 1 << 16  # the documented cap of integration points


def test_crashing_repros_give_typed_errors_in_a_subprocess():
    # Before: SIGSEGV (a window starting past the end; g + 1 overflowing), or a hang.
    code = textwrap.dedent(
        """
        import attribfast
        from attribfast.demo import shipped_bundle
        from attribfast.errors import InvalidInputError
        m = attribfast.load(shipped_bundle())
        cases = [
            ("1234567890+", attribfast.Occlusion(stride=8)),
            ("12345678", attribfast.Occlusion(window=2, stride=7)),
            ("123456", attribfast.FeatureAblation(groups=(2**63 - 1, 0, 0, 0, 0, 0))),
            ("123456", attribfast.FeatureAblation(groups=(2**40, 0, 0, 0, 0, 0))),
        ]
        for text, method in cases:
            try:
                m.attribute(text, targets=["1"], method=method)
                print("no error")
            except InvalidInputError as e:
                print("typed:", e)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("typed:") for line in lines), run.stdout
    assert "stride 8 is longer than the window 1: no window would cover tokens 1 to 7" in lines[0]
    assert "feature group id 9223372036854775807 is out of range" in lines[2]
    assert "feature group id 1099511627776 is out of range" in lines[3]


def test_uncovered_occlusion_positions_are_an_error_not_nan(arith):
    with pytest.raises(InvalidInputError, match="no window would cover token 1,"):
        arith.attribute("1234", targets=["1"], method=attribfast.Occlusion(window=1, stride=2))


def test_occlusion_windows_are_clipped_as_captum_does():
    # Captum: ceil((n - window) / stride) + 1 windows, the last one cut at the end of the input.
    assert _core.occlusion_windows(6, 3, 2) == [(0, 3), (2, 5), (4, 6)]
    assert _core.occlusion_windows(7, 3, 3) == [(0, 3), (3, 6), (6, 7)]
    # A window over the whole input is the one shift, whatever the stride.
    assert _core.occlusion_windows(5, 5, 2**63 - 1) == [(0, 5)]
    for n, window, stride in [(11, 1, 8), (4, 1, 2), (6, 2, 3)]:
        with pytest.raises(InvalidInputError, match="stride <= the window"):
            _core.occlusion_windows(n, window, stride)


def test_clipped_windows_average_exactly_on_a_linear_model(tmp_path):
    table = np.random.default_rng(1).standard_normal((12, 2)).astype(np.float32)
    path = tmp_path / "linear.onnx"
    path.write_bytes(linear_score_model(table))
    model = attribfast.AttributionModel.from_onnx(path, pad_id=0)
    ids = [3, 7, 2, 9, 4, 5, 1]
    result = model.attribute(ids, targets=[1], method=attribfast.Occlusion(window=3, stride=3))
    drop = table[ids, 1] - table[0, 1]
    # Windows [0,3) [3,6) [6,7): each position gets its own window's total drop.
    expected = np.concatenate([np.full(3, drop[:3].sum()), np.full(3, drop[3:6].sum()), drop[6:]])
    np.testing.assert_allclose(result.matrix[:, 0], expected, atol=1e-5, rtol=0)


def test_integers_are_range_checked_where_they_enter_the_core(arith):
    # Before: n_steps 2**32 + 4 ran 4 steps (int truncation); seeds gave pybind's TypeError.
    with pytest.raises(InvalidInputError, match=r"n_steps must be an integer in \[1, 65536\], got 4294967300"):
        arith.attribute(TEXT, targets=["1"], method=attribfast.IntegratedGradients(n_steps=2**32 + 4))
    for seed in (-1, 2**64):
        for method in (
            attribfast.KernelShap(seed=seed),
            attribfast.Lime(seed=seed),
            attribfast.ShapleySampling(seed=seed),
        ):
            with pytest.raises(InvalidInputError, match=rf"seed must be an integer in \[0, 2\*\*64 - 1\], got {seed}"):
                arith.attribute(TEXT, targets=["1"], method=method)
    with pytest.raises(InvalidInputError, match="max_evaluations"):
        arith.attribute(TEXT, targets=["1"], method=attribfast.ShapleySampling(max_evaluations=2**64))
    with pytest.raises(InvalidInputError, match="batch_size"):
        arith.attribute(TEXT, targets=["1"], batch_size=2**70)
    with pytest.raises(InvalidInputError, match=r"n_samples must be an integer in \[1, 1048576\]"):
        arith.attribute(TEXT, targets=["1"], method=attribfast.KernelShap(n_samples=2**62))
    # The largest seed is a seed; numpy integers are integers; bools are not.
    top = arith.attribute(TEXT, targets=["1"], method=attribfast.KernelShap(n_samples=20, seed=2**64 - 1))
    assert np.all(np.isfinite(top.matrix))
    assert len(_core.quadrature("gausslegendre", np.int64(5))[0]) == 5
    with pytest.raises(InvalidInputError, match="n_steps must be an integer, got True"):
        _core.quadrature("gausslegendre", True)


def test_token_ids_beyond_int64_are_an_input_error(arith):
    # Before: numpy's OverflowError.
    with pytest.raises(InvalidInputError, match="int64"):
        arith.attribute([3, 2**70], targets=["1"])


def test_a_huge_baseline_token_id_is_refused_by_name(tmp_path):
    path = tmp_path / "linear.onnx"
    path.write_bytes(linear_score_model(np.ones((4, 1), np.float32)))
    model = attribfast.AttributionModel.from_onnx(path)  # no vocabulary size known
    with pytest.raises(InvalidInputError, match="baseline_id"):
        model.attribute([1, 2], targets=[0], method=attribfast.Occlusion(baseline=2**64))


@pytest.mark.parametrize("config", [attribfast.KernelShap, attribfast.Lime])
def test_nan_ridge_is_refused_by_name(arith, config):
    # Before: an all-NaN matrix. Now the config refuses it (and the core would too).
    with pytest.raises(InvalidInputError, match="ridge must be a finite number >= 0, got nan"):
        arith.attribute(TEXT, targets=["1"], method=config(ridge=float("nan")))


METHODS = [
    attribfast.Occlusion(),
    attribfast.FeatureAblation(),
    attribfast.ShapleySampling(n_permutations=3),
    attribfast.KernelShap(n_samples=20),
    attribfast.Lime(n_samples=20),
]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_finite_scores_whose_attribution_overflows_float32_are_a_typed_error(tmp_path, method):
    # Score 3e38 with the token, -3e38 with the baseline: the drop, 6e38, is finite in float64 but
    # not in the float32 matrix. Before: inf in the matrix, silently.
    table = np.zeros((4, 1), np.float32)
    table[0], table[1] = -3e38, 3e38
    path = tmp_path / "huge.onnx"
    path.write_bytes(linear_score_model(table))
    model = attribfast.AttributionModel.from_onnx(path, pad_id=0)
    with pytest.raises(AttributionOverflowError, match="beyond float32's range") as raised:
        model.attribute([1], targets=[0], method=method)
    assert isinstance(raised.value, NonFiniteScoreError)


def test_integrated_gradients_baselines_huge_or_not_finite_are_typed_errors(arith):
    n, hidden = len(TEXT), arith._spec.hidden_size
    # Before: +-inf in the matrix.
    with pytest.raises(AttributionOverflowError, match="token 0 to target 0"):
        arith.attribute(TEXT, targets=["1"], method=attribfast.IntegratedGradients(baseline=np.full((n, hidden), 1e30)))
    for bad in (np.nan, np.inf):
        baseline = np.zeros((n, hidden), np.float32)
        baseline[2, 5] = bad
        with pytest.raises(InvalidInputError, match="baseline has a non-finite value .* at token 2, dimension 5"):
            arith.attribute(TEXT, targets=["1"], method=attribfast.IntegratedGradients(baseline=baseline))


def test_gauss_legendre_is_exact_and_capped():
    # By hand: 3 points at 1/2 and 1/2 +- sqrt(3/5) / 2, weights 5/18, 8/18, 5/18.
    alphas, weights = _core.quadrature("gausslegendre", 3)
    np.testing.assert_allclose(alphas, [0.5 - np.sqrt(0.15), 0.5, 0.5 + np.sqrt(0.15)], atol=1e-16, rtol=0)
    np.testing.assert_allclose(weights, [5 / 18, 8 / 18, 5 / 18], atol=3e-16, rtol=0)
    for n in [1, 2, 8, 9, 31, 64, 200]:
        alphas, weights = _core.quadrature("gausslegendre", n)
        nodes, reference = np.polynomial.legendre.leggauss(n)
        # numpy's own weights are good to ~1e-15 absolute here (ours are closer to exact).
        np.testing.assert_allclose(alphas, (nodes + 1) / 2, atol=2e-16, rtol=0)
        np.testing.assert_allclose(weights, reference / 2, atol=5e-15, rtol=0)
    alphas, weights = _core.quadrature("gausslegendre", MAX_STEPS)
    assert np.all(np.diff(alphas) > 0) and alphas[0] > 0 and alphas[-1] < 1
    np.testing.assert_array_equal(weights, weights[::-1])
    np.testing.assert_allclose(alphas, 1 - alphas[::-1], atol=2.3e-16, rtol=0)
    # n points integrate polynomials up to degree 2n - 1 exactly: x^k on [0, 1] is 1 / (k + 1).
    for k in (0, 1, 7, 40):
        assert abs(weights @ alphas**k - 1 / (k + 1)) < 1e-13
    with pytest.raises(InvalidInputError, match="n_steps must be an integer in \\[1, 65536\\]"):
        _core.quadrature("gausslegendre", MAX_STEPS + 1)
    with pytest.raises(InvalidInputError, match="n_steps must be an integer in \\[1, 65536\\], got 65537"):
        attribfast.load(shipped_bundle()).attribute(
            TEXT, targets=["1"], method=attribfast.IntegratedGradients(n_steps=MAX_STEPS + 1)
        )


class Interrupted(Exception):
    pass


def test_ctrl_c_stops_a_long_gauss_legendre_computation():
    # The nodes for the cap take about a second or two; before, 50000 took 13 s and ignored Ctrl-C.
    def interrupt(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        start = time.monotonic()
        with pytest.raises(Interrupted):
            _core.quadrature("gausslegendre", MAX_STEPS)
        elapsed = time.monotonic() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert elapsed < 0.5, f"took {elapsed:.2f}s to stop"


def test_cancelling_integrated_gradients_stops_its_quadrature(arith):
    # The progress callback runs on the calling thread; raising there cancels the run, which the
    # node computation on the worker thread checks between blocks.
    def progress(done, total):
        raise Interrupted

    start = time.monotonic()
    with pytest.raises(Interrupted):
        arith.attribute(
            TEXT, targets=["1"], method=attribfast.IntegratedGradients(n_steps=MAX_STEPS), progress=progress
        )
    assert time.monotonic() - start < 0.5
