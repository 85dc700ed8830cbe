"""The export's ONNX optimiser: onnxscript's, less the SlicesSplit rule (quadratic in the graph's
size; export/onnx_optimizer.py)."""

import numpy as np
import onnx
import onnx_ir
import onnxruntime
from attribfast.export import onnx_optimizer
from onnx import TensorProto, helper, numpy_helper
from onnxscript import rewriter
from torch.onnx._internal._lazy_import import onnxscript_apis


def halves_model() -> onnx.ModelProto:
    """y = [second half of x, first half of x] along the last axis, from two Slices of x (rotary
    embeddings' rotate_half, what SlicesSplit looks for), then an Identity the optimiser drops."""
    inits = [numpy_helper.from_array(np.array(v, np.int64), name) for name, v in
             (("zero", [0]), ("half", [2]), ("end", [4]), ("last", [-1]))]
    nodes = [
        helper.make_node("Slice", ["x", "zero", "half", "last"], ["a"]),
        helper.make_node("Slice", ["x", "half", "end", "last"], ["b"]),
        helper.make_node("Concat", ["b", "a"], ["c"], axis=-1),
        helper.make_node("Identity", ["c"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "halves", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def test_the_optimiser_runs_without_the_multi_output_rule_and_restores_the_rule_set(monkeypatch):
    rules = rewriter._DEFAULT_REWRITE_RULES
    assert "SlicesSplit" in [rule.name for rule in rules]
    seen = []
    real = onnxscript_apis.optimize

    def spy(model):
        seen.append([rule.name for rule in rewriter._DEFAULT_REWRITE_RULES])
        return real(model)

    monkeypatch.setattr(onnxscript_apis, "optimize", spy)
    model = onnx_optimizer.optimize(onnx_ir.serde.deserialize_model(halves_model()))
    assert len(seen) == 1 and "SlicesSplit" not in seen[0]
    assert set(seen[0]) == {rule.name for rule in rules} - {"SlicesSplit"}, "every other rule still runs"
    assert rewriter._DEFAULT_REWRITE_RULES is rules
    assert "Identity" not in [node.op_type for node in model.graph], "the optimiser did run"
    proto = onnx_ir.serde.serialize_model(model)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.concatenate([x[:, 2:], x[:, :2]], axis=1))


def kept_graphs() -> list[str]:
    return [rule.name for rule in rewriter._DEFAULT_REWRITE_RULES
            if getattr(getattr(rule, "_matcher", None), "_graph", None) is not None]


def test_the_rules_do_not_keep_the_last_optimised_graph():
    # The matchers' match state would keep the graph, and through its initializers a large model's
    # torch weights, alive until the next export (export/onnx_optimizer.py). onnxscript's own
    # optimiser leaves it there:
    onnxscript_apis.optimize(onnx_ir.serde.deserialize_model(halves_model()))
    assert kept_graphs(), "the rules keep the graph they matched last"
    onnx_optimizer.optimize(onnx_ir.serde.deserialize_model(halves_model()))
    assert kept_graphs() == []
