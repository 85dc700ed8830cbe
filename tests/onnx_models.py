"""Tiny ONNX graphs built with the onnx helper API, with values that can be derived by hand."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(nodes, inputs, outputs, initializers=()) -> bytes:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def multi_io_model(seed: int = 0) -> tuple[bytes, np.ndarray]:
    """ids int64 [batch, seq] and x float [batch, 4] -> y = 2x + 1, z = sum(ids), w = x @ W."""
    weight = np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["x2"]),
        helper.make_node("Add", ["x2", "one"], ["y"]),
        helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["ids_f", "axis1"], ["z"], keepdims=0),
        helper.make_node("MatMul", ["x", "W"], ["w"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(weight, "W"),
    ]
    inputs = [
        helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
    ]
    outputs = [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
        helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info("w", TensorProto.FLOAT, ["batch", 3]),
    ]
    return _model(nodes, inputs, outputs, inits), weight


SCORE_INPUTS = [
    helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
    helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
]


def _masked_rows(table: np.ndarray) -> tuple[list, list]:
    """Nodes giving masked = table[input_ids] * attention_mask [batch, seq, n_targets], and its sum "linear"."""
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["rows"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["rows", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["linear"], keepdims=0),
    ]
    inits = [
        numpy_helper.from_array(table.astype(np.float32), "table"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    return nodes, inits


def linear_score_model(table: np.ndarray) -> bytes:
    """scores[b, t] = sum_s mask[b, s] * table[ids[b, s], t]: every token adds its own row.

    Occluding position p with baseline id q changes score t by exactly table[ids[p], t] - table[q, t].
    """
    nodes, inits = _masked_rows(table)
    nodes.append(helper.make_node("Identity", ["linear"], ["scores"]))
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", table.shape[1]])]
    return _model(nodes, SCORE_INPUTS, outputs, inits)


def interaction_score_model(table: np.ndarray, pair_weight: float) -> bytes:
    """A non-additive score: linear_score_model plus pair_weight * (score of the first two tokens)^2.

    Exact Shapley values differ from occlusion here, which the sampling tests rely on.
    """
    nodes, inits = _masked_rows(table)
    nodes += [
        helper.make_node("Slice", ["masked", "start0", "end2", "axis1"], ["first_two"]),
        helper.make_node("ReduceSum", ["first_two", "axis1"], ["pair"], keepdims=0),
        helper.make_node("Mul", ["pair", "pair"], ["pair_sq"]),
        helper.make_node("Mul", ["pair_sq", "pw"], ["pair_term"]),
        helper.make_node("Add", ["linear", "pair_term"], ["scores"]),
    ]
    inits += [
        numpy_helper.from_array(np.array([0], np.int64), "start0"),
        numpy_helper.from_array(np.array([2], np.int64), "end2"),
        numpy_helper.from_array(np.array(pair_weight, np.float32), "pw"),
    ]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", table.shape[1]])]
    return _model(nodes, SCORE_INPUTS, outputs, inits)


def log_score_model(table: np.ndarray) -> bytes:
    """scores[b, t] = log(sum_s mask[b, s] * table[ids[b, s], t]): linear_score_model's scores through a
    log, so NaN exactly for the variants whose column sum is negative (-inf where it is 0)."""
    nodes, inits = _masked_rows(table)
    nodes.append(helper.make_node("Log", ["linear"], ["scores"]))
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", table.shape[1]])]
    return _model(nodes, SCORE_INPUTS, outputs, inits)


def singular_gradient_model(log_score: bool) -> bytes:
    """A gradient graph over embeddings: with S = sum of the unmasked embeddings of a row, the score is
    log(S^2) (log_score) or S^2, and the "gradient" 2 / S at every unmasked element. At S = 0 the log
    score is -inf and the gradient +-inf; the plain score stays finite there."""
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["inputs_embeds", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axes12"], ["total"], keepdims=0),
        helper.make_node("Unsqueeze", ["total", "axis1"], ["total2"]),
        helper.make_node("Mul", ["total2", "total2"], ["square"]),
        helper.make_node("Log" if log_score else "Identity", ["square"], ["scores"]),
        helper.make_node("Div", ["two", "total2"], ["slope"]),
        helper.make_node("Unsqueeze", ["slope", "axis2"], ["slope3"]),
        helper.make_node("Mul", ["mask3", "slope3"], ["slope_rows"]),
        helper.make_node("Shape", ["inputs_embeds"], ["shape"]),
        helper.make_node("Expand", ["slope_rows", "shape"], ["embeds_grad"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes12"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
    ]
    inputs = [
        helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch", "seq", "hidden"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
    ]
    outputs = [
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 1]),
        helper.make_tensor_value_info("embeds_grad", TensorProto.FLOAT, ["batch", "seq", "hidden"]),
    ]
    return _model(nodes, inputs, outputs, inits)


def nan_score_model() -> bytes:
    """scores = log(-1) * mask sum: always NaN."""
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mask_f", "axis1"], ["count"], keepdims=1),
        helper.make_node("Log", ["minus_one"], ["nan"]),
        helper.make_node("Mul", ["count", "nan"], ["scores"]),
        helper.make_node("Identity", ["input_ids"], ["unused"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(-1.0, np.float32), "minus_one"),
    ]
    inputs = SCORE_INPUTS
    outputs = [
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 1]),
        helper.make_tensor_value_info("unused", TensorProto.INT64, ["batch", "seq"]),
    ]
    return _model(nodes, inputs, outputs, inits)


def slow_model(width: int = 512, depth: int = 48) -> bytes:
    """x [batch, width] through `depth` dense layers: slow enough per batch to interrupt."""
    rng = np.random.default_rng(0)
    nodes, inits, current = [], [], "x"
    for i in range(depth):
        weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"W{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [f"h{i}"]))
        current = f"h{i}"
    nodes.append(helper.make_node("Identity", [current], ["y"]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])]
    return _model(nodes, inputs, outputs, inits)


def memory_hungry_model(fails_from: int = 3) -> bytes:
    """ids int64 [batch, seq] -> scores [batch, 1] = sum of the ids. On the side it allocates
    floats (then sums them to 0): 1,024 for batches below `fails_from` rows, else 2**48 (1 PiB).
    That is beyond any process's address space, so the allocation fails on every machine, whatever
    its memory or overcommit policy (a size that merely exceeds RAM can be granted and then touched,
    and the kernel kills the process: seen on a GPU machine with 128 GB)."""
    zero = helper.make_tensor("v", TensorProto.FLOAT, [1], [0])
    nodes = [
        helper.make_node("Shape", ["ids"], ["batch"], end=1),
        helper.make_node("Less", ["batch", "fails_from"], ["fits"]),
        helper.make_node("Where", ["fits", "small", "huge"], ["count"]),
        helper.make_node("ConstantOfShape", ["count"], ["big"], value=zero),
        helper.make_node("ReduceSum", ["big"], ["zero"], keepdims=1),
        helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["ids_f", "axis1"], ["total"], keepdims=1),
        helper.make_node("Add", ["total", "zero"], ["scores"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([fails_from], np.int64), "fails_from"),
        numpy_helper.from_array(np.array([1024], np.int64), "small"),
        numpy_helper.from_array(np.array([2**48], np.int64), "huge"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 1])],
        inits,
    )
