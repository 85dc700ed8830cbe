"""Tracing once, converting once, carving every bundle graph out of the one ONNX graph.

Export time is almost all symbolic tracing (measured with benchmarks/bench_export.py): make_fx,
then torch.export of its graph, then the ONNX exporter's own decomposition pass re-tracing it
again, for each of the three graphs a bundle had. Now one joint function is traced:

    (inputs_embeds, attention_mask, *targets, *extra inputs, input_ids)
        -> (scores, embeds_grad, *extra outputs, embedded_ids)

with make_fx using the ONNX exporter's own decomposition table (so its decomposition pass has
nothing left to do and is skipped), handed to the ONNX translator as it is (export/program.py: no
torch.export re-trace), converted once, and each graph is then a pruned
copy of it: gradient keeps (scores, embeds_grad); forward and the task's extra graphs read
`embedded_ids` (the model's own embedding of input_ids) where the joint graph read inputs_embeds.
The weights are shared: inline in each graph for small models, one external data file for large
ones. Every graph is still validated against torch afterwards.
"""

from __future__ import annotations

import contextlib
import gc
import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExportError
from ..tasks import ExtraGraph, Task
from ..tasks.base import sharing
from .load import quiet
from .onnx_optimizer import optimize
from .program import exported_program, insert_type_promotion

WEIGHTS_FILE = "weights.data"
COTANGENT = "score_cotangent"
COTANGENT_GRAD = "cotangent_grad"


@dataclass(frozen=True)
class Traced:
    """The joint graph as an ONNX ModelProto, with the names carve() needs."""

    proto: object
    target_names: tuple
    extras: tuple


def trace_joint(
    task: Task,
    model,
    score_module,
    extras: list[ExtraGraph],
    example,
    out: Path,
    opset: int,
    external: bool,
    cotangent_of: str | None = None,
) -> Traced:
    """Traces and converts the joint function. example: (ids, mask, targets, extra example inputs).
    cotangent_of: a score output whose vector-Jacobian product with a `score_cotangent` input the
    joint also returns (export/shared.py): an extra graph's, as `cotangent_grad`, or "scores", as
    `embeds_grad` itself (gradient.onnx then feeds ones)."""
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    ids, mask, targets, extra_args = example
    embedding = model.get_input_embeddings()
    n_targets = len(targets)
    # Extra graphs may share inputs by name (the past of both suffix graphs): one joint input each.
    slot_of: dict = {}
    shared_args = []
    slots = []
    for extra, args in zip(extras, extra_args, strict=True):
        for name, value in zip(extra.inputs, args, strict=True):
            if name not in slot_of:
                slot_of[name] = n_targets + len(shared_args)
                shared_args.append(value)
        slots.append([slot_of[name] for name in extra.inputs])

    def joint(inputs_embeds, attention_mask, *rest):
        with torch.enable_grad():
            leaf = inputs_embeds.requires_grad_(True)
            scores = score_module(leaf, attention_mask, *rest[:n_targets])
            if cotangent_of == "scores":
                # One backward serves both graphs: gradient.onnx feeds a cotangent of ones.
                (grad,) = torch.autograd.grad(scores, leaf, grad_outputs=rest[-2])
            else:
                (grad,) = torch.autograd.grad(scores.sum(), leaf)
        outputs = [scores, grad]
        for extra, own_slots in zip(extras, slots, strict=True):
            # The same leaf: the extra graphs reuse the hidden states traced for the scores (sharing()).
            own = tuple(rest[k] for k in own_slots)
            if extra.with_targets:
                own = (*own, *rest[:n_targets])
            if extra.output == cotangent_of:
                with torch.enable_grad():
                    source, cotangent_grad = _differentiated(extra.module, leaf, attention_mask, own, rest[-2])
                outputs.append(source)
            else:
                outputs.append(extra.module(leaf, attention_mask, *own))
        if cotangent_of not in (None, "scores"):
            outputs.append(cotangent_grad)
        outputs.append(embedding(rest[-1]))
        return tuple(outputs)

    embeds = embedding(ids).detach()
    args = (embeds, mask, *targets, *shared_args)
    input_names = ["inputs_embeds", "attention_mask", *task.target_inputs, *slot_of]
    axes = {"inputs_embeds": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    axes.update(task.target_input_axes())
    for extra in extras:
        axes.update(extra.inputs)
    output_names = ["scores", "embeds_grad", *(extra.output for extra in extras)]
    if cotangent_of is not None:
        # The cotangent has the shape of the scores it multiplies: one run of their module tells it.
        source = output_names.index(cotangent_of)
        with torch.no_grad():
            if source == 0:
                probe = score_module(embeds, mask, *targets)
            else:
                extra = extras[source - 2]
                own = [shared_args[k - n_targets] for k in slots[source - 2]]
                probe = extra.module(embeds, mask, *own, *(targets if extra.with_targets else ()))
        args += (torch.randn(probe.shape, generator=torch.Generator().manual_seed(1)),)
        input_names.append(COTANGENT)
        axes[COTANGENT] = {0: "batch", 1: "targets"}
        if source != 0:
            output_names.append(COTANGENT_GRAD)
    input_names.append("input_ids")
    axes["input_ids"] = {0: "batch", 1: "sequence"}
    output_names.append("embedded_ids")
    args += (ids,)

    registry, table = _onnx_registry()
    with quiet(), sharing():
        # In a list that _convert empties: the graph module then lives only in its ExportedProgram.
        holder = [
            make_fx(joint, tracing_mode="symbolic", decomposition_table=table, _allow_non_fake_inputs=True)(*args)
        ]
    axis_names = [axes.get(name, {}) for name in input_names]
    model = _convert(holder, axis_names, input_names, output_names, registry, opset, collect=external)
    _check_dynamic(model, axes)
    import onnx_ir

    if external:
        import onnx

        joint_file = out / "joint.onnx"
        onnx_ir.save(model, joint_file, external_data=WEIGHTS_FILE)
        del model
        proto = onnx.load(str(joint_file), load_external_data=False)
        joint_file.unlink()
    else:
        proto = onnx_ir.serde.serialize_model(model)
    return Traced(proto, tuple(task.target_inputs), tuple(extras))


def _differentiated(module, leaf, attention_mask, own, cotangent):
    """(the module's scores, their vector-Jacobian product with the cotangent). A module with
    split() (the packed score) gives the per-row gradient of its head from one backward with
    ones, so that only the part from the hidden states back reads the cotangent."""
    import torch

    split = getattr(module, "split", None)
    if split is None:
        scores = module(leaf, attention_mask, *own)
        return scores, torch.autograd.grad(scores, leaf, grad_outputs=cotangent)[0]
    gathered, tail, spread = split(leaf, attention_mask, *own)
    rows = gathered.detach().requires_grad_(True)
    scores = tail(rows)
    (per_row,) = torch.autograd.grad(scores.sum(), rows)
    return scores, torch.autograd.grad(gathered, leaf, grad_outputs=per_row * spread(cotangent))[0]


def _onnx_registry():
    """The ONNX exporter's registry and the decomposition table it would apply itself."""
    from torch.onnx._internal.exporter import _decomp, _registration

    with quiet():
        registry = _registration.ONNXRegistry.from_torchlib()
    table = _decomp.create_onnx_friendly_decomposition_table(set(_decomp.get_onnx_implemented_overloads(registry)))
    return registry, table


def _convert(holder: list, axis_names, input_names, output_names, registry, opset, collect: bool):
    """The traced graph (holder[0], released once taken) as an ExportedProgram without a re-trace
    (export/program.py), then the ONNX translation without a second decomposition (the graph
    already has only what the registry implements), then the ONNX optimiser. Returns the ONNX IR
    model, without the exporter's per-node metadata (stack traces and module paths: a large part
    of a big model's graph in memory and on disk). collect: free the traced graph's memory at once
    (a garbage collection, ~0.5 s, for large models)."""
    import torch
    from torch.onnx._internal.exporter import _core, _fx_passes, _ir_passes

    exported = exported_program(holder.pop(), axis_names)
    with quiet(), contextlib.redirect_stdout(io.StringIO()):

        def translate(decompose: bool):
            # A graph with an in-place op the registry cannot translate (T5's copy_ into a mask)
            # needs the exporter's own decomposition pass, which functionalises it: checked first
            # rather than after a failed translation.
            nonlocal exported
            decompose = decompose or _mutates(exported.graph_module, registry)
            with torch.fx.experimental._config.patch(backed_size_oblivious=True):
                if decompose:
                    exported = _fx_passes.decompose_with_registry(exported, registry)
                module = exported.graph_module
                insert_type_promotion(module)
                exported._graph_module = _fx_passes.remove_assertion_nodes(module)
            return _core._exported_program_to_onnx_program(exported, registry=registry)

        # The second route decomposes the program the first one left (casts inserted, assertions
        # removed): run_decompositions re-traces it, which those changes survive.
        routes = (False, True)
        for k, decompose in enumerate(routes):
            try:
                model = translate(decompose=decompose).model
                break
            except Exception as e:
                if k == len(routes) - 1:
                    raise ExportError(f"the traced graph could not be converted to ONNX: {str(e)[:2000]}") from e
        del exported
        if collect:
            gc.collect()
        from torch.onnx._internal._lazy_import import onnxscript_apis

        if opset != model.opset_imports.get("", opset):
            model = onnxscript_apis.convert_version(model, opset)
        for node in model.graph.all_nodes():
            node.metadata_props.clear()
            for value in node.outputs:
                value.metadata_props.clear()
        model = optimize(model)
        _ir_passes.rename_inputs(model, list(input_names))
        _ir_passes.rename_outputs(model, list(output_names))
    return model


def _check_dynamic(model, axes: dict) -> None:
    """Raises ExportError where tracing fixed a size that the graph must take at any value (a
    batch, sequence or target axis traced as a constant)."""
    for value in model.graph.inputs:
        for axis, name in axes.get(value.name, {}).items():
            if isinstance(value.shape[axis], int):
                raise ExportError(
                    f"tracing fixed the {name} axis of {value.name} at {value.shape[axis]}; "
                    "the model reads that size as a constant"
                )


def _mutates(graph_module, registry) -> bool:
    """Whether the graph has an in-place (mutating) ATen op that the registry cannot translate."""
    import torch

    return any(
        isinstance(node.target, torch._ops.OpOverload)
        and node.target._schema.is_mutable
        and not registry.is_registered(node.target)
        for node in graph_module.graph.nodes
        if node.op == "call_function"
    )


def carve(traced: Traced, path: Path, inputs: list[str], outputs: list[str], from_ids: bool) -> None:
    """Writes the part of the joint graph that computes `outputs` from `inputs`. from_ids: the
    graph reads input_ids, embedded by the model's own embedding, instead of inputs_embeds."""
    import onnx

    graph = traced.proto.graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input}
    available = list(inputs)
    if from_ids:
        dims["embedded_ids"] = dims["inputs_embeds"]
        available.append("embedded_ids")
    nodes = [_rewire(node, from_ids, dims, available) for node in graph.node]
    producer = {name: k for k, node in enumerate(nodes) for name in node.output}
    needed, stack, kept = set(outputs), list(outputs), set()
    while stack:
        k = producer.get(stack.pop())
        if k is None or k in kept:
            continue
        kept.add(k)
        for name in [*nodes[k].input, *outer_names(nodes[k])]:
            if name and name not in needed:
                needed.add(name)
                stack.append(name)
    ordered = _topological([nodes[k] for k in sorted(kept)])
    initializers = [t for t in graph.initializer if t.name in needed]
    produced = {name for node in ordered for name in node.output}
    missing = needed - produced - {t.name for t in initializers} - set(inputs)
    if missing:
        raise ExportError(f"{path.name} would need inputs it does not take: {sorted(missing)}")
    by_name = {v.name: v for v in graph.input}
    outputs_by_name = {v.name: v for v in graph.output}
    carved = onnx.helper.make_graph(
        ordered,
        path.stem,
        [by_name[name] for name in inputs],
        [outputs_by_name[name] for name in outputs],
        initializer=initializers,
        value_info=[v for v in graph.value_info if v.name in needed],
    )
    model = onnx.helper.make_model(
        carved,
        opset_imports=traced.proto.opset_import,
        ir_version=traced.proto.ir_version,
        functions=traced.proto.functions,
        producer_name="attribfast",
    )
    onnx.save(model, str(path))


def _rewire(node, from_ids: bool, dims: dict, available: list[str]):
    """The node as a carved graph needs it: reading embedded_ids for inputs_embeds, and taking a
    dynamic size (Shape) from an input the carved graph has, with the same named dimensions."""
    rename = {}
    if from_ids and "inputs_embeds" in node.input:
        rename["inputs_embeds"] = "embedded_ids"
    if node.op_type == "Shape" and node.input[0] in dims and node.input[0] not in available:
        source = dims[node.input[0]]
        attributes = {a.name: a.i for a in node.attribute}
        part = slice(attributes.get("start", 0), attributes.get("end", len(source)))
        wanted = source[part]
        if all(isinstance(d, str) and d for d in wanted):
            for candidate in available:
                if candidate in dims and dims[candidate][part] == wanted:
                    rename[node.input[0]] = candidate
                    break
    if not rename:
        return node
    node = _copy(node)
    for k, name in enumerate(node.input):
        node.input[k] = rename.get(name, name)
    return node


def _topological(nodes: list) -> list:
    """Nodes ordered so that each comes after the producers of its inputs (stable otherwise)."""
    producer = {name: k for k, node in enumerate(nodes) for name in node.output}
    done, order = set(), []
    for root in range(len(nodes)):
        stack = [(root, False)]
        while stack:
            k, expanded = stack.pop()
            if k in done:
                continue
            if expanded:
                done.add(k)
                order.append(nodes[k])
                continue
            stack.append((k, True))
            for name in reversed([*nodes[k].input, *outer_names(nodes[k])]):
                j = producer.get(name)
                if j is not None and j not in done:
                    stack.append((j, False))
    return order


def _copy(node):
    import onnx

    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def outer_names(node) -> set:
    """Names a node's subgraphs (If / Loop bodies) read from the enclosing graph."""
    names = set()
    for attribute in node.attribute:
        for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
            for inner in sub.node:
                names.update(name for name in inner.input if name)
                names.update(outer_names(inner))
    return names
