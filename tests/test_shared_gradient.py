"""The shared-forward gradient graph: every target's gradient from one forward per point equals the
per-target rows (pack_targets=False) for causal LMs (packed continuations), classifiers and
similarity; a graph that disagrees is dropped at export, and bundles without it keep the old plan."""

import json
import shutil
import warnings

import attribfast
import numpy as np
import onnx
import pytest
from attribfast.bundle import MANIFEST
from attribfast.errors import ConvergenceWarning
from attribfast.export.shared import SHARED, SHARED_GRADS, shared_cases, validate_shared
from attribfast.export.validation import ExportTolerance
from attribfast.tasks import get_task
from attribfast.tasks.shared_gradient import packed_gradient_layout

PROMPT = "the quick fox jumps over the lazy dog"
METHODS = [
    attribfast.Saliency(),
    attribfast.InputXGradient(aggregation="l2"),
    attribfast.IntegratedGradients(n_steps=8, tolerance=None),
    attribfast.IntegratedGradients(n_steps=4, method="riemann_trapezoid"),  # adaptive: targets leave early
    attribfast.NoiseTunnel("integrated_gradients", nt_samples=2, stdevs=0.01, seed=1),
]
# One token, several, and one longer than the prompt (in tokens).
CONTINUATIONS = [" a", " no it is not", " maybe so", " a very long continuation that goes on and on"]
TOLERANCE = 1e-5


def compare(model, text, targets, method):
    shared = model.attribute(text, targets=targets, method=method)
    alone = model.attribute(text, targets=targets, method=method, pack_targets=False)
    scale = max(1.0, float(np.abs(alone.target_scores).max()))
    atol = max(TOLERANCE, 4 * np.finfo(np.float32).eps * scale)
    np.testing.assert_allclose(shared.matrix, alone.matrix, atol=atol, rtol=0)
    np.testing.assert_allclose(shared.target_scores, alone.target_scores, atol=atol, rtol=0)
    if shared.steps is not None:
        assert shared.steps.tolist() == alone.steps.tolist()
    return shared


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_lm_continuations(bundles, name):
    model = attribfast.load(bundles[name])
    assert SHARED in model._spec.graphs, model._spec.manifest["shared_gradient"]
    for method in METHODS:
        compare(model, PROMPT, CONTINUATIONS, method)
    assert SHARED in model._engine._sessions  # the shared graph ran


def test_causal_lm_edge_cases(bundles):
    model = attribfast.load(bundles["gpt2"])
    method = attribfast.IntegratedGradients(n_steps=4, tolerance=None)
    compare(model, PROMPT, [" a", " the", " fox"], method)  # single tokens: a pad-token suffix
    compare(model, "the", [" quick brown fox jumps", " a"], method)  # continuations longer than the prompt
    many = [f" {word}" for word in "the quick brown fox jumps over lazy dog small model tiny corpus".split()] * 3
    compare(model, PROMPT, many, attribfast.Saliency())  # 36 continuations: several packed rows
    one = model.attribute(PROMPT, targets=[" a"], method=method)  # a single target: the per-target graph
    assert one.matrix.shape == (len(one.tokens), 1)


def test_adaptive_rounds_after_the_shared_one(bundles):
    """Adaptive IG: the first round on the shared graph, the unconverged targets' later rounds on
    the per-target graph; the same deltas, steps and attributions as the per-target plan."""
    model = attribfast.load(bundles["gpt2"])
    method = attribfast.IntegratedGradients(n_steps=2, method="riemann_trapezoid", tolerance=1e-3, max_steps=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # some stop at max_steps
        result = compare(model, PROMPT, CONTINUATIONS, method)
    assert max(result.steps) > 2  # some targets ran later rounds


def test_classifier_classes(bundles):
    model = attribfast.load(bundles["bert"])
    labels = list(model.labels)
    for method in METHODS:
        compare(model, PROMPT, [labels[1], labels[0], labels[1]], method)
    assert SHARED in model._engine._sessions


def test_similarity_references(minilm_bundle):
    model = attribfast.load(minilm_bundle)
    references = ["a fox jumps", "the weather is nice today", "a lazy dog sleeps", "stock markets fell"]
    compare(model, PROMPT, references, attribfast.IntegratedGradients(n_steps=8, tolerance=None))
    compare(model, PROMPT, references, attribfast.InputXGradient())
    assert SHARED in model._engine._sessions


def test_packed_gradient_layout_by_hand():
    layout = packed_gradient_layout(4, [np.array([5, 6, 7]), np.array([8]), np.array([9, 10])], pad_id=0)
    assert layout.suffixes == [[5, 6, 9]]
    assert layout.target_group == [0, 0, 0] and layout.target_slot == [0, 1, 2]
    single = packed_gradient_layout(4, [np.array([5]), np.array([8])], pad_id=3)
    # Nothing to read after the prompt: one pad token in a segment no query shares.
    assert single.suffixes == [[3]]
    assert single.extras["suffix_segments"].tolist() == [[3]]
    assert single.extras["score_positions"][0].tolist() == [[3], [3]]


def test_manifest_and_graph(bundles):
    manifest = json.loads((bundles["gpt2"] / MANIFEST).read_text())
    note = manifest["shared_gradient"]
    assert note["available"] and note["gradient_error"] <= ExportTolerance().gradients
    graph = manifest["graphs"][SHARED]
    assert graph["outputs"] == ["packed_scores", SHARED_GRADS]
    assert "score_cotangent" not in graph["inputs"]
    ops = {node.op_type for node in onnx.load(str(bundles["gpt2"] / graph["file"])).graph.node}
    assert "Loop" in ops  # one forward, the backward looped over the targets


def test_wrong_graph_is_dropped_and_old_plan_kept(bundles, torch_models, tmp_path):
    """A shared graph that returns wrong gradients fails its check; a bundle without the graph
    runs a row per target."""
    bundle = tmp_path / "bert"
    shutil.copytree(bundles["bert"], bundle)
    path = bundle / f"{SHARED}.onnx"
    model = onnx.load(str(path))
    graph = model.graph
    # Scale the gradients by 1.01: a 1% error, beyond the 1e-3 relative tolerance.
    graph.node.append(onnx.helper.make_node("Mul", [SHARED_GRADS, "wrong_scale"], ["wrong_grads"]))
    graph.initializer.append(onnx.numpy_helper.from_array(np.array(1.01, np.float32), "wrong_scale"))
    graph.output[1].name = "wrong_grads"
    onnx.save(model, str(path))
    task = get_task("sequence-classification")
    cases = shared_cases(task, torch_models["bert"], "scores", 64)
    note = validate_shared(cases, bundle, ExportTolerance())
    assert not note["available"] and "differs from the per-target gradients" in note["reason"]
    assert 9e-3 < note["gradient_error"] < 1.1e-2

    manifest = json.loads((bundle / MANIFEST).read_text())
    del manifest["graphs"][SHARED]
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    path.unlink()
    old = attribfast.load(bundle, verify=False)
    labels = list(old.labels)
    result = old.attribute(PROMPT, targets=[labels[0], labels[1]], method="saliency")
    expected = attribfast.load(bundles["bert"]).attribute(PROMPT, targets=[labels[0], labels[1]], method="saliency")
    np.testing.assert_allclose(result.matrix, expected.matrix, atol=TOLERANCE, rtol=0)
    assert SHARED not in old._engine._sessions



def test_core_checks_the_groups(bundles):
    """Targets must name a row group and a score column the shared graph returns."""
    from attribfast import _core
    from attribfast.errors import InvalidInputError, RuntimeBackendError

    engine = attribfast.load(bundles["bert"])._engine

    def run(groups, slots, classes=2):
        problem = _core.GradientProblem()
        problem.ids = [1, 2, 3]
        problem.suffixes = [[]]
        problem.extras = [_core.ExtraInput("target_classes", np.zeros((1, classes), np.int64))]
        problem.target_group, problem.target_slot = groups, slots
        problem.score_output, problem.gradient_output = "scores", SHARED_GRADS
        session = engine.session(SHARED)._session
        return _core.gradient_at_input(session, problem, engine.embedding_matrix(), "saliency", "sum",
                                       _core.BatchPolicy(), None)

    assert run([0, 0], [1, 0]).matrix.shape == (3, 2)
    with pytest.raises(InvalidInputError, match="names no row group"):
        run([0, 1], [0, 1])
    with pytest.raises(InvalidInputError, match="one entry per target"):
        run([0, 0], [0])
    with pytest.raises(RuntimeBackendError, match="returned 2 score columns"):
        run([0, 0], [0, 2])
