"""The export's ONNX optimiser: onnxscript's, less the SlicesSplit rule (quadratic in the graph's
size), each rule tried only on nodes of its pattern's op type (export/onnx_optimizer.py)."""

import numpy as np
import onnx
import onnx_ir
import onnxruntime
import pytest
import torch
from attribfast.export import onnx_optimizer
from onnx import TensorProto, helper, numpy_helper
from onnxscript import rewriter
from onnxscript.rewriter._rewrite_rule import RewriteRule
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


class Attention(torch.nn.Module):
    """One pre-norm attention block: reshapes, transposes, a split, casts and a GELU, the kinds of
    nodes the rewrite rules and fusions look at."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(8)
        self.qkv = torch.nn.Linear(8, 24)
        self.out = torch.nn.Linear(8, 8)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, 2, 4).transpose(1, 2) for t in self.qkv(self.norm(x)).split(8, dim=-1))
        attention = torch.softmax((q @ k.transpose(-1, -2)) / 2.0, dim=-1)
        y = (attention @ v).transpose(1, 2).reshape(b, n, 8)
        return x + torch.nn.functional.gelu(self.out(y)).to(torch.float32)


# torch's own exporter (only this test's source graph) warns about its pytree use.
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
def test_rules_tried_by_op_type_give_the_same_graph_as_onnxscript(monkeypatch):
    torch.manual_seed(0)
    program = torch.onnx.export(
        Attention().eval(), (torch.randn(2, 5, 8),), dynamo=True, optimize=False, dynamic_shapes=({0: "b", 1: "n"},)
    )
    proto = onnx_ir.serde.serialize_model(program.model)
    try_rewrite = RewriteRule.try_rewrite
    ours = onnx_ir.serde.serialize_model(onnx_optimizer.optimize(onnx_ir.serde.deserialize_model(proto)))
    assert RewriteRule.try_rewrite is try_rewrite, "restored"

    # onnxscript's own optimiser with the same rule set, every rule tried on every node.
    fired = []

    def counted(rule, *args, **kwargs):
        replacement = try_rewrite(rule, *args, **kwargs)
        fired.extend([rule.name] if replacement is not None else [])
        return replacement

    monkeypatch.setattr(RewriteRule, "try_rewrite", counted)
    rules = rewriter._DEFAULT_REWRITE_RULES
    monkeypatch.setattr(
        rewriter, "_DEFAULT_REWRITE_RULES", type(rules)(r for r in rules if r._target_pattern.has_single_output_node)
    )
    theirs = onnx_ir.serde.serialize_model(onnxscript_apis.optimize(onnx_ir.serde.deserialize_model(proto)))
    assert len(set(fired)) >= 2, "rewrite rules changed this graph"
    assert len(ours.graph.node) < len(proto.graph.node)
    assert ours.SerializeToString() == theirs.SerializeToString()
