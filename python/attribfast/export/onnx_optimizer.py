"""The ONNX optimiser torch's exporter runs (onnxscript's), without its one quadratic rule, and with
each rule tried only on nodes of the op type its pattern ends in.

onnxscript's default rewrite rules include SlicesSplit (two Slices of one tensor -> one Split), the
only rule whose pattern has two output nodes. Its matcher indexes every node of the graph by op
type again for each Slice it tries, so the rule costs (nodes x Slices): on a GPT-2-small joint
graph (forward, two backward passes and five extra graphs) that was most of the export's time
(py-spy samples, docs/benchmarks.md "Export time"). The other rules, the constant folding and the
clean-up passes run as before; ONNX Runtime runs two Slices as fast as one Split.

onnxscript tries every rule on every node (~60 x 3,700 nodes, twice, for a tiny GPT-2's joint
graph), and each try builds a match state before it looks at the node's op type: a second of the
export. A rule whose pattern ends in one fixed op type cannot match a node of another op type, so
such tries return "no match" at once; the optimised graph is the same, byte for byte
(tests/test_onnx_optimizer.py).

The rules' matchers also keep the last graph they matched until their next use (and through it
every initializer: a large model's torch weights, which the export means to free before
validation), so their match state is cleared afterwards.
"""

from __future__ import annotations

import contextlib
import threading

# The rule set and RewriteRule.try_rewrite are patched for the whole process while one optimisation
# runs: two exports in two threads take turns.
_PATCHING = threading.Lock()


@contextlib.contextmanager
def _lean_rules():
    """onnxscript's default rewrite rules less those with several output nodes, each tried only
    on nodes of the op type its pattern ends in; everything restored after."""
    from onnxscript import rewriter
    from onnxscript.rewriter._rewrite_rule import RewriteRule

    rules = rewriter._DEFAULT_REWRITE_RULES
    rewriter._DEFAULT_REWRITE_RULES = type(rules)(
        rule for rule in rules if rule._target_pattern.has_single_output_node
    )
    try_rewrite = RewriteRule.__dict__["try_rewrite"]
    ends_in: dict = {}

    def by_op_type(rule, model, graph_or_function, node, **kwargs):
        pattern = rule._target_pattern
        known = ends_in.get(id(pattern))
        if known is None or known[0] is not pattern:  # (kept with its pattern: ids are not reused)
            # (domain, op type, overload) where the pattern's output node has a fixed op; else None.
            fixed = pattern.output_node.op_identifier() if pattern.has_single_output_node else None
            known = ends_in[id(pattern)] = (pattern, fixed[1] if fixed else None)
        op_type = known[1]
        if op_type is not None and node.op_type != op_type:
            return None
        return try_rewrite(rule, model, graph_or_function, node, **kwargs)

    RewriteRule.try_rewrite = by_op_type
    try:
        yield
    finally:
        RewriteRule.try_rewrite = try_rewrite
        rewriter._DEFAULT_REWRITE_RULES = rules
        for rule in rules:
            matcher = getattr(rule, "_matcher", None)
            for name in ("_graph", "_current_node", "_match", "_tracer"):
                if name in getattr(matcher, "__dict__", {}):
                    setattr(matcher, name, None)


def optimize(model):
    """onnxscript's optimisation of an ONNX IR model (in place; returns it), as torch's exporter
    applies it, less the rewrite rules with several output nodes, and faster."""
    from torch.onnx._internal._lazy_import import onnxscript_apis

    with _PATCHING, _lean_rules():
        return onnxscript_apis.optimize(model)
