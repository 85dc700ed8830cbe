"""The manifest schema, verification stamps and the graph contract (issue 13, item 1)."""

import json
import os
import shutil
from pathlib import Path

import attribfast
import numpy as np
import onnx
import pytest
from attribfast import bundle as bundle_module
from attribfast.bundle import MANIFEST, sha256_of
from attribfast.bundle.onnx_header import OnnxHeaderError, read_signature, signature_of
from attribfast.errors import BundleContractError, BundleError, BundleIntegrityError
from onnx import TensorProto, helper

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "arith" / "bundle"


@pytest.fixture
def bundle_dir(tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(SHIPPED, target)
    return target


def edit_manifest(path: Path, edit, rehash: bool = False) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    edit(manifest)
    if rehash:
        manifest["files"] = {name: sha256_of(path / name) for name in manifest["files"]}
    (path / MANIFEST).write_text(json.dumps(manifest))


def test_the_shipped_bundle_passes_every_check(bundle_dir):
    model = attribfast.load(bundle_dir, verify="always")
    assert model.task == "causal-lm"


def _delete(*keys):
    def edit(manifest):
        node = manifest
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return edit


def _set(value, *keys):
    def edit(manifest):
        node = manifest
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return edit


MALFORMED = {
    "no graphs": (_delete("graphs"), "graphs"),
    "no hidden_size": (_delete("hidden_size"), "hidden_size"),
    "no special_tokens": (_delete("special_tokens"), "special_tokens"),
    "no num_heads": (_delete("num_heads"), "num_heads"),
    "no forward graph": (_delete("graphs", "forward"), "graphs.forward"),
    "graph without inputs": (_delete("graphs", "gradient", "inputs"), "graphs.gradient.inputs"),
    "graph file a number": (_set(3, "graphs", "forward", "file"), "graphs.forward.file"),
    "inputs a string": (_set("input_ids", "graphs", "forward", "inputs"), "graphs.forward.inputs"),
    "hidden_size a string": (_set("128", "hidden_size"), "hidden_size"),
    "hidden_size zero": (_set(0, "hidden_size"), "hidden_size"),
    "special token negative": (_set(-4, "special_tokens", "pad"), "special_tokens.pad"),
    "special_ids of strings": (_set(["a"], "special_ids"), "special_ids.0"),
    "labels keyed by words": (_set({"one": "x"}, "labels"), "labels"),
    "max_length negative": (_set(-1, "max_length"), "max_length"),
    "a digest that is not sha256": (_set("abc", "files", "forward.onnx"), "files.forward.onnx"),
    "files empty": (_set({}, "files"), "files"),
    "causal a string": (_set("yes", "causal"), "causal"),
    "dtype unknown": (_set("int4", "dtype"), "dtype"),
    "the manifest a list": (lambda m: (m.clear(), m.update({"x": 1})), "schema_version"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_malformed_manifest_is_a_bundle_error_naming_the_field(bundle_dir, case):
    edit, field = MALFORMED[case]
    edit_manifest(bundle_dir, edit)
    with pytest.raises(BundleError, match=f"manifest field {field}|{field}"):
        attribfast.load(bundle_dir)


def test_a_manifest_that_is_a_json_list_is_a_bundle_error(bundle_dir):
    (bundle_dir / MANIFEST).write_text("[1, 2]")
    with pytest.raises(BundleError):
        attribfast.load(bundle_dir)


# Verification stamps -----------------------------------------------------------------------------


@pytest.fixture
def hash_calls(monkeypatch):
    calls = []
    real = bundle_module.sha256_of

    def counting(path):
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(bundle_module, "sha256_of", counting)
    return calls


def test_a_second_load_of_an_unchanged_bundle_hashes_nothing(bundle_dir, hash_calls):
    attribfast.load(bundle_dir)
    assert sorted(hash_calls) == sorted(json.loads((bundle_dir / MANIFEST).read_text())["files"])
    hash_calls.clear()
    attribfast.load(bundle_dir)
    assert hash_calls == []
    attribfast.load(bundle_dir, verify="always")  # the explicit full check still hashes all
    assert len(hash_calls) == 5
    hash_calls.clear()
    attribfast.load(bundle_dir, verify=False)
    assert hash_calls == []


def test_a_file_rewritten_with_its_size_and_mtime_kept_is_hashed_again_and_caught(bundle_dir, hash_calls):
    attribfast.load(bundle_dir)
    target = bundle_dir / "embeddings.npy"
    st = os.stat(target)
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as before; ctime moves
    hash_calls.clear()
    with pytest.raises(BundleIntegrityError, match="embeddings.npy was modified"):
        attribfast.load(bundle_dir)
    assert hash_calls == ["embeddings.npy"]


def test_a_stamp_for_another_digest_does_not_vouch_for_a_file(bundle_dir, hash_calls):
    attribfast.load(bundle_dir)
    new = np.zeros((25, 128), np.float32)
    np.save(bundle_dir / "embeddings.npy", new)
    edit_manifest(bundle_dir, lambda m: None, rehash=True)  # a consistent, re-signed bundle
    hash_calls.clear()
    attribfast.load(bundle_dir)
    assert hash_calls == ["embeddings.npy"]


def test_verify_takes_only_its_documented_values(bundle_dir):
    with pytest.raises(BundleError, match="verify must be"):
        attribfast.load(bundle_dir, verify="sometimes")


def test_an_unwritable_cache_only_means_hashing_again(bundle_dir, hash_calls, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("ATTRIBFAST_CACHE", str(blocker))
    attribfast.load(bundle_dir)
    attribfast.load(bundle_dir)
    assert len(hash_calls) == 10


# The graph contract --------------------------------------------------------------------------------


def test_a_graph_swapped_for_another_is_refused_at_load(bundle_dir):
    shutil.copy(bundle_dir / "next_token.onnx", bundle_dir / "forward.onnx")
    edit_manifest(bundle_dir, lambda m: None, rehash=True)
    with pytest.raises(BundleContractError, match="graph forward .*inputs"):
        attribfast.load(bundle_dir)


def test_a_manifest_promising_an_output_the_graph_lacks_is_refused(bundle_dir):
    edit_manifest(bundle_dir, _set(["scores", "attention"], "graphs", "forward", "outputs"))
    with pytest.raises(BundleContractError, match="no output 'attention'"):
        attribfast.load(bundle_dir, verify=False)


def test_a_forward_graph_without_the_task_inputs_is_refused(bundle_dir):
    edit_manifest(bundle_dir, _set(["input_ids", "attention_mask"], "graphs", "forward", "inputs"))
    with pytest.raises(BundleContractError, match="causal-lm bundle's forward graph takes"):
        attribfast.load(bundle_dir, verify=False)


def test_a_file_that_is_not_onnx_is_refused_at_load(bundle_dir):
    (bundle_dir / "gradient.onnx").write_bytes(b"\xff" * 64)
    edit_manifest(bundle_dir, lambda m: None, rehash=True)
    with pytest.raises(BundleContractError, match="gradient .*not a readable ONNX"):
        attribfast.load(bundle_dir)


def _tiny_graph(ids_type=TensorProto.INT64, weight_as_input=False):
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    inputs = [
        helper.make_tensor_value_info("input_ids", ids_type, ["b", "n"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "n"]),
    ]
    if weight_as_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [2]))
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "w"], ["scores"]),
    ]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)]
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, [weight]))


def test_the_header_reader_agrees_with_onnx_and_skips_initializers_listed_as_inputs():
    model = _tiny_graph(weight_as_input=True)
    signature = signature_of(model.SerializeToString())
    assert signature.inputs == {"input_ids": "int64", "attention_mask": "int64"}
    assert signature.outputs == {"scores": "float32"}
    assert [i.name for i in model.graph.input if i.name != "w"] == list(signature.inputs)


def test_the_header_reader_reads_a_real_graph_like_onnx_does():
    signature = read_signature(SHIPPED / "gradient.onnx")
    model = onnx.load(str(SHIPPED / "gradient.onnx"), load_external_data=False)
    assert list(signature.inputs) == [i.name for i in model.graph.input]
    assert list(signature.outputs) == [o.name for o in model.graph.output]
    assert signature.inputs["inputs_embeds"] == "float32"


@pytest.mark.parametrize("cut", [1, 7, 100, -3])
def test_a_truncated_model_is_a_header_error_not_a_crash(cut):
    data = _tiny_graph().SerializeToString()
    with pytest.raises(OnnxHeaderError):
        signature_of(data[:cut])


def test_integer_ids_are_part_of_the_contract(bundle_dir):
    onnx.save(_tiny_graph(ids_type=TensorProto.FLOAT), str(bundle_dir / "next_token.onnx"))
    edit_manifest(bundle_dir, _set(["input_ids", "attention_mask"], "graphs", "next_token", "inputs"), rehash=True)
    edit_manifest(bundle_dir, _set(["scores"], "graphs", "next_token", "outputs"), rehash=True)
    with pytest.raises(BundleContractError, match="input 'input_ids' is float32"):
        attribfast.load(bundle_dir)


def test_a_manifest_that_is_not_utf8_is_a_bundle_error(bundle_dir):
    (bundle_dir / MANIFEST).write_bytes(b'{"task": "\xff"}')
    with pytest.raises(BundleError, match="not valid JSON"):
        attribfast.load(bundle_dir)
