"""The untyped errors the fuzz found (docs/reliability.md, "Errors"), each pinned as a regression test.

Before its fix each case raised TypeError, ValueError, OverflowError or KeyError, or warned.
"""

import warnings

import attribfast
import numpy as np
import pytest
from attribfast.errors import InvalidInputError, TargetError
from onnx_models import linear_score_model

TEXT = "12+3="


@pytest.mark.parametrize("text", ["12\ud800+3", "\udfff", "1\udbff2"])
def test_lone_surrogates_in_the_text_are_invalid_input(arith, text):
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        arith.attribute(text, targets=["1"])


@pytest.mark.parametrize("targets", [["\ud800"], {"a\udfff": "1"}, {"a": "\ud800"}, "\udbff"])
def test_lone_surrogates_in_targets_are_invalid_input(arith, targets):
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        arith.attribute(TEXT, targets=targets)


@pytest.mark.parametrize(
    "make",
    [
        lambda: attribfast.FeatureAblation(groups=3),
        lambda: attribfast.ShapleySampling(groups=None),
        lambda: attribfast.ShapleySampling(groups=(0, True)),
        lambda: attribfast.KernelShap(ridge=None),
        lambda: attribfast.KernelShap(ridge="1"),
        lambda: attribfast.Lime(kernel_width="1"),
        lambda: attribfast.Lime(kernel_width=2**2000),
        lambda: attribfast.ShapleySampling(max_seconds="1"),
        lambda: attribfast.ShapleySampling(permutations=((0, 1), (0,))),
        lambda: attribfast.ShapleySampling(permutations=((0, 2**70),)),
        lambda: attribfast.ShapleySampling(permutations=5),
        lambda: attribfast.ShapleySampling(permutations=()),
        lambda: attribfast.Occlusion(baseline=np.array([1, 2])),
        lambda: attribfast.IntegratedGradients(tolerance="1"),
        lambda: attribfast.IntegratedGradients(baseline=np.full((5, 128), "x")),
        lambda: attribfast.IntegratedGradients(baseline=np.full((5, 128), None, object)),
    ],
)
def test_wrongly_typed_method_parameters_are_invalid_input(make):
    with pytest.raises(InvalidInputError):
        make()


def test_an_ig_baseline_beyond_float32_is_refused_without_a_numpy_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidInputError, match="beyond float32"):
            attribfast.IntegratedGradients(baseline=np.full((5, 128), 1e300))


@pytest.mark.parametrize("pad_id", [1.5, float("nan"), float("inf"), "1", -1, 2**70, True])
def test_from_onnx_pad_id_must_be_a_token_id(tmp_path, pad_id):
    path = tmp_path / "linear.onnx"
    path.write_bytes(linear_score_model(np.ones((20, 3), np.float32)))
    with pytest.raises(InvalidInputError, match="pad_id must be an integer"):
        attribfast.AttributionModel.from_onnx(path, pad_id=pad_id)


def test_from_onnx_with_a_malformed_config_is_a_load_error(tmp_path):
    (tmp_path / "model.onnx").write_bytes(linear_score_model(np.ones((20, 3), np.float32)))
    (tmp_path / "config.json").write_text('{"id2label": {"0": "a", "2": "c"}}')
    with pytest.raises(attribfast.errors.ModelLoadError, match="id2label"):
        attribfast.AttributionModel.from_onnx(tmp_path)
    (tmp_path / "config.json").write_text("[1")
    with pytest.raises(attribfast.errors.ModelLoadError, match="not valid JSON"):
        attribfast.AttributionModel.from_onnx(tmp_path)


def test_call_arguments_take_numpy_integers_like_python_ones(arith):
    method = attribfast.ShapleySampling(n_permutations=2)
    plain = arith.attribute(TEXT, targets=["1"], method=method, batch_size=3, seed=5)
    numpy = arith.attribute(TEXT, targets=["1"], method=method, batch_size=np.int64(3), seed=np.uint8(5))
    np.testing.assert_array_equal(plain.matrix, numpy.matrix)
    generated = arith.attribute(TEXT, generate=np.int32(2))
    assert generated.matrix.shape[1] == 2
    with pytest.raises(TargetError, match="generate must be an integer >= 1"):
        arith.attribute(TEXT, generate=np.int32(0))
    with pytest.raises(InvalidInputError, match="batch_size"):
        arith.attribute(TEXT, targets=["1"], batch_size=np.float64(3))
