"""The ONNX optimiser torch's exporter runs (onnxscript's), without its one quadratic rule.

onnxscript's default rewrite rules include SlicesSplit (two Slices of one tensor -> one Split), the
only rule whose pattern has two output nodes. Its matcher indexes every node of the graph by op
type again for each Slice it tries, so the rule costs (nodes x Slices): on a GPT-2-small joint
graph (forward, two backward passes and five extra graphs) that was most of the export's time
(py-spy samples, docs/benchmarks.md "Export time"). The other rules, the constant folding and the
clean-up passes run as before; ONNX Runtime runs two Slices as fast as one Split.

The rules' matchers also keep the last graph they matched until their next use (and through it
every initializer: a large model's torch weights, which the export means to free before
validation), so their match state is cleared afterwards.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def _without_multi_output_rules():
    from onnxscript import rewriter

    rules = rewriter._DEFAULT_REWRITE_RULES
    rewriter._DEFAULT_REWRITE_RULES = type(rules)(
        rule for rule in rules if rule._target_pattern.has_single_output_node
    )
    try:
        yield
    finally:
        rewriter._DEFAULT_REWRITE_RULES = rules
        for rule in rules:
            matcher = getattr(rule, "_matcher", None)
            for name in ("_graph", "_current_node", "_match", "_tracer"):
                if name in getattr(matcher, "__dict__", {}):
                    setattr(matcher, name, None)


def optimize(model):
    """onnxscript's optimisation of an ONNX IR model (in place; returns it), as torch's exporter
    applies it, less the rewrite rules with several output nodes."""
    from torch.onnx._internal._lazy_import import onnxscript_apis

    with _without_multi_output_rules():
        return onnxscript_apis.optimize(model)
