"""The traced graph handed to the ONNX translator without a torch.export re-trace, and the type
promotion pass without its re-execution (export/program.py); the export's release of the torch
model before validation (export/__init__.py, export/onnx_optimizer.py, export/sessions.py); the
garbage collector's settings during an export (export/load.py)."""

import gc
import json
import weakref

import numpy as np
import onnx_ir
import onnxruntime
import pytest
import torch
from attribfast.export import load, program, sessions
from attribfast.export.trace import _onnx_registry
from torch.export.graph_signature import InputKind
from torch.fx.experimental.proxy_tensor import make_fx
from torch.onnx._internal.exporter import _core, _fx_passes

torch.manual_seed(0)
LINEAR = torch.nn.Linear(4, 3)
SCALE = torch.tensor([1.0, 2.0, 3.0])  # a plain tensor: a constant, not a parameter


def scores(x, mask):
    hidden = LINEAR(x) * SCALE
    # Sizes read from an intermediate tensor: make_fx records them on it, torch.export on x.
    flat = hidden.reshape(hidden.shape[0] * hidden.shape[1], 3).sum(-1)
    return (flat.reshape(hidden.shape[0], hidden.shape[1]) * mask,)


def sym_size_sources(graph_module) -> list:
    return [node.args[0].op for node in graph_module.graph.nodes if node.target is torch.ops.aten.sym_size.int]


def test_a_traced_graph_converts_without_a_retrace_and_reads_its_sizes_from_its_inputs():
    registry, table = _onnx_registry()
    x, mask = torch.randn(2, 5, 4), torch.ones(2, 5)
    traced = make_fx(scores, tracing_mode="symbolic", decomposition_table=table, _allow_non_fake_inputs=True)(x, mask)
    assert "call_function" in sym_size_sources(traced), "the example must read a size from an intermediate"

    exported = program.exported_program(traced, [{0: "batch", 1: "sequence"}] * 2)
    specs = exported.graph_signature.input_specs
    assert [spec.kind.name for spec in specs] == ["PARAMETER", "PARAMETER", "CONSTANT_TENSOR", "USER_INPUT",
                                                  "USER_INPUT"]
    lifted = {**exported.state_dict, **exported.constants}
    assert {id(t) for t in lifted.values()} == {id(LINEAR.weight), id(LINEAR.bias), id(SCALE)}, "no copies"
    assert set(sym_size_sources(exported.graph_module)) == {"placeholder"}
    assert [spec.target for spec in specs if spec.kind == InputKind.USER_INPUT] == [None, None]

    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        program.insert_type_promotion(exported.graph_module)
    model = _core._exported_program_to_onnx_program(exported, registry=registry).model
    session = onnxruntime.InferenceSession(
        onnx_ir.serde.serialize_model(model).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in session.get_inputs()]
    for batch, length in ((3, 7), (1, 2)):  # other sizes than the traced ones
        x, mask = torch.randn(batch, length, 4), (torch.rand(batch, length) > 0.3).float()
        (got,) = session.run(None, dict(zip(names, (x.numpy(), mask.numpy()), strict=True)))
        np.testing.assert_allclose(got, scores(x, mask)[0].detach().numpy(), rtol=1e-6, atol=1e-6)


def leading(x, y):
    column = y.reshape(-1, 1) * 2
    return (x.sum(0)[: column.shape[0]],)  # y's length, read from an intermediate (the reshape)


def test_a_size_two_named_axes_share_stays_where_tracing_read_it():
    # x's width and y's length are both 3 in the example, so tracing gives them one symbol: reading
    # it from x instead of the intermediate would tie y's length to x's width.
    example = (torch.randn(2, 3), torch.randn(3))
    for names, source in (([{1: "width"}, {0: "length"}], "call_function"), ([{1: "n"}, {0: "n"}], "placeholder")):
        traced = make_fx(leading, tracing_mode="symbolic")(*example)
        assert sym_size_sources(traced) == ["call_function"]
        exported = program.exported_program(traced, names)
        assert sym_size_sources(exported.graph_module) == [source], names


def mixed(x, ids):
    # Implicit promotions: float + int tensor, int / int (true division), a comparison with an int.
    return x + ids, ids / 2, (ids > x).float() * 3


def test_type_promotion_without_re_execution_equals_the_exporters_own_pass():
    example = (torch.randn(2, 3), torch.arange(6).reshape(2, 3))
    theirs = make_fx(mixed, tracing_mode="symbolic")(*example)
    ours = make_fx(mixed, tracing_mode="symbolic")(*example)
    _fx_passes.insert_type_promotion_nodes(theirs)
    program.insert_type_promotion(ours)
    ours.recompile()
    theirs.recompile()
    assert ours.code == theirs.code
    assert "convert_element_type" in ours.code, "the pass must have had casts to insert"
    for a, b in zip(ours.graph.nodes, theirs.graph.nodes, strict=True):
        val_a, val_b = a.meta.get("val"), b.meta.get("val")
        if isinstance(val_b, torch.Tensor):
            assert val_a.dtype == val_b.dtype and str(val_a.shape) == str(val_b.shape), a.name


def test_the_torch_model_is_released_before_validation_opens_a_session(hf_dirs, tmp_path, monkeypatch):
    import attribfast.export as export_module

    held = {}
    load = export_module.load_model

    def remembered(*args, **kwargs):
        model, tokenizer = load(*args, **kwargs)
        held["weight"] = weakref.ref(model.get_input_embeddings().weight)
        return model, tokenizer

    alive_at_first_session = []
    open_session = sessions.validation_session

    def checked(path):
        if not alive_at_first_session:
            alive_at_first_session.append(held["weight"]() is not None)
        return open_session(path)

    monkeypatch.setattr(export_module, "load_model", remembered)
    monkeypatch.setattr(sessions, "validation_session", checked)
    # Every extra graph (reuse, packed, shared gradient): each closes over the model. External data:
    # the layout of large models, whose release this is for (small ones skip the collection).
    out = export_module.export_model(hf_dirs["gpt2"], task="causal-lm", out_dir=tmp_path / "b", external_data=True)
    manifest = json.loads((out / "attribfast.json").read_text())
    assert manifest["packing"]["available"] and manifest["prefix_reuse"]["available"]
    assert alive_at_first_session == [False], "the weights were still referenced when validation began"


def test_the_collector_is_set_for_the_export_and_restored_after(monkeypatch):
    seen = {}

    def export():
        seen.update(frozen=gc.get_freeze_count(), thresholds=gc.get_threshold(), enabled=gc.isenabled())
        raise ValueError("stops here")

    thresholds = gc.get_threshold()
    enabled_during_imports = []
    real = load.torch_or_error
    monkeypatch.setattr(load, "torch_or_error", lambda: enabled_during_imports.append(gc.isenabled()) or real())
    with pytest.raises(ValueError, match="stops here"):
        load.imports_frozen(export)()
    assert enabled_during_imports == [False], "the imports run without automatic collections"
    assert seen["frozen"] > 10_000 and seen["enabled"]
    assert seen["thresholds"] == (*thresholds[:2], load.FULL_COLLECTION_EVERY)
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0 and gc.isenabled()
