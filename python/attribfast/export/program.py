"""The traced joint graph as the ExportedProgram that torch's ONNX translator reads, built directly.

torch.export of the make_fx graph re-traced every node symbolically only to hand the translator
the same nodes with the weights lifted to inputs: a third of a tiny model's tracing time
(docs/benchmarks.md, "Export time"). Here make_fx's weight constants (get_attr nodes) become
lifted-constant placeholders, and each size the graph reads from an intermediate tensor is read
from a graph input that has that size, as in torch.export's graph, so the ONNX graph takes its
dynamic sizes from its inputs. Every graph is still validated against torch afterwards.
"""

from __future__ import annotations


def exported_program(graph_module, axis_names: list[dict]):
    """An ExportedProgram of make_fx's graph module (changed in place): user inputs are its
    placeholders, its parameters and tensor constants become lifted inputs, its outputs user
    outputs. axis_names: for each placeholder, {axis: name} of its dynamic axes."""
    import torch
    import torch.utils._pytree as pytree
    from torch._export.verifier import TrainingIRVerifier
    from torch.export import ExportedProgram
    from torch.export.exported_program import ModuleCallEntry, ModuleCallSignature
    from torch.export.graph_signature import (
        ExportGraphSignature,
        InputKind,
        InputSpec,
        OutputKind,
        OutputSpec,
        TensorArgument,
    )

    graph = graph_module.graph
    inputs = [node for node in graph.nodes if node.op == "placeholder"]
    fake_mode = next(node.meta["val"].fake_mode for node in inputs if hasattr(node.meta.get("val"), "fake_mode"))
    _sizes_from_inputs(graph, inputs, axis_names)

    state: dict = {}
    constants: dict = {}
    lifted: dict = {}
    specs = []
    for node in list(graph.nodes):
        if node.op != "get_attr" or not isinstance(value := getattr(graph_module, node.target), torch.Tensor):
            continue
        if node.target not in lifted:
            with graph.inserting_before(inputs[0]):
                placeholder = graph.placeholder(f"c_{node.target}")
            placeholder.meta["val"] = fake_mode.from_tensor(value, static_shapes=True)
            lifted[node.target] = placeholder
            # make_fx keeps the model's parameters as parameters and other tensors as constants.
            kind = InputKind.PARAMETER if isinstance(value, torch.nn.Parameter) else InputKind.CONSTANT_TENSOR
            (state if kind == InputKind.PARAMETER else constants)[node.target] = value
            specs.append(InputSpec(kind, TensorArgument(placeholder.name), node.target))
        node.replace_all_uses_with(lifted[node.target])
        graph.erase_node(node)
    specs += [InputSpec(InputKind.USER_INPUT, TensorArgument(node.name), None) for node in inputs]
    outputs = pytree.tree_leaves(next(node for node in graph.nodes if node.op == "output").args[0])
    signature = ExportGraphSignature(
        input_specs=specs,
        output_specs=[OutputSpec(OutputKind.USER_OUTPUT, TensorArgument(node.name), None) for node in outputs],
    )
    call = ModuleCallSignature(
        inputs=[],
        outputs=[],
        in_spec=pytree.tree_structure((tuple(range(len(inputs))), {})),
        out_spec=pytree.tree_structure(tuple(outputs)),
    )
    graph.lint()
    graph_module.recompile()
    return ExportedProgram(
        root=graph_module,
        graph=graph,
        graph_signature=signature,
        state_dict=state,
        range_constraints={},
        module_call_graph=[ModuleCallEntry("", call)],
        constants=constants,
        # As torch.export's own programs: in-place ops allowed (the translator decomposes them).
        verifiers=[TrainingIRVerifier],
    )


def _sizes_from_inputs(graph, inputs, axis_names) -> None:
    """Rewires each sym_size node whose size is an input's dimension to read the first input
    with it (torch.export's graph reads its sizes so). A size that tracing gave to two different
    axes (equal example sizes share a symbol: two names, or a named axis and an unnamed one) is
    left where make_fx read it, so that no read moves between them."""
    import torch

    source: dict = {}
    names: dict = {}
    for node, named in zip(inputs, axis_names, strict=True):
        for axis, size in enumerate(getattr(node.meta.get("val"), "shape", ())):
            if isinstance(size, torch.SymInt):
                source.setdefault(size.node.expr, (node, axis))
                names.setdefault(size.node.expr, set()).add(named.get(axis))
    canonical: dict = {}
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.sym_size.int:
            continue
        size = node.meta.get("val")
        expr = size.node.expr if isinstance(size, torch.SymInt) else None
        if expr not in source or len(names[expr]) > 1 or tuple(node.args) == source[expr]:
            continue
        where = source[expr]
        if where not in canonical:
            with graph.inserting_after(inputs[-1]):
                canonical[where] = graph.call_function(torch.ops.aten.sym_size.int, where)
            canonical[where].meta.update(node.meta)
        node.replace_all_uses_with(canonical[where])
        graph.erase_node(node)


def insert_type_promotion(graph_module) -> None:
    """The ONNX exporter's type promotion pass (explicit casts where torch promotes implicitly),
    without its fake re-execution of every node: a node the pass leaves alone keeps the value
    tracing recorded for it (node.meta["val"]); a node it changes, and each cast it inserts, is
    re-executed by the pass itself as before."""
    import torch
    from torch.onnx._internal.fx import passes
    from torch.onnx._internal.fx.passes import type_promotion

    class Interpreter(type_promotion._TypePromotionInterpreter):
        def run_node(self, node):
            with self._set_current_node(node):
                if rule := type_promotion.get_type_promotion_rule(node, self.type_promotion_table):
                    self._maybe_promote_node(node, rule)
            if node.op == "call_function" and "val" in node.meta:
                return node.meta["val"]
            return torch.fx.Interpreter.run_node(self, node)

    for module in graph_module.modules():
        if isinstance(module, torch.fx.GraphModule):
            transform = passes.InsertTypePromotion(module)
            transform.interpreter = Interpreter(module, transform.interpreter.type_promotion_table)
            transform.run()
