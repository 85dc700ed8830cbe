"""Manifest paths: every file a manifest names resolves inside the bundle and is hash-checked.

Before issue 17's fix, a graph path such as "../x.onnx", an absolute path or a link out of the
bundle loaded that file unchecked (a copy with tampered weights gave other attributions), and
`files` entries with "../" were read and hashed outside the bundle.
"""

from __future__ import annotations

import json
import os
import shutil

import attribfast
import numpy as np
import pytest
from attribfast import Bundle
from attribfast.bundle import sha256_of
from attribfast.demo import shipped_bundle
from attribfast.errors import BundleError, BundleIntegrityError


@pytest.fixture
def bundle(tmp_path):
    """A copy of the shipped bundle, and a tampered copy of its forward graph beside it (outside)."""
    copy = tmp_path / "bundle"
    shutil.copytree(shipped_bundle(), copy)
    data = bytearray((copy / "forward.onnx").read_bytes())
    data[-1000] ^= 0x01  # a weight byte
    (tmp_path / "x.onnx").write_bytes(bytes(data))
    return copy


def edit(bundle, change) -> None:
    manifest = json.loads((bundle / "attribfast.json").read_text())
    change(manifest)
    (bundle / "attribfast.json").write_text(json.dumps(manifest))


def set_graph(path):
    def change(manifest):
        manifest["graphs"]["forward"]["file"] = path

    return change


def hash_too(name, file):
    def change(manifest):
        manifest["files"][name] = sha256_of(file)

    return change


def test_the_shipped_bundle_loads(bundle):
    assert Bundle.load(bundle).graph_path("forward") == (bundle / "forward.onnx").resolve()


def test_a_graph_path_out_of_the_bundle_is_refused_naming_the_field(bundle):
    edit(bundle, set_graph("../x.onnx"))
    with pytest.raises(BundleError, match=r"graphs.forward.file \('../x.onnx'\) leads outside the bundle"):
        attribfast.load(bundle)
    # Hashing it too does not help: the file is not the bundle's.
    edit(bundle, hash_too("../x.onnx", bundle.parent / "x.onnx"))
    with pytest.raises(BundleError, match=r"files\['../x.onnx'\] \('../x.onnx'\) leads outside the bundle"):
        attribfast.load(bundle)


def test_an_absolute_graph_path_is_refused(bundle):
    edit(bundle, set_graph(str(bundle.parent / "x.onnx")))
    with pytest.raises(BundleError, match="graphs.forward.file is an absolute path"):
        attribfast.load(bundle)
    # Even one that points into the bundle: bundles are relocatable.
    edit(bundle, set_graph(str(bundle / "forward.onnx")))
    with pytest.raises(BundleError, match="absolute path"):
        attribfast.load(bundle)


def test_a_link_out_of_the_bundle_is_refused_even_when_hashed(bundle):
    os.symlink(bundle.parent / "x.onnx", bundle / "link.onnx")
    edit(bundle, set_graph("link.onnx"))
    edit(bundle, hash_too("link.onnx", bundle / "link.onnx"))
    with pytest.raises(BundleError, match="leads outside the bundle"):
        attribfast.load(bundle)


def test_a_files_entry_out_of_the_bundle_is_not_read(bundle):
    edit(bundle, hash_too("../x.onnx", bundle.parent / "x.onnx"))
    with pytest.raises(BundleError, match=r"files\['../x.onnx'\]"):
        Bundle.load(bundle, verify=False)


def test_a_named_file_that_is_not_hashed_is_refused(bundle):
    # Inside the bundle, but absent from `files`: its hash was never checked.
    shutil.copy(bundle.parent / "x.onnx", bundle / "other.onnx")
    edit(bundle, set_graph("other.onnx"))
    with pytest.raises(BundleIntegrityError, match="graphs.forward.file names 'other.onnx', which the manifest's"):
        attribfast.load(bundle)
    with pytest.raises(BundleIntegrityError, match="do not hash"):
        Bundle.load(bundle, verify=False)


@pytest.mark.parametrize("field", ["tokenizer", "embeddings"])
def test_tokenizer_and_embeddings_paths_are_checked_too(bundle, field):
    outside = bundle.parent / f"{field}.copy"
    shutil.copy(bundle / ("tokenizer.json" if field == "tokenizer" else "embeddings.npy"), outside)
    edit(bundle, lambda manifest: manifest.update({field: f"../{outside.name}"}))
    with pytest.raises(BundleError, match=f"manifest field {field} "):
        attribfast.load(bundle)


@pytest.mark.parametrize("value", [5, "", None, ["forward.onnx"]])
def test_malformed_paths_are_bundle_errors(bundle, value):
    edit(bundle, set_graph(value))
    with pytest.raises(BundleError, match="graphs.forward.file"):
        attribfast.load(bundle)


def test_a_hashed_path_spelled_differently_still_resolves_to_its_hash(bundle):
    edit(bundle, set_graph("./sub/../forward.onnx"))
    model = attribfast.load(bundle)
    reference = attribfast.load(shipped_bundle())
    method = attribfast.Occlusion()
    np.testing.assert_array_equal(
        model.attribute("12+3", targets=["4"], method=method).matrix,
        reference.attribute("12+3", targets=["4"], method=method).matrix,
    )
