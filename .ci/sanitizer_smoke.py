"""Python smoke under ASan/UBSan (run by .ci/sanitize with the sanitized extension first on the path).

Every method once on the shipped model, issue 17's repros, which must raise typed errors, and
non-finite scores, whose messages name the row: a heap overflow or undefined behaviour anywhere in
the core or the bindings aborts the process. Argument: the folder .ci/sanitize wrote the test
graphs to.
"""

import os
import sys

import attribfast
import numpy as np
from attribfast import _core
from attribfast.demo import shipped_bundle
from attribfast.errors import AttribfastError, NonFiniteScoreError

MODELS = sys.argv[1]  # log_score.onnx and singular_gradient.onnx, written by .ci/sanitize

maps = open("/proc/self/maps").read()
if "libasan" not in maps or "libubsan" not in maps or "build/asan/site/attribfast" not in attribfast.__file__:
    raise SystemExit("the sanitized extension is not the one loaded: " + attribfast.__file__)

model = attribfast.load(shipped_bundle())
text, targets = "12+34=", ["46", "47"]
for method in (
    attribfast.Occlusion(window=2, stride=2),
    attribfast.FeatureAblation(),
    attribfast.ShapleySampling(n_permutations=4, seed=1),
    attribfast.KernelShap(n_samples=30, seed=1),
    attribfast.Lime(n_samples=30, seed=1),
    attribfast.IntegratedGradients(n_steps=16, tolerance=1e-3, max_steps=64),
    attribfast.Saliency(),
    attribfast.InputXGradient(aggregation="l2"),
):
    result = model.attribute(text, targets=targets, method=method, batch_size=3)
    assert np.all(np.isfinite(result.matrix)), method
model.attribute(text, generate=2, method="occlusion")

# Each config is made inside the try: some are refused when they are made, others when run.
repros = [
    ("1234567890+", lambda: attribfast.Occlusion(stride=8)),
    ("1234", lambda: attribfast.Occlusion(window=1, stride=2)),
    ("123456", lambda: attribfast.FeatureAblation(groups=(2**63 - 1, 0, 0, 0, 0, 0))),
    ("123456", lambda: attribfast.FeatureAblation(groups=(2**40, 0, 0, 0, 0, 0))),
    ("1234", lambda: attribfast.IntegratedGradients(n_steps=2**32 + 4)),
    ("1234", lambda: attribfast.KernelShap(seed=-1)),
    ("1234", lambda: attribfast.Lime(seed=2**64)),
    ("1234", lambda: attribfast.KernelShap(ridge=float("nan"))),
    ("1234", lambda: attribfast.IntegratedGradients(baseline=np.full((4, model._spec.hidden_size), 1e30, np.float32))),
]
for text, make in repros:
    try:
        model.attribute(text, targets=["1"], method=make())
    except AttribfastError:
        continue
    raise SystemExit(f"no typed error for {text!r} with {make()}")

# Non-finite scores, whose messages name the variant (engine) and the point on the path (gradient).
own = attribfast.AttributionModel.from_onnx(os.path.join(MODELS, "log_score.onnx"), pad_id=0)
for method in ("occlusion", attribfast.ShapleySampling(n_permutations=2), attribfast.FeatureAblation()):
    try:
        own.attribute([1, 2, 1], targets=[0, 1], method=method)
        raise SystemExit(f"no NonFiniteScoreError for {method}")
    except NonFiniteScoreError as error:
        assert "replaced" in str(error), error
problem = _core.GradientProblem()
problem.ids, problem.suffixes = [1, 2], [[]]
embeddings = np.array([[-1, -1], [1, 1], [2, 0]], np.float32)
session = attribfast.Session(os.path.join(MODELS, "singular_gradient.onnx"))._session
try:
    _core.integrated_gradients(
        session, problem, embeddings, embeddings[[0, 0]], "riemann_left", 2, 0.0, 0.0, 2, "sum",
        _core.BatchPolicy(), None,
    )
    raise SystemExit("no NonFiniteScoreError for the singular gradient")
except NonFiniteScoreError as error:
    assert "at alpha 0.5" in str(error), error
print(f"sanitizer smoke: 8 methods, {len(repros)} repros and the non-finite messages clean")
