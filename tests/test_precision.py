"""fp16 copies of bundles: the graph contract, fp32 score heads, and agreement with fp32."""

import json

import attribfast
import numpy as np
import onnx
import pytest
from attribfast.bundle import MANIFEST, Bundle
from attribfast.errors import BundleError, OutputExistsError
from attribfast.precision import FLOAT32_OPS, score_head_nodes, to_float16

TEXT = "the quick brown fox jumps over the lazy dog while attribution tells"
# fp16 rounds each value to 2^-11 (4.9e-4) relative; through a few layers and the difference of two
# scores that occlusion takes, errors of a few 1e-3 of the largest attribution are expected.
FP16_RELATIVE = 1e-2


@pytest.fixture(scope="module")
def half_bundles(bundles, tmp_path_factory):
    root = tmp_path_factory.mktemp("fp16")
    return {name: to_float16(bundles[name], root / name) for name in ("gpt2", "bert")}


def _elem_types(values):
    return {v.name: v.type.tensor_type.elem_type for v in values}


@pytest.mark.parametrize("name", ["gpt2", "bert"])
def test_fp16_copy_keeps_the_graph_contract(bundles, half_bundles, name):
    source, half = Bundle.load(bundles[name]), Bundle.load(half_bundles[name])
    assert half.manifest["dtype"] == "float16" and half.manifest["converted_from"] == source.hash
    # The shared gradient graph stays out of fp16 copies (their gradient methods run a row per target).
    kept = {name: graph for name, graph in source.manifest["graphs"].items() if name != "shared_gradient"}
    assert half.manifest["graphs"] == kept and not half.manifest["shared_gradient"]["available"]
    assert not (half.path / "shared_gradient.onnx").exists()
    for graph in kept.values():
        ours = onnx.load(str(half.path / graph["file"]))
        theirs = onnx.load(str(source.path / graph["file"]))
        # Inputs and outputs keep names and fp32 types: the engine feeds and reads them unchanged.
        assert _elem_types(ours.graph.input) == _elem_types(theirs.graph.input)
        assert _elem_types(ours.graph.output) == _elem_types(theirs.graph.output)
        # Most weights are fp16 (the embedding table the engine reads stays an fp32 .npy).
        sizes = {onnx.TensorProto.FLOAT16: 0, onnx.TensorProto.FLOAT: 0}
        for tensor in ours.graph.initializer:
            if tensor.data_type in sizes:
                sizes[tensor.data_type] += int(np.prod(tensor.dims))
        assert sizes[onnx.TensorProto.FLOAT16] > 4 * sizes[onnx.TensorProto.FLOAT]
        # Blocked ops stay fp32: none of them reads a value rounded to fp16 just before.
        producer = {o: n for n in ours.graph.node for o in n.output}
        for node in ours.graph.node:
            for name_in in node.input:
                cast = producer.get(name_in)
                if cast is not None and cast.op_type == "Cast" and node.op_type == "Cast":
                    to = {a.name: a.i for a in cast.attribute}["to"]
                    mine = {a.name: a.i for a in node.attribute}["to"]
                    assert not (to == onnx.TensorProto.FLOAT16 and mine == onnx.TensorProto.FLOAT), node.name
    assert "LogSoftmax" in FLOAT32_OPS


def test_score_head_is_found_between_target_inputs_and_scores(bundles):
    model = onnx.load(str(bundles["gpt2"] / "forward.onnx"))
    head = set(score_head_nodes(model))
    ops = {n.op_type for n in model.graph.node if n.name in head}
    producer = {o: n for n in model.graph.node for o in n.output}
    assert producer["scores"].name in head  # the final sum
    assert ops & {"Exp", "LogSoftmax", "ReduceLogSumExp"}  # the log-softmax over the vocabulary
    assert len(head) < len(model.graph.node) / 2  # the transformer body is not in it


@pytest.mark.parametrize(
    ("name", "targets", "method"),
    [
        ("gpt2", [" jumps over", " is"], "occlusion"),
        ("gpt2", [" jumps over", " is"], "integrated_gradients"),
        ("bert", None, "occlusion"),
        ("bert", None, "saliency"),
    ],
)
def test_fp16_attributions_agree_with_fp32(bundles, half_bundles, name, targets, method):
    full = attribfast.load(bundles[name]).attribute(TEXT, targets=targets, method=method)
    half = attribfast.load(half_bundles[name]).attribute(TEXT, targets=targets, method=method)
    scale = np.abs(full.matrix).max()
    assert scale > 0
    assert np.abs(half.matrix - full.matrix).max() <= FP16_RELATIVE * scale
    np.testing.assert_allclose(half.target_scores, full.target_scores, rtol=1e-3, atol=1e-3)


def test_fp16_copy_refuses_bad_requests(bundles, half_bundles, tmp_path):
    with pytest.raises(BundleError, match="already a float16"):
        to_float16(half_bundles["gpt2"], tmp_path / "again")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(OutputExistsError):
        to_float16(bundles["gpt2"], tmp_path / "busy")
    assert to_float16(bundles["gpt2"], tmp_path / "busy", overwrite=True).is_dir()


def test_unknown_dtype_in_a_manifest_is_refused(half_bundles, tmp_path):
    import shutil

    copy = tmp_path / "odd"
    shutil.copytree(half_bundles["bert"], copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["dtype"] = "int4"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="dtype"):
        attribfast.load(copy)


def test_conversion_does_not_load_onnxruntimes_python_module(bundles, tmp_path):
    # A second ONNX Runtime in the process (the onnxruntime module's own) beside the core's crashed
    # CUDA sessions created after it on a GPU machine; the converter is loaded on its own instead.
    import subprocess
    import sys

    code = (
        "import sys; from attribfast.precision import to_float16; "
        f"to_float16({str(bundles['bert'])!r}, {str(tmp_path / 'half')!r}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'onnxruntime'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fills_without_a_value_get_the_float32_default_before_conversion():
    # ONNX Runtime's converter up to 1.30 typed such a node's output fp16 and the graph no longer
    # loaded (gradient graphs exported with torch 2.11, on a GPU machine); this image's converter
    # copes either way, so the pass itself is checked, subgraphs included.
    from attribfast.precision import _explicit_fill_values
    from onnx import TensorProto, helper, numpy_helper

    def fill(name):
        return helper.make_node("ConstantOfShape", ["shape"], [name])

    then = helper.make_graph([fill("inner")], "then", [], [helper.make_tensor_value_info("inner", 1, None)])
    branch = helper.make_node("If", ["cond"], ["picked"], then_branch=then, else_branch=then)
    graph = helper.make_graph(
        [fill("outer"), branch, helper.make_node("ConstantOfShape", ["shape"], ["ones"], value=numpy_helper.from_array(
            np.array([1], np.int64), "value"))],
        "g",
        [helper.make_tensor_value_info("shape", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("outer", "picked")],
    )
    _explicit_fill_values(onnx, graph)
    nodes = [graph.node[0], graph.node[1].attribute[0].g.node[0], graph.node[1].attribute[1].g.node[0]]
    for node in nodes:
        (value,) = [a.t for a in node.attribute if a.name == "value"]
        assert value.data_type == TensorProto.FLOAT and numpy_helper.to_array(value).tolist() == [0.0]
    kept = numpy_helper.to_array(graph.node[2].attribute[0].t)  # an explicit value is left alone
    assert kept.dtype == np.int64 and kept.tolist() == [1]


def test_fp16_graphs_have_no_fill_without_a_value(half_bundles):
    for bundle in half_bundles.values():
        for path in bundle.glob("*.onnx"):
            for node in onnx.load(str(path), load_external_data=False).graph.node:
                if node.op_type == "ConstantOfShape":
                    assert any(a.name == "value" for a in node.attribute), (path.name, node.name)
