"""Faithfulness metrics (attribfast.faithfulness): the pure math exactly, the figures against a slow
reference written here from the published definitions (one onnxruntime forward per row), analytic
orderings, typed errors, and the figures' life in results (save/load, tables, HTML, CLI)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import attribfast
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from attribfast.errors import InvalidInputError, ResultMismatchError, TargetError
from attribfast.faithfulness import math as fm
from onnx_models import interaction_score_model, linear_score_model

IDS = [3, 5, 7, 9, 11, 2, 4, 6, 8, 12, 14]
PROMPT = "the quick brown fox jumps"
CONTINUATIONS = [" over the", " is"]


# Pure math ------------------------------------------------------------------------------------------


def test_removal_counts_are_symmetric_and_exact_on_request():
    assert fm.removal_counts(4, None).tolist() == [0, 1, 2, 3, 4]
    assert fm.removal_counts(5, 20).tolist() == [0, 1, 2, 3, 4, 5]  # more points than features: every count
    counts = fm.removal_counts(64, 20)
    # round(j 64 / 20) for j <= 10 (3.2 j), mirrored above.
    assert counts.tolist() == [0, 3, 6, 10, 13, 16, 19, 22, 26, 29, 32, 35, 38, 42, 45, 48, 51, 54, 58, 61, 64]
    # The default: 12 steps (5.33 j) plus ERASER's bin counts 1, 4, 7, 13, 32 and their mirrors.
    counts = fm.removal_counts(64, 12, fm.bin_counts(64, fm.ERASER_BINS))
    assert counts.tolist() == [0, 1, 4, 5, 7, 11, 13, 16, 21, 27, 32, 37, 43, 48, 51, 53, 57, 59, 60, 63, 64]
    for n in (7, 10, 33, 101, 1000):
        c = set(fm.removal_counts(n, 6, [1, 2]).tolist())
        assert c == {n - k for k in c} and {0, 1, 2, n} <= c and len(c) <= 2 * (6 // 2 + 1 + 2)


def test_bin_counts_follow_eraser_and_drop_repeats():
    assert fm.bin_counts(64, fm.ERASER_BINS).tolist() == [1, 4, 7, 13, 32]
    assert fm.bin_counts(3, fm.ERASER_BINS).tolist() == [1, 2]  # 1%, 5%, 10%, 20% are all 1 feature
    assert fm.bin_counts(30, (10,)).tolist() == [3]
    assert fm.bin_counts(10, (100,)).tolist() == [10]


@pytest.mark.parametrize("bins", [(0,), (100.5,), (-5, 10), (), (True,), ("x",), None])
def test_bins_outside_the_range_are_refused(bins):
    with pytest.raises(InvalidInputError):
        attribfast.Faithfulness(bins=bins)


def test_curve_area_aopc_and_normalisation():
    assert fm.curve_area(np.array([0, 0.5, 1]), np.array([2.0, 1.0, 0.0])) == pytest.approx(1.0)
    assert fm.curve_area(np.array([0, 0.25, 1]), np.array([1.0, 1.0, 3.0])) == pytest.approx(0.25 + 1.5)
    assert fm.aopc(2.0, np.array([1.0, 0.0, -1.0])) == pytest.approx(2.0)
    assert fm.normalized(3.0, [1.0, 3.0, 2.0], higher_is_better=True) == 1.0
    assert fm.normalized(2.0, [1.0, 3.0, 2.0], higher_is_better=True) == 0.5
    assert fm.normalized(1.5, [1.0, 3.0, 1.5], higher_is_better=False) == 0.75
    assert fm.normalized(1.0, [1.0, 1.0], higher_is_better=True) == 1.0


def test_spearman_equals_pandas_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 4, 12).astype(float)
        b = rng.standard_normal(12)
        expected = pd.Series(a).corr(pd.Series(b), method="spearman")
        assert fm.spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert fm.spearman(np.ones(5), np.arange(5)) == 0.0
    assert fm.ranking(np.array([1.0, 3.0, 3.0, -1.0])).tolist() == [1, 2, 0, 3]


# The slow reference -------------------------------------------------------------------------------


def reference(score, ids, relevance, groups, baseline, counts, bins):
    """Every figure from its definition: features ranked by summed relevance (ties by position),
    one forward per variant through `score(ids) -> float`."""
    ids = np.asarray(ids)
    features = sorted({g for g in groups if g >= 0}, key=lambda g: groups.index(g))
    m = len(features)
    rel = {f: sum(relevance[i] for i, g in enumerate(groups) if g == f) for f in features}
    order = sorted(features, key=lambda f: (-rel[f], features.index(f)))

    def without(removed):
        x = ids.copy()
        for i, g in enumerate(groups):
            if g in set(removed):
                x[i] = baseline
        return score(x)

    clean = score(ids)
    x = [k / m for k in counts]
    curves = {
        "deletion": [without(order[:k]) for k in counts],
        "deletion_lerf": [without(order[m - k :]) for k in counts],
        "insertion": [without(order[k:]) for k in counts],
        "insertion_lerf": [without(order[: m - k]) for k in counts],
    }
    out = {f"{name}_area": float(np.trapezoid(c, x)) for name, c in curves.items()}
    sizes = []
    for b in bins:
        k = min(max(math.ceil(b * m / 100 - 1e-9), 1), m)
        if k not in sizes:
            sizes.append(k)

    def aopcs(ordering):
        comp = np.mean([clean - without(ordering[:k]) for k in sizes])
        suff = np.mean([clean - without(ordering[k:]) for k in sizes])
        return comp, suff

    out["comprehensiveness"], out["sufficiency"] = aopcs(order)
    loo = [clean - without([f]) for f in features]
    loo_order = [features[i] for i in sorted(range(m), key=lambda i: (-loo[i], i))]
    candidates = [aopcs(o) for o in (order, order[::-1], loo_order, loo_order[::-1])]
    comps, suffs = [c for c, _ in candidates], [s for _, s in candidates]
    out["normalized_comprehensiveness"] = (out["comprehensiveness"] - min(comps)) / (max(comps) - min(comps))
    out["normalized_sufficiency"] = (max(suffs) - out["sufficiency"]) / (max(suffs) - min(suffs))
    out["loo_spearman"] = pd.Series([rel[f] for f in features]).corr(pd.Series(loo), method="spearman")
    return out, curves


@pytest.fixture(scope="module")
def interaction(tmp_path_factory):
    table = np.random.default_rng(1).standard_normal((16, 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("faith") / "interaction.onnx"
    path.write_bytes(interaction_score_model(table, 0.4))
    model = attribfast.AttributionModel.from_onnx(path, pad_id=0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def score(ids, target):
        ids = np.asarray(ids, np.int64)[None]
        return float(session.run(["scores"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0, target])

    return model, score


@pytest.mark.parametrize("points", [None, 4])
@pytest.mark.parametrize("groups", ["token", (0, 0, 1, 2, 2, -1, 3, 4, 4, 5, 6)])
def test_figures_equal_the_slow_reference(interaction, points, groups):
    model, score = interaction
    ids = IDS
    result = model.attribute(ids, targets=[0, 2], method="occlusion")
    # Relevance with ties and signs that are not the occlusion's, so orderings differ.
    rng = np.random.default_rng(7)
    matrix = np.round(rng.standard_normal(result.matrix.shape), 1).astype(np.float32)
    result = replace(result, matrix=matrix)
    evaluated = model.evaluate(result, metrics="all", points=points, groups=groups)
    figures = evaluated.faithfulness
    group_list = list(range(len(ids))) if groups == "token" else list(groups)
    m = len({g for g in group_list if g >= 0})
    counts = fm.removal_counts(m, points, fm.bin_counts(m, fm.ERASER_BINS))
    assert figures["curves"]["x"] == pytest.approx(counts / m)
    for column, target in enumerate((0, 2)):
        expected, curves = reference(
            lambda x, t=target: score(x, t), ids, matrix[:, column], group_list, 0, counts.tolist(), fm.ERASER_BINS
        )
        for name, value in expected.items():
            assert figures["values"][name][column] == pytest.approx(value, abs=1e-6), name
        for name, curve in curves.items():
            np.testing.assert_allclose(figures["curves"][name][column], curve, atol=1e-6, err_msg=name)
        assert figures["clean_scores"][column] == pytest.approx(score(ids, target), abs=1e-6)


def test_causal_lm_targets_equal_the_reference_through_the_forward_graph(bundles):
    """Continuation targets run as segments of their own (with prefix reuse): each row read through
    the bundle's forward graph, teacher-forced, as the graph's contract defines the score."""
    model = attribfast.load(bundles["gpt2"])
    result = model.attribute(PROMPT, targets=CONTINUATIONS, method="occlusion")
    evaluated = model.evaluate(result, metrics="all", points=5)
    tokenizer = model._spec.tokenizer
    ids = result.token_ids
    session = ort.InferenceSession(str(model._spec.graphs["forward"]), providers=["CPUExecutionProvider"])
    baseline = model._engine.baseline_id(None)

    def score(variant, continuation):
        piece = np.asarray(tokenizer.encode(continuation).ids, np.int64)
        row = np.concatenate([variant, piece[:-1]])[None]
        n = len(variant)
        feeds = {
            "input_ids": row,
            "attention_mask": np.ones_like(row),
            "score_positions": (n - 1 + np.arange(piece.size))[None, None],
            "score_ids": piece[None, None],
            "score_weights": np.ones((1, 1, piece.size), np.float32),
        }
        return float(session.run(["scores"], feeds)[0][0, 0])

    m = len(ids)
    counts = fm.removal_counts(m, 5, fm.bin_counts(m, fm.ERASER_BINS)).tolist()
    for column, continuation in enumerate(CONTINUATIONS):
        expected, _ = reference(
            lambda x, c=continuation: score(x, c), ids, result.matrix[:, column], list(range(m)), baseline, counts,
            fm.ERASER_BINS,
        )
        for name, value in expected.items():
            assert evaluated.faithfulness["values"][name][column] == pytest.approx(value, abs=1e-5), name
    words = model.evaluate(result, groups="word").faithfulness
    assert words["features"] == len(PROMPT.split()) and words["parameters"]["groups"] == "word"
    # Each target's curve rows run with its own continuation only: LOO (m per target), 2 per count
    # on the curves, 4 orderings' bins for the normalised AOPC, the clean rows.
    per_target = m + 2 * len(counts) + 2 * 4 * len(fm.bin_counts(m, fm.ERASER_BINS))
    assert evaluated.faithfulness["rows_run"] <= 2 * per_target + 2


# Analytic orderings ----------------------------------------------------------------------------------


def test_exact_ordering_gives_the_best_deletion_curve(tmp_path):
    """Additive model: occlusion is exact, so removing by it drops the score fastest at every step."""
    table = np.random.default_rng(3).standard_normal((16, 2)).astype(np.float32)
    (tmp_path / "linear.onnx").write_bytes(linear_score_model(table))
    model = attribfast.AttributionModel.from_onnx(tmp_path / "linear.onnx", pad_id=0)
    exact = model.attribute(IDS, targets=[0, 1], method="occlusion")
    np.testing.assert_allclose(exact.matrix[:, 0], table[IDS, 0] - table[0, 0], atol=1e-5)
    params = {"metrics": "all", "points": None}
    best = model.evaluate(exact, **params).faithfulness
    rng = np.random.default_rng(0)
    for _ in range(4):
        shuffled = replace(exact, matrix=exact.matrix[rng.permutation(len(IDS))])
        worse = model.evaluate(shuffled, **params).faithfulness
        for column in range(2):
            deletion_best = np.array(best["curves"]["deletion"][column])
            assert np.all(np.array(worse["curves"]["deletion"][column]) >= deletion_best - 1e-5)
            assert worse["values"]["deletion_area"][column] > best["values"]["deletion_area"][column] + 1e-4
            assert worse["values"]["comprehensiveness"][column] <= best["values"]["comprehensiveness"][column] + 1e-5
            assert worse["values"]["loo_spearman"][column] < 1.0
    for column in range(2):
        assert best["values"]["loo_spearman"][column] == pytest.approx(1.0)
        assert best["values"]["normalized_comprehensiveness"][column] == pytest.approx(1.0)
        # Mirror identities of the definitions: insertion LeRF is deletion read backwards.
        assert best["values"]["insertion_lerf_area"][column] == pytest.approx(best["values"]["deletion_area"][column])


# Errors -------------------------------------------------------------------------------------------


def test_bad_requests_are_typed_errors(interaction, bundles):
    model, _ = interaction
    result = model.attribute(IDS, targets=[0], method="occlusion")
    with pytest.raises(InvalidInputError, match="unknown metric 'aopc'.*available: deletion"):
        model.evaluate(result, metrics=["aopc"])
    with pytest.raises(InvalidInputError, match=r"bins"):
        model.evaluate(result, bins=(5, 150))
    with pytest.raises(InvalidInputError, match="points"):
        model.evaluate(result, points=1)
    gpt2 = attribfast.load(bundles["gpt2"])
    with pytest.raises(ResultMismatchError, match="bundle"):
        gpt2.evaluate(result)
    other = replace(result, bundle_hash="0" * 64)
    with pytest.raises(ResultMismatchError):
        model.evaluate(other)
    with pytest.raises(InvalidInputError, match="token ids"):
        model.evaluate(replace(result, token_ids=None))
    with pytest.raises(TargetError):
        model.evaluate(result, targets=[1])
    with pytest.raises(TargetError, match="planned differently"):
        model.evaluate(replace(result, target_scores=result.target_scores + 1.0))
    with pytest.raises(InvalidInputError, match="evaluate must be"):
        model.attribute(IDS, targets=[0], evaluate=3)
    with pytest.raises(InvalidInputError, match="contrastive"):
        model.attribute(IDS, targets=[0], contrast=1, evaluate=True)


# Results ------------------------------------------------------------------------------------------


def test_figures_survive_save_load_and_show_in_tables_and_html(interaction, tmp_path):
    model, _ = interaction
    result = model.attribute(IDS, targets=[0, 1], method="occlusion", evaluate=True)
    figures = result.faithfulness
    assert figures["metrics"] == list(attribfast.faithfulness.DEFAULT_METRICS)
    assert "loo_spearman" not in figures["values"]
    result.save(tmp_path / "r.npz")
    loaded = attribfast.Attribution.load(tmp_path / "r.npz")
    assert loaded.faithfulness == figures
    # Version 2 marks files with figures (an older attribfast refuses them); plain results stay 1.
    replace(result, faithfulness=None).save(tmp_path / "plain.npz")
    for name, version in (("r.npz", 2), ("plain.npz", 1)):
        with np.load(tmp_path / name) as data:
            assert json.loads(bytes(data["meta"]).decode())["version"] == version
    assert attribfast.Attribution.load(tmp_path / "plain.npz").faithfulness is None
    table = loaded.faithfulness_table()
    assert list(table.columns) == ["0", "1"] and "comprehensiveness" in table.index
    assert table.loc["deletion_area", "1"] == figures["values"]["deletion_area"][1]
    pd.testing.assert_frame_equal(result.to_pandas().attrs["faithfulness"], table)
    assert result.to_dict()["faithfulness"] == figures
    assert "comprehensiveness" in result.to_html() and "af-faith" in result.to_html()
    # A default evaluation's rows: top-k and bottom-k removed per count, per target; the clean and
    # the all-removed input are common to both, and to both targets.
    assert len(figures["curves"]["x"]) == len(IDS) + 1  # 12 steps > 11 tokens: every count
    assert 2 * len(IDS) <= figures["rows_run"] <= 2 * (2 * len(IDS)) + 2
    assert attribfast.Attribution.load(tmp_path / "r.npz").normalize().faithfulness == figures


def test_compare_tabulates_methods_and_plots_their_curves(interaction):
    import matplotlib

    matplotlib.use("Agg")
    model, _ = interaction
    comparison = attribfast.compare(
        model, IDS, targets=[0], methods=["occlusion", attribfast.KernelShap(n_samples=64)], evaluate=True
    )
    table = comparison.table
    assert list(table.index) == [("occlusion", "0"), ("kernel_shap", "0")]
    for column in ("deletion_area", "comprehensiveness", "seconds", "rows", "eval_seconds", "eval_rows"):
        assert column in table.columns
    assert table.loc[("kernel_shap", "0"), "rows"] == comparison.results["kernel_shap"].evaluations
    fig, ax = comparison.plot(target="0")
    assert len(ax.lines) == 2 and ax.get_xlabel().startswith("fraction")
    matplotlib.pyplot.close(fig)
    with pytest.raises(InvalidInputError):
        attribfast.compare(model, IDS, targets=[0], methods=[])


def test_explain_evaluate_and_compare_commands(bundles, capsys, tmp_path):
    from attribfast.cli import main

    bundle = str(bundles["gpt2"])
    common = ["--text", PROMPT, "--target", " is", "--target", " over the"]
    assert main(["explain", bundle, *common, "--quiet", "--evaluate", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "faithfulness (" in out and "comprehensiveness" in out
    assert '"faithfulness"' in (tmp_path / "r.json").read_text()
    args = ["compare", bundle, *common, "--method", "occlusion", "--method", "saliency", "--points", "6"]
    assert main([*args, "--out", str(tmp_path / "c.png"), "--csv", str(tmp_path / "c.csv")]) == 0
    out = capsys.readouterr().out
    assert "occlusion" in out and "saliency" in out and "deletion_area" in out
    assert (tmp_path / "c.png").stat().st_size > 0
    table = pd.read_csv(tmp_path / "c.csv")
    assert len(table) == 4 and set(table["method"]) == {"occlusion", "saliency"}
    assert main(["compare", bundle, *common, "--method", "occlusion", "--metric", "nope"]) == 2
    assert "unknown metric" in capsys.readouterr().err


def test_progress_reports_every_row_of_both_sweeps(interaction):
    model, _ = interaction
    result = model.attribute(IDS, targets=[0], method="occlusion")
    calls = []
    evaluated = model.evaluate(result, metrics="all", progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] == evaluated.faithfulness["rows_run"]
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:], strict=False))
