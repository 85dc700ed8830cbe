"""Half-precision copies of bundles: fp16 weights and matrix products, fp32 where scores are formed.

A GPU runs fp16 graphs on its tensor cores at several times the fp32 rate. What attribution needs
exact is the score: log-softmax over the vocabulary, the sums over continuation tokens and the
reductions behind normalisation stay fp32, and so do every graph input and output, so the engine,
the embedding matrix and the bundle's graph contract are those of the fp32 bundle.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

from .bundle import MANIFEST, Bundle, sha256_of
from .errors import BundleError, ExportError, OutputExistsError
from .tasks.shared_gradient import GRAPH as SHARED_GRADIENT

DTYPES = ("float32", "float16")

# Ops left in fp32 wherever they are: reductions (sums of log-probabilities, pooling, norms of
# sentence embeddings), squares and means of RMS norms (fp16 overflows there first), and layer norms
# (their statistics outputs are fp32 by the ONNX spec, and mixed precision keeps them fp32 anyway),
# and scatter-adds (backward of gathers: sums again, and no fp16 kernel on CPU).
FLOAT32_OPS = (
    "LogSoftmax",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceLogSumExp",
    "ReduceL2",
    "Pow",
    "LayerNormalization",
    "ScatterElements",
    "ScatterND",
)
FLOAT, FLOAT16 = 1, 10  # ONNX TensorProto element types

# Graph inputs that carry the targets: every node that reads them (directly or not) on the way to
# a score output forms the score (the LM head at the scored positions, log-softmax, gathers, sums),
# and stays fp32 as a whole.
TARGET_INPUTS = ("score_positions", "score_ids", "score_weights", "target_classes", "reference_embeddings")
SCORE_OUTPUTS = ("scores", "logits", "sentence_embedding")

# An fp16 graph this much larger than the 2 GB protobuf limit's comfort zone keeps its weights in
# an external file, as the exporter does.
EXTERNAL_DATA_BYTES = 1 << 30


def bundle_dtype(manifest: dict) -> str:
    """The compute precision a manifest records (bundles before fp16 support are float32)."""
    dtype = manifest.get("dtype", "float32")
    if dtype not in DTYPES:
        raise BundleError(f"unknown dtype {dtype!r} in the manifest (known: {', '.join(DTYPES)})")
    return dtype


def to_float16(bundle_dir: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes an fp16 copy of an fp32 bundle and returns its directory.

    Weights and activations become fp16; graph inputs and outputs, log-softmax and reductions stay
    fp32 (FLOAT32_OPS), so the copy loads and runs exactly like its source. Needs the `onnx`
    package (the export extra). Meant for GPUs: ONNX Runtime's CPU provider has few fp16 kernels.
    """
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - the export extra is missing
        raise ExportError(f"fp16 conversion needs the onnx package (pip install attribfast[export]): {e}") from None
    converter = _float16_converter()
    convert_float_to_float16 = converter.convert_float_to_float16
    DEFAULT_OP_BLOCK_LIST = converter.DEFAULT_OP_BLOCK_LIST  # noqa: N806
    source = Bundle.load(bundle_dir)
    if bundle_dtype(source.manifest) != "float32":
        raise BundleError(f"{bundle_dir} is already a {bundle_dtype(source.manifest)} bundle")
    if source.manifest.get("quantization"):
        raise BundleError(f"{bundle_dir} is an int8 bundle; convert its float32 source instead")
    out = Path(out_dir)
    if out.resolve() == source.path.resolve():
        raise ExportError("the fp16 copy needs its own directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out} is not empty (pass overwrite=True)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    manifest = copy.deepcopy(source.manifest)
    graph_files = set()
    # The looped backward would not keep its score head in fp32: the copy keeps a row per target.
    if manifest["graphs"].pop(SHARED_GRADIENT, None) is not None:
        graph_files.add(f"{SHARED_GRADIENT}.onnx")
        manifest["shared_gradient"] = {"available": False, "reason": "fp16 copies keep a row per target"}
    for graph in manifest["graphs"].values():
        model = onnx.load(str(source.path / graph["file"]), load_external_data=False)
        graph_files.update(_external_files(model))
        onnx.load_external_data_for_model(model, str(source.path))
        graph_files.add(graph["file"])
        _explicit_fill_values(onnx, model.graph)
        half = convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FLOAT32_OPS)),
            node_block_list=score_head_nodes(model),
        )
        _skip_half_round_trips(half)
        _drop_duplicate_nodes(half)
        _save(onnx, half, out / graph["file"])
    for name in source.manifest["files"]:
        if name not in graph_files:
            shutil.copy2(source.path / name, out / name)

    manifest["dtype"] = "float16"
    manifest["float32_ops"] = list(FLOAT32_OPS)
    manifest["converted_from"] = source.hash
    manifest["files"] = {
        f.name: sha256_of(f) for f in sorted(out.iterdir()) if f.is_file() and f.name != MANIFEST
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _float16_converter():
    """ONNX Runtime's fp16 graph converter (onnxruntime/transformers/float16.py), loaded on its own.

    Importing the onnxruntime package would load its Python module's own copy of ONNX Runtime
    into the process beside the core's. On a GPU machine whose onnxruntime module differs from the
    library the core runs, CUDA sessions created after that import crashed in our runs, so only
    the converter's file is loaded (it needs numpy, onnx and packaging).
    """
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ExportError("fp16 conversion uses ONNX Runtime's converter: pip install onnxruntime")
    path = Path(list(spec.submodule_search_locations)[0]) / "transformers" / "float16.py"
    if not path.is_file():
        raise ExportError(f"this onnxruntime has no fp16 converter at {path}")
    module_spec = importlib.util.spec_from_file_location("attribfast._ort_float16", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def score_head_nodes(model) -> list[str]:
    """Names of the nodes between the target inputs and the score outputs (named here if unnamed)."""
    graph = model.graph
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = f"attribfast_node_{index}"
    downstream = {i.name for i in graph.input if i.name in TARGET_INPUTS}
    from_targets = set()
    for node in graph.node:  # ONNX graphs are topologically sorted
        if downstream.intersection(node.input):
            from_targets.add(node.name)
            downstream.update(node.output)
    upstream = {o.name for o in graph.output if o.name in SCORE_OUTPUTS}
    to_scores = set()
    for node in reversed(graph.node):
        if upstream.intersection(node.output):
            to_scores.add(node.name)
            upstream.update(node.input)
    return sorted(from_targets & to_scores)


def _explicit_fill_values(onnx, graph) -> None:
    """Gives every ConstantOfShape without a `value` its default (float32 zero) explicitly.

    Without one, the node's output is float32 by the ONNX default, yet ONNX Runtime's converter up to
    1.30 types that output fp16 without a value to match, and the graph no longer loads ("Type
    (tensor(float16)) of output arg ... does not match expected type (tensor(float))", seen in
    gradient graphs on a GPU machine). An explicit value is converted with its output."""
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.domain in ("", "ai.onnx"):
            if not any(attribute.name == "value" for attribute in node.attribute):
                zero = onnx.helper.make_tensor("value", onnx.TensorProto.FLOAT, [1], [0.0])
                node.attribute.append(onnx.helper.make_attribute("value", zero))
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                _explicit_fill_values(onnx, subgraph)


def _skip_half_round_trips(model) -> None:
    """Cast(fp32) of Cast(fp16) of x becomes Cast(fp32) of x.

    The converter puts each fp32 node's output back into fp16 and casts it up again for the next
    fp32 node, so a chain of fp32 nodes (the score head) would still round every value to fp16.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}

    def casts_to(node, element_type: int) -> bool:
        return node.op_type == "Cast" and any(a.name == "to" and a.i == element_type for a in node.attribute)

    for node in graph.node:
        source = producer.get(node.input[0]) if node.input else None
        if casts_to(node, FLOAT) and source is not None and casts_to(source, FLOAT16):
            node.input[0] = source.input[0]
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    dead = [n for n in graph.node if casts_to(n, FLOAT16) and not used.intersection(n.output)]
    for node in dead:
        graph.node.remove(node)


def _drop_duplicate_nodes(model) -> None:
    """Some converter versions cast a weight that several fp32 nodes share once per reader, with the
    same node and value names; ONNX Runtime refuses a value defined twice. Identical copies go."""
    seen: dict[str, bytes] = {}
    duplicates = []
    for node in model.graph.node:
        for output in node.output:
            if output in seen:
                if seen[output] != node.SerializeToString():
                    raise ExportError(f"fp16 conversion defined {output!r} twice, differently")
                duplicates.append(node)
                break
            seen[output] = node.SerializeToString()
    for node in duplicates:
        model.graph.node.remove(node)
    names: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if node.name in names:
            node.name = f"{node.name}_{index}"
        names.add(node.name)


def _external_files(model) -> set[str]:
    """Names of the external data files a graph's initializers point to."""
    files = set()
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                files.add(entry.value)
    return files


def _save(onnx, model, path: Path) -> None:
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    if weights > EXTERNAL_DATA_BYTES:
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save(model, str(path))
