"""The CUDA path: provider selection, device ids, pinned staging, device-memory batch budgets.

The first tests run everywhere (the logic on the CPU side); those marked `needs_cuda` run where
ONNX Runtime's CUDA provider really works (onnxruntime-gpu and a GPU), e.g. with
ATTRIBFAST_PROVIDERS=cuda,cpu on a GPU machine, where the rest of the suite runs on CUDA too.
"""

import attribfast
import numpy as np
import pytest
from attribfast import Session
from attribfast._runtime import PROVIDERS_ENV, default_providers
from attribfast.errors import DeviceMemoryError, InvalidInputError, ProviderWarning
from attribfast.model import DEFAULT_MEMORY_BUDGET, DEVICE_MEMORY_SHARE
from onnx_models import memory_hungry_model, multi_io_model

CUDA = "cuda" in attribfast.runtime_info().usable_providers
needs_cuda = pytest.mark.skipif(not CUDA, reason="ONNX Runtime's CUDA provider is not usable on this machine")
TEXT = "the quick brown fox jumps over the lazy dog"
# fp32 on the GPU (TF32 off) differs from the CPU only in the order of summation.
CUDA_TOLERANCE = 1e-4


def test_default_providers_come_from_the_environment(monkeypatch):
    monkeypatch.delenv(PROVIDERS_ENV, raising=False)
    assert default_providers() == ("cpu",)
    monkeypatch.setenv(PROVIDERS_ENV, " CUDA , cpu ")
    assert default_providers() == ("cuda", "cpu")


def test_a_bad_provider_list_in_the_environment_is_named(monkeypatch, bundles):
    monkeypatch.setenv(PROVIDERS_ENV, "tpu")
    with pytest.raises(InvalidInputError, match=PROVIDERS_ENV):
        attribfast.load(bundles["gpt2"])


@pytest.mark.parametrize("device_id", [-1, 1.5, True])
def test_device_id_is_checked(bundles, device_id):
    with pytest.raises(InvalidInputError, match="device_id"):
        attribfast.load(bundles["gpt2"], device_id=device_id)
    with pytest.raises(InvalidInputError, match="device_id"):
        Session(bundles["gpt2"] / "forward.onnx", device_id=device_id)


def test_cpu_sessions_stage_in_plain_memory_and_report_no_device():
    session = Session(multi_io_model()[0], provider="cpu")
    assert session.provider == "cpu"
    assert session.pinned_staging is False
    assert session.device_memory() is None


class _FakeGpuSession:
    provider = "cuda"

    def __init__(self, memory):
        self.memory = memory
        self.asked = 0

    def device_memory(self):
        self.asked += 1
        return self.memory


def test_gpu_batches_are_budgeted_from_free_device_memory(bundles):
    model = attribfast.load(bundles["gpt2"], providers=("cpu",))
    gpu = _FakeGpuSession((8 << 30, 80 << 30))
    assert model._device_budget(gpu) == int((8 << 30) * DEVICE_MEMORY_SHARE)
    assert model._device_budget(gpu) == int((8 << 30) * DEVICE_MEMORY_SHARE)  # read once per session
    assert gpu.asked == 1
    # A second session takes its share of what the first one's arena left free, not the same budget
    # again: sessions keep their arenas, and equal budgets let them hold more than the device has.
    later = _FakeGpuSession((2 << 30, 80 << 30))
    assert model._device_budget(later) == int((2 << 30) * DEVICE_MEMORY_SHARE)
    assert model._device_budget(_FakeGpuSession((1, 2))) == 1 << 26  # never below 64 MiB
    given = attribfast.load(bundles["gpt2"], providers=("cpu",), memory_budget=123 << 20)
    assert given._device_budget(_FakeGpuSession((8 << 30, 80 << 30))) == 123 << 20
    unknown = attribfast.load(bundles["gpt2"], providers=("cpu",))
    assert unknown._device_budget(_FakeGpuSession(None)) == DEFAULT_MEMORY_BUDGET


def _hungry(tmp_path, fails_from):
    path = tmp_path / "hungry.onnx"
    path.write_bytes(memory_hungry_model(fails_from))
    return attribfast.AttributionModel.from_onnx(path, ids_input="ids", mask_input=None, providers=("cpu",))


@pytest.mark.parametrize("method", [attribfast.Occlusion(), attribfast.FeatureAblation()])
def test_batches_that_do_not_fit_memory_are_retried_smaller(tmp_path, method):
    # Batches of 3+ rows fail to allocate in ONNX Runtime's arena, as an oversized GPU batch would.
    model = _hungry(tmp_path, 3)
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    fitting = model.attribute(ids, targets=[0], method=method, batch_size=2)
    shrunk = model.attribute(ids, targets=[0], method=method, batch_size=8)
    np.testing.assert_array_equal(shrunk.matrix, fitting.matrix)
    np.testing.assert_array_equal(shrunk.matrix[:, 0], ids)  # the pad-0 baseline removes each id from the sum
    assert shrunk.evaluations == fitting.evaluations  # failed runs are not counted


def test_one_row_that_does_not_fit_is_a_typed_error(tmp_path):
    model = _hungry(tmp_path, 1)  # fails at any batch size
    with pytest.raises(DeviceMemoryError, match="allocate"):
        model.attribute([3, 1, 4], targets=[0], method="occlusion")


@needs_cuda
def test_cuda_sessions_stage_inputs_in_pinned_memory(bundles):
    session = Session(bundles["gpt2"] / "forward.onnx", provider="cuda")
    assert session.provider == "cuda" and session.device_id == 0
    assert session.pinned_staging is True
    free, total = session.device_memory()
    assert 0 < free <= total


@needs_cuda
@pytest.mark.parametrize(
    ("name", "targets", "method"),
    [
        ("gpt2", [" jumps over", " is"], attribfast.Occlusion(window=2)),
        ("gpt2", [" jumps over", " is"], attribfast.ShapleySampling(n_permutations=3, seed=1)),
        ("gpt2", [" jumps over", " is"], attribfast.IntegratedGradients(n_steps=16)),
        ("llama", [" jumps over"], attribfast.KernelShap(n_samples=64, seed=2)),
        ("bert", None, attribfast.FeatureAblation()),
        ("bert", None, attribfast.InputXGradient()),
    ],
)
def test_cuda_equals_cpu(bundles, name, targets, method):
    on_cpu = attribfast.load(bundles[name], providers=("cpu",)).attribute(TEXT, targets=targets, method=method)
    on_gpu = attribfast.load(bundles[name], providers=("cuda",)).attribute(TEXT, targets=targets, method=method)
    np.testing.assert_allclose(on_gpu.matrix, on_cpu.matrix, atol=CUDA_TOLERANCE, rtol=CUDA_TOLERANCE)
    np.testing.assert_allclose(on_gpu.target_scores, on_cpu.target_scores, atol=CUDA_TOLERANCE, rtol=CUDA_TOLERANCE)


@needs_cuda
def test_cuda_batches_follow_device_memory(bundles):
    model = attribfast.load(bundles["gpt2"], providers=("cuda",))
    result = model.attribute(TEXT, targets=[" is"], method="occlusion")
    assert np.isfinite(result.matrix).all()
    free, _ = model.session("forward").device_memory()
    budgets = list(model._device_budgets.values())
    assert budgets and all(budget <= free for budget in budgets)


@needs_cuda
def test_an_absent_device_falls_back_to_cpu_with_a_warning(bundles):
    with pytest.warns(ProviderWarning):
        session = Session(bundles["gpt2"] / "forward.onnx", provider="cuda", device_id=64)
    assert session.provider == "cpu"


@needs_cuda
def test_fp16_bundle_on_cuda_agrees_with_fp32(bundles, tmp_path):
    from attribfast.precision import to_float16

    half = to_float16(bundles["gpt2"], tmp_path / "half")
    full = attribfast.load(bundles["gpt2"], providers=("cuda",)).attribute(TEXT, targets=[" is"], method="occlusion")
    ours = attribfast.load(half, providers=("cuda",)).attribute(TEXT, targets=[" is"], method="occlusion")
    assert np.abs(ours.matrix - full.matrix).max() <= 1e-2 * np.abs(full.matrix).max()
