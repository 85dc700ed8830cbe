"""The shared-forward gradient graph: the gradients of K target scores from one forward.

The gradient graph differentiates the sum of a row's scores, so gradient methods run one row (one
forward and one backward) per target. Here the joint trace also returns the vector-Jacobian
product of the scores with a `score_cotangent` input (trace.py). Its ONNX nodes split in two: those
that do not read the cotangent (the forward, and the parts of the backward that depend only on it)
run once; those that do become the body of an ONNX Loop over the K targets, whose iteration k feeds
the one-hot cotangent e_k. The graph so returns `embeds_grads` [batch, K, sequence, hidden] from one
forward and K backward passes.

(torch.func.vmap over the cotangent would batch the backward passes instead, but it does not trace
under make_fx with symbolic shapes; the Loop needs nothing from the tracer.)

Causal LMs differentiate the packed scores (tasks/packed.py: every continuation in one row);
classifiers and similarity their scores, K classes or references per row. The graph is validated
against the per-target gradient graph after export and dropped (the manifest says why) where it
differs: the engine then runs a row per target, as before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..tasks.packed import OFFSETS, PACKED_OUTPUT, SEGMENTS
from .trace import COTANGENT, outer_names

SHARED = "shared_gradient"
SHARED_GRADS = "embeds_grads"


def source_of(task, packing: bool) -> str | None:
    """The score output the shared graph differentiates, or None where the task has none."""
    if task.causal:
        return PACKED_OUTPUT if packing else None
    return "scores" if task.name in ("sequence-classification", "sentence-similarity") else None


def graph_io(task, source: str) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of the shared gradient graph."""
    packed = [OFFSETS, SEGMENTS] if source == PACKED_OUTPUT else []
    return ["inputs_embeds", "attention_mask", *packed, *task.target_inputs], [source, SHARED_GRADS]


def loop_over_targets(path: Path, source: str, grad: str, target: str) -> None:
    """Rewrites a carved graph (inputs + score_cotangent -> source, grad) into one without the
    cotangent input that returns embeds_grads, the backward looped over the targets. target: the
    task's first target input (its axes 0 and 1 are the scores' [batch, targets])."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    dependent = {COTANGENT}
    body, outer = [], []
    for node in graph.node:  # topologically sorted
        if node.op_type == "Shape" and node.input[0] == COTANGENT:
            # The trace may take a dynamic size from the cotangent: the forward must not wait on
            # the loop for it.
            _size_from_targets(node, target)
        reads = set(node.input) | outer_names(node)
        if reads & dependent:
            dependent.update(node.output)
            body.append(node)
        else:
            outer.append(node)
    if grad not in dependent:
        raise ValueError("the gradient does not read the cotangent")
    # Outside the loop: K = scores.shape[1] and range(K); inside: e_k expanded to the scores' shape.
    outer += [
        helper.make_node("Shape", [source], ["shared_score_shape"]),
        helper.make_node("Constant", [], ["shared_one"], value=helper.make_tensor("one", TensorProto.INT64, [], [1])),
        helper.make_node("Constant", [], ["shared_zero"], value=helper.make_tensor("zero", TensorProto.INT64, [], [0])),
        helper.make_node("Gather", ["shared_score_shape", "shared_one"], ["shared_count"], axis=0),
        helper.make_node("Range", ["shared_zero", "shared_count", "shared_one"], ["shared_range"]),
    ]
    body = [
        helper.make_node("Equal", ["shared_range", "shared_k"], ["shared_hot"]),
        helper.make_node("Cast", ["shared_hot"], ["shared_hot_float"], to=TensorProto.FLOAT),
        helper.make_node("Expand", ["shared_hot_float", "shared_score_shape"], [COTANGENT]),
        *body,
        helper.make_node("Identity", ["shared_cond"], ["shared_cond_out"]),
    ]
    inner_info = [v for v in graph.value_info if v.name in dependent]
    loop_body = helper.make_graph(
        body,
        "per_target_backward",
        [
            helper.make_tensor_value_info("shared_k", TensorProto.INT64, []),
            helper.make_tensor_value_info("shared_cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("shared_cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info(grad, TensorProto.FLOAT, None),
        ],
        value_info=inner_info,
    )
    outer += [
        helper.make_node("Loop", ["shared_count", ""], ["shared_stacked"], body=loop_body),
        helper.make_node("Transpose", ["shared_stacked"], [SHARED_GRADS], perm=[1, 0, 2, 3]),
    ]
    grad_info = next(v for v in graph.output if v.name == grad)
    dims = [d.dim_param or d.dim_value for d in grad_info.type.tensor_type.shape.dim]
    targets = next(v for v in graph.output if v.name == source).type.tensor_type.shape.dim[1]
    dims.insert(1, targets.dim_param or targets.dim_value)
    new_graph = helper.make_graph(
        outer,
        graph.name,
        [v for v in graph.input if v.name != COTANGENT],
        [
            next(v for v in graph.output if v.name == source),
            helper.make_tensor_value_info(SHARED_GRADS, TensorProto.FLOAT, dims),
        ],
        initializer=list(graph.initializer),
        value_info=[v for v in graph.value_info if v.name not in dependent],
    )
    model.graph.CopyFrom(new_graph)
    onnx.save(model, str(path))


def ones_cotangent(path: Path, target: str) -> None:
    """Rewrites a carved graph that reads score_cotangent into one that feeds it ones of the
    scores' shape: the gradient of the scores' sum, as gradient.onnx returns. Classifiers and
    similarity trace one backward, from the cotangent, for both graphs."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    for node in graph.node:
        if node.op_type == "Shape" and node.input[0] == COTANGENT:
            _size_from_targets(node, target)
    ones = [
        helper.make_node("Shape", [target], ["ones_shape"], start=0, end=2),
        helper.make_node("ConstantOfShape", ["ones_shape"], [COTANGENT],
                         value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])),
    ]
    nodes = [*ones, *graph.node]  # they read an input only; the backward may read them early
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [v for v in graph.input if v.name != COTANGENT]
    del graph.input[:]
    graph.input.extend(kept)
    onnx.save(model, str(path))


def _size_from_targets(node, target: str) -> None:
    """Makes a Shape node that reads the cotangent [batch, targets] read the same sizes from the
    task's first target input instead, whose first two axes are [batch, targets] too."""
    from onnx import helper

    attributes = {a.name: a.i for a in node.attribute}
    bounds = []
    for key, default in (("start", 0), ("end", 2)):
        value = attributes.get(key, default)
        bounds.append(min(max(value + 2 if value < 0 else value, 0), 2))
    del node.attribute[:]
    node.attribute.extend([helper.make_attribute("start", bounds[0]), helper.make_attribute("end", bounds[1])])
    node.input[0] = target


def shared_cases(task, model, source: str, max_length: int) -> list:
    """The check's inputs, made while the torch model is still loaded (it is freed before the
    checks run); an empty list if they cannot be made, which fails the check."""
    try:
        return list(_cases(task, model, source, max_length))
    except Exception:  # noqa: BLE001 - reported by validate_shared as a failed check
        return []


def validate_shared(cases: list, bundle: Path, tolerance) -> dict:
    """The manifest note: the shared graph's gradients against the per-target gradient graph."""
    try:
        if not cases:
            raise ValueError("no check inputs could be made for this model")
        return _validate(cases, bundle, tolerance)
    except Exception as e:  # noqa: BLE001 - any failure means the optional graph is not kept
        return {"available": False, "reason": f"the shared gradient graph failed its check: {str(e)[:500]}"}


def _validate(cases: list, bundle: Path, tolerance) -> dict:
    from .sessions import validation_session

    embeddings = np.load(bundle / "embeddings.npy", mmap_mode="r")  # the rows it reads, not the table
    score_error, grad_error = 0.0, 0.0
    # One session at a time (export memory): the shared graph's answers first, then the reference.
    shared = validation_session(bundle / f"{SHARED}.onnx")
    answers = []
    for feeds, _ in cases:
        feeds = dict(feeds)
        feeds["inputs_embeds"] = embeddings[feeds.pop("input_ids")]
        answers.append(shared.run(None, feeds))
    del shared
    gradient = validation_session(bundle / "gradient.onnx")
    for (_, per_target), (scores, grads) in zip(cases, answers, strict=True):
        for (slot, n, row_feeds) in per_target:
            row_feeds = dict(row_feeds)
            row_feeds["inputs_embeds"] = embeddings[row_feeds.pop("input_ids")]
            expected_score, expected_grad = gradient.run(None, row_feeds)
            scale = max(float(np.abs(expected_grad[:, :n]).max()), 1e-12)
            score_error = max(score_error, float(np.abs(scores[:, slot] - expected_score[:, 0]).max()))
            grad_error = max(grad_error, float(np.abs(grads[:, slot, :n] - expected_grad[:, :n]).max()) / scale)
    ok = score_error <= tolerance.scores and grad_error <= tolerance.gradients
    note = {"available": ok, "score_error": score_error, "gradient_error": grad_error}
    if not ok:
        note["reason"] = f"differs from the per-target gradients by {score_error:.3g} (scores), " \
                         f"{grad_error:.3g} (relative gradients)"
    return note


def _cases(task, model, source: str, max_length: int):
    """(shared feeds, [(slot, compared positions, per-target gradient feeds)]) for a few layouts."""
    from ..tasks.shared_gradient import packed_gradient_layout

    rng = np.random.default_rng(11)
    vocab = model.get_input_embeddings().weight.shape[0]
    if source == PACKED_OUTPUT:
        for n, sizes in ((min(7, max_length - 4), (3, 1, 2)), (min(5, max_length - 5), (1, 1)),
                         (min(3, max_length - 5), (5, 2))):
            prompt = rng.integers(0, vocab, n)
            pieces = [rng.integers(0, vocab, max(1, min(size, max_length - n))) for size in sizes]
            layout = packed_gradient_layout(n, pieces, 0)
            row = np.concatenate([prompt, layout.suffixes[0]])[None]
            feeds = {"input_ids": row, "attention_mask": np.ones_like(row)}
            feeds.update({name: value[:1] for name, value in layout.extras.items()})
            per_target = []
            for k, piece in enumerate(pieces):
                single = np.concatenate([prompt, piece[:-1]])[None]
                per_target.append((layout.target_slot[k], n, {
                    "input_ids": single,
                    "attention_mask": np.ones_like(single),
                    "score_positions": (n - 1 + np.arange(piece.size)).reshape(1, 1, -1),
                    "score_ids": piece.reshape(1, 1, -1).astype(np.int64),
                    "score_weights": np.ones((1, 1, piece.size), np.float32),
                }))
            yield feeds, per_target
        return
    from .validation import example_inputs

    for seed, (batch, seq, k) in enumerate(((2, min(9, max_length), 3), (1, min(4, max_length), 2))):
        ids, mask, targets = example_inputs(task, model, batch, seq, k, 1, 20 + seed, True)
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        feeds.update({name: t.numpy() for name, t in zip(task.target_inputs, targets, strict=True)})
        per_target = []
        for slot in range(k):
            row = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
            row.update({name: t[:, slot : slot + 1].numpy() for name, t in zip(task.target_inputs, targets,
                                                                                 strict=True)})
            per_target.append((slot, seq, row))
        yield feeds, per_target
