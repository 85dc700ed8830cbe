"""int8 copies of bundles: integer graphs, an fp32 gradient graph, every perturbation method, and
rank agreement with fp32 on the real MiniLM."""

import json
import shutil
import subprocess
import sys
import warnings

import attribfast
import numpy as np
import onnx
import pytest
from attribfast.bundle import MANIFEST, Bundle, sha256_of
from attribfast.errors import BundleError, Float32GradientWarning, InvalidInputError, OutputExistsError
from attribfast.int8 import quantize
from attribfast.methods import METHODS
from attribfast.precision import to_float16

TEXT = "the quick brown fox jumps over the lazy dog while attribution tells"
CONTINUATIONS = [" jumps over", " is"]
# Sentences and references as a user of a similarity model writes them; the rank test runs them all.
SIMILARITY = [
    (
        "A man is playing a guitar on the stage while the crowd sings along",
        ["Someone performs music for an audience.", "A woman is cooking dinner in the kitchen.",
         "The concert was loud and full of people."],
    ),
    (
        "The new phone has a great camera but the battery drains far too quickly during the day",
        ["The battery life is poor.", "The camera takes excellent photos.", "I love this restaurant."],
    ),
    (
        "Heavy rain flooded several streets in the city centre and the trains were cancelled this morning",
        ["Bad weather disrupted public transport.", "The football match ended in a draw.",
         "Streets were under water after the storm."],
    ),
    (
        "The committee approved the budget after a long debate about funding for public schools",
        ["Lawmakers passed the spending plan.", "Education funding was discussed.", "A cat sleeps on the sofa."],
    ),
]
# Small settings for the sampling methods: this checks that they run, not how well they converge.
SMALL = {"shapley_sampling": {"n_permutations": 2}, "kernel_shap": {"n_samples": 16}, "lime": {"n_samples": 16}}


@pytest.fixture(scope="module")
def int8_bundles(bundles, minilm_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    return {"gpt2": quantize(bundles["gpt2"], root / "gpt2"), "minilm": quantize(minilm_bundle, root / "minilm")}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two value sets (no ties among these float scores)."""
    ranks = [np.argsort(np.argsort(np.ravel(x), kind="stable")) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def test_spearman_helper_is_exact():
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0])) == pytest.approx(0.5)
    assert spearman(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)


@pytest.mark.parametrize("name", ["gpt2", "minilm"])
def test_int8_copy_has_integer_graphs_and_the_fp32_gradient_graph(bundles, minilm_bundle, int8_bundles, name):
    source = Bundle.load(minilm_bundle if name == "minilm" else bundles[name])
    copy = Bundle.load(int8_bundles[name], verify="always")  # schema, hashes and graph contract
    record = copy.manifest["quantization"]
    assert record["method"] == "dynamic-int8" and record["source"] == source.hash
    assert record["graphs"]["gradient"] == "float32"
    int8_graphs = [g for g, dtype in record["graphs"].items() if dtype == "int8"]
    expected = {"gpt2": {"forward", "next_token", "prefix", "suffix_score"}, "minilm": {"forward", "embed"}}[name]
    packed = {"packed_score", "packed_suffix_score", "shared_gradient"}
    assert set(int8_graphs) == expected and set(record["graphs"]) == set(source.manifest["graphs"]) - packed
    assert not packed & set(copy.manifest["graphs"]) and not (copy.path / "packed_score.onnx").exists()
    for graph in int8_graphs:
        model = onnx.load(str(copy.graph_path(graph)))
        ops = {node.op_type for node in model.graph.node}
        assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, graph
        # The engine feeds and reads the same names and types.
        theirs = onnx.load(str(source.graph_path(graph)), load_external_data=False)
        assert [(v.name, v.type.tensor_type.elem_type) for v in model.graph.input] == [
            (v.name, v.type.tensor_type.elem_type) for v in theirs.graph.input
        ]
        # 8-bit weights: a quarter of the bytes (the tiny GPT-2's graphs are mostly structure).
        shrink = 2 if name == "minilm" else 1
        assert copy.graph_path(graph).stat().st_size < source.graph_path(graph).stat().st_size / shrink
    assert sha256_of(copy.graph_path("gradient")) == sha256_of(source.graph_path("gradient"))


@pytest.mark.parametrize("method", [name for name, cls in METHODS.items() if cls.needs == "forward"])
def test_every_perturbation_method_runs_on_int8(bundles, int8_bundles, method):
    config = METHODS[method](**SMALL.get(method, {}))
    full = attribfast.load(bundles["gpt2"]).attribute(TEXT, targets=CONTINUATIONS, method=config, seed=0)
    int8 = attribfast.load(int8_bundles["gpt2"]).attribute(TEXT, targets=CONTINUATIONS, method=config, seed=0)
    assert int8.quantization == "dynamic-int8" and full.quantization == ""
    assert int8.shape == full.shape and np.isfinite(int8.matrix).all()
    # The int8 model is another model, but a close one: its clean scores are near fp32's.
    np.testing.assert_allclose(int8.target_scores, full.target_scores, rtol=0.02)
    assert not np.array_equal(int8.matrix, full.matrix)


def test_minilm_occlusion_ranks_agree_with_fp32(minilm_bundle, int8_bundles, tmp_path):
    full, int8 = attribfast.load(minilm_bundle), attribfast.load(int8_bundles["minilm"])
    for text, references in SIMILARITY:
        a = full.attribute(text, targets=references, method="occlusion")
        b = int8.attribute(text, targets=references, method="occlusion")
        assert spearman(a.matrix, b.matrix) >= 0.9, text
        assert np.abs(a.matrix - b.matrix).max() < 0.05, text  # cosine units; measured up to 0.043
    b.save(tmp_path / "r.npz")
    assert attribfast.Attribution.load(tmp_path / "r.npz").quantization == "dynamic-int8"
    assert b.to_dict()["quantization"] == "dynamic-int8"


def test_int8_runs_without_prefix_reuse(int8_bundles):
    # Reuse moved the int8 matrix more than quantization does (engine.reuses_prefix): it is off.
    model = attribfast.load(int8_bundles["gpt2"])
    asked = model.attribute(TEXT, targets=CONTINUATIONS, method="occlusion")
    plain = model.attribute(TEXT, targets=CONTINUATIONS, method="occlusion", reuse_prefix=False)
    assert asked.token_positions == plain.token_positions
    np.testing.assert_array_equal(asked.matrix, plain.matrix)


def test_gradient_methods_run_the_fp32_graph_and_warn(bundles, int8_bundles):
    full = attribfast.load(bundles["gpt2"]).attribute(TEXT, targets=CONTINUATIONS, method="saliency")
    model = attribfast.load(int8_bundles["gpt2"])
    with pytest.warns(Float32GradientWarning, match="float32 gradient graph"):
        int8 = model.attribute(TEXT, targets=CONTINUATIONS, method="saliency")
    np.testing.assert_array_equal(int8.matrix, full.matrix)
    assert int8.quantization == "dynamic-int8"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.attribute(TEXT, targets=CONTINUATIONS, method="occlusion")  # perturbation: no warning


def test_quantize_refuses_bad_input(bundles, int8_bundles, tmp_path):
    with pytest.raises(BundleError, match="not an attribfast bundle"):
        quantize(tmp_path, tmp_path / "out")
    with pytest.raises(BundleError, match="already quantized"):
        quantize(int8_bundles["gpt2"], tmp_path / "again")
    with pytest.raises(BundleError, match="int8 bundle"):
        to_float16(int8_bundles["gpt2"], tmp_path / "half")
    half = to_float16(bundles["bert"], tmp_path / "bert-fp16")
    with pytest.raises(BundleError, match="float16 bundle"):
        quantize(half, tmp_path / "q")
    with pytest.raises(InvalidInputError, match="weight_type"):
        quantize(bundles["bert"], tmp_path / "q", weight_type="int4")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(OutputExistsError):
        quantize(bundles["bert"], tmp_path / "busy")


def test_manifest_schema_checks_the_quantization_record(int8_bundles, tmp_path):
    copy = tmp_path / "odd"
    shutil.copytree(int8_bundles["gpt2"], copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["quantization"]["graphs"]["forward"] = "int4"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="quantization.graphs.forward"):
        attribfast.load(copy)


def test_external_weights_shared_with_the_gradient_graph(bundles, tmp_path):
    # Large exports keep one weights file that all graphs share: the int8 graphs get their own
    # weights, and the file stays for the fp32 gradient graph.
    source = tmp_path / "external"
    shutil.copytree(bundles["bert"], source)
    manifest = json.loads((source / MANIFEST).read_text())
    for graph in manifest["graphs"].values():
        model = onnx.load(str(source / graph["file"]))
        onnx.save(model, str(source / graph["file"]), save_as_external_data=True, location="weights.bin")
    manifest["files"] = {f.name: sha256_of(f) for f in sorted(source.iterdir()) if f.name != MANIFEST}
    (source / MANIFEST).write_text(json.dumps(manifest))
    out = quantize(source, tmp_path / "int8")
    assert (out / "weights.bin").is_file()
    model = attribfast.load(out)
    assert np.isfinite(model.attribute(TEXT, method="occlusion").matrix).all()
    with pytest.warns(Float32GradientWarning):
        assert np.isfinite(model.attribute(TEXT, method="saliency").matrix).all()


def test_cli_quantizes_without_loading_onnxruntimes_python_module(bundles, tmp_path):
    # The quantizer runs in a child process: a second ONNX Runtime in this one crashed CUDA sessions.
    code = (
        "import sys; from attribfast.cli import main; "
        f"rc = main(['quantize', {str(bundles['bert'])!r}, '-o', {str(tmp_path / 'q')!r}]); "
        "print(rc, sorted(m for m in sys.modules if m.split('.')[0] == 'onnxruntime'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []"
    assert "forward int8" in out.stdout and "gradient float32" in out.stdout
    assert Bundle.load(tmp_path / "q").manifest["quantization"]["per_channel"] is True
    failed = subprocess.run(
        [sys.executable, "-m", "attribfast", "quantize", str(tmp_path), "-o", str(tmp_path / "x")],
        capture_output=True, text=True,
    )
    assert failed.returncode == 2 and "BundleError" in failed.stderr
