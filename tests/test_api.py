"""The user-facing API: Attribution results, the heatmap, HTML, files, the CLI and input errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import attribfast
import matplotlib
import numpy as np
import pytest
from attribfast import Attribution
from attribfast.errors import InputTooLongError, InvalidInputError, TargetError

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def gpt2(bundles):
    return attribfast.load(bundles["gpt2"])


@pytest.fixture(scope="module")
def result(gpt2):
    return gpt2.attribute("the quick brown fox", targets=[" jumps", " is", " over the"], method="occlusion")


def synthetic(n_tokens=13, n_targets=5, seed=0) -> Attribution:
    rng = np.random.default_rng(seed)
    return Attribution(
        matrix=rng.standard_normal((n_tokens, n_targets)).astype(np.float32),
        tokens=[f"t{i}" for i in range(n_tokens)],
        targets=[f"target {j}" for j in range(n_targets)],
        method="occlusion",
    )


def test_attribution_has_the_documented_shape_and_fields(result):
    assert result.matrix.shape == (len(result.tokens), 3) and result.matrix.dtype == np.float32
    assert result.targets == (" jumps", " is", " over the")
    assert result.offsets.shape == (len(result.tokens), 2)
    assert result.target_scores.shape == (3,) and np.all(result.target_scores < 0)
    assert len(result.bundle_hash) == 64 and result.method == "occlusion"
    assert result.parameters == {"window": 1, "stride": 1, "baseline": None}
    # Byte-level markers became visible spaces.
    assert any(token.startswith("\u2423") for token in result.tokens)


def test_constructor_is_keyword_only_and_checks_shapes():
    with pytest.raises(TypeError):
        Attribution(np.zeros((2, 1)), ["a", "b"], ["t"], "occlusion")  # noqa
    with pytest.raises(InvalidInputError, match="tokens"):
        Attribution(matrix=np.zeros((2, 1)), tokens=["a"], targets=["t"], method="x")
    with pytest.raises(InvalidInputError, match="targets"):
        Attribution(matrix=np.zeros((2, 1)), tokens=["a", "b"], targets=["t", "u"], method="x")
    with pytest.raises(InvalidInputError, match="standard_errors"):
        Attribution(matrix=np.zeros((2, 1)), tokens=["a", "b"], targets=["t"], method="x", standard_errors=np.zeros(2))


def test_save_load_round_trip_is_exact(result, tmp_path):
    path = tmp_path / "result.npz"
    result.save(path)
    loaded = Attribution.load(path)
    for name in ("matrix", "token_ids", "offsets", "special", "target_scores"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
        assert getattr(loaded, name).dtype == getattr(result, name).dtype
    for name in ("tokens", "targets", "method", "parameters", "text", "task", "score", "bundle_hash", "evaluations"):
        assert getattr(loaded, name) == getattr(result, name)
    shapley = synthetic()
    with_errors = Attribution(**{**shapley.__dict__, "standard_errors": np.abs(shapley.matrix) / 10})
    with_errors.save(tmp_path / "e.npz")
    np.testing.assert_array_equal(Attribution.load(tmp_path / "e.npz").standard_errors, with_errors.standard_errors)


def test_to_dict_is_json_and_to_pandas_is_labelled(result):
    data = json.loads(json.dumps(result.to_dict()))
    assert data["matrix"] == result.matrix.tolist() and data["targets"] == list(result.targets)
    frame = result.to_pandas()
    assert frame.shape == result.matrix.shape and list(frame.columns) == list(result.targets)


def test_normalize_per_column(result):
    maxabs = result.normalize("maxabs")
    np.testing.assert_allclose(np.abs(maxabs.matrix).max(axis=0), 1.0, rtol=1e-6)
    l1 = result.normalize("l1")
    np.testing.assert_allclose(np.abs(l1.matrix).sum(axis=0), 1.0, rtol=1e-5)
    assert result.normalize(None) is result
    with pytest.raises(InvalidInputError):
        result.normalize("softmax")


def test_word_aggregation_sums_subwords(result):
    words = result.aggregate("word")
    assert words.tokens == ("the", "quick", "brown", "fox")
    np.testing.assert_allclose(words.matrix.sum(axis=0), result.matrix.sum(axis=0), rtol=1e-5)
    groups = attribfast.attribution.word_groups(result.text, result.offsets, result.special)
    for word in range(4):
        rows = [i for i, g in enumerate(groups) if g == word]
        np.testing.assert_allclose(words.matrix[word], result.matrix[rows].sum(axis=0), rtol=1e-5, atol=1e-7)


def test_html_colours_tokens_per_target(result):
    page = result._repr_html_()
    assert page.count('<div class="af-target">') == 3 and "“ over the”" in page
    assert page.count('<span class="af-v">') == result.matrix.size
    # A real byte-level tokenizer: the words come back with their spaces, not glued together.
    shown = re.findall(r'<span class="af-t">([^<]*)</span>', page)[: len(result.tokens)]
    segments = attribfast.htmlview._segments(result)
    assert [text for _, text in segments] == shown
    # The tiny tokenizer has a token that is only a space: it gets a box of its own ("␣").
    assert re.sub(r"\s*\u2423\s*", " ", "".join(gap + text for gap, text in segments)) == "the quick brown fox"
    escaped = Attribution(matrix=np.ones((1, 1)), tokens=["<b>"], targets=["&"], method="x")._repr_html_()
    assert "&lt;b&gt;" in escaped and "“&amp;”" in escaped


def test_plot_cells_colours_colorbar_and_limits():
    attribution = synthetic(13, 5)
    fig, ax = attribution.plot()
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 13 * 5
    assert f"{attribution.matrix[0, 0]:.4f}" in texts
    image = ax.images[0]
    low, high = image.norm.vmin, image.norm.vmax
    assert low == -high and high == pytest.approx(np.abs(attribution.matrix).max())
    top = image.cmap(image.norm(attribution.matrix.max()))
    bottom = image.cmap(image.norm(attribution.matrix.min()))
    assert top[1] > top[0], "the most positive cell is green"
    assert bottom[0] > bottom[1], "the most negative cell is red"
    assert fig.axes[-1].get_ylabel() == "Token Attribution"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(attribution.targets)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(attribution.tokens)
    matplotlib.pyplot.close(fig)


def test_plot_draws_on_a_given_axes_and_drops_annotations_when_cells_are_small():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    returned_fig, returned_ax = synthetic(13, 5).plot(ax=ax, vmax=5.0)
    assert returned_ax is ax and returned_fig is fig
    assert ax.images[0].norm.vmax == 5.0 and ax.images[0].norm.vmin == -5.0
    plt.close(fig)
    big_fig, big_ax = synthetic(200, 20).plot()
    assert len(big_ax.texts) == 0
    plt.close(big_fig)
    no_text_fig, no_text_ax = synthetic(13, 5).plot(annotate=False)
    assert len(no_text_ax.texts) == 0
    plt.close(no_text_fig)


def test_lists_of_texts_give_lists_of_results(gpt2):
    results = gpt2.attribute(["the fox", "a dog"], targets=[" is"])
    assert isinstance(results, list) and len(results) == 2
    assert all(isinstance(r, Attribution) for r in results)


def test_top_prediction_when_no_targets(gpt2, bundles):
    result = gpt2.attribute("the quick brown")
    assert result.matrix.shape[1] == 1 and result.target_scores[0] <= 0
    bert = attribfast.load(bundles["bert"])
    top = bert.attribute("hello world")
    assert top.targets[0] in bert.labels


def test_long_inputs_raise_or_truncate_explicitly(gpt2):
    text = "the quick brown fox " * 20
    with pytest.raises(InputTooLongError, match="at most 64"):
        gpt2.attribute(text, targets=[" is"])
    truncated = gpt2.attribute(text, targets=[" is"], truncate="left")
    assert truncated.matrix.shape[0] == 64
    with pytest.raises(InvalidInputError, match="truncate"):
        gpt2.attribute("the fox", targets=[" is"], truncate="middle")


def test_typed_errors_for_bad_requests(gpt2, bundles):
    with pytest.raises(InvalidInputError, match="empty"):
        gpt2.attribute("", targets=[" is"])
    with pytest.raises(TargetError, match="continuation strings"):
        gpt2.attribute("the fox", targets=[3])
    with pytest.raises(TargetError, match="not both"):
        gpt2.attribute("the fox", targets=[" is"], generate=2)
    bert = attribfast.load(bundles["bert"])
    with pytest.raises(TargetError, match="classes: negative, neutral, positive"):
        bert.attribute("hello", targets=["happy"])
    with pytest.raises(TargetError, match="generate applies to causal"):
        bert.attribute("hello", generate=1)
    with pytest.raises(InvalidInputError, match="progress"):
        gpt2.attribute("the fox", targets=[" is"], progress="yes")


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "attribfast.cli", *args], capture_output=True, text=True, **kwargs)


def test_cli_explain_end_to_end(bundles, tmp_path):
    out, data = tmp_path / "heat.png", tmp_path / "result.json"
    run = cli(
        "explain",
        str(bundles["gpt2"]),
        "--text",
        "the quick brown fox",
        "--target",
        " jumps",
        "--target",
        " is",
        "--method",
        "integrated_gradients",
        "--param",
        "n_steps=16",
        "--out",
        str(out),
        "--json",
        str(data),
        "--quiet",
    )
    assert run.returncode == 0, run.stderr
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    saved = json.loads(data.read_text())
    assert saved["method"] == "integrated_gradients" and saved["parameters"]["n_steps"] == 16
    assert len(saved["matrix"][0]) == 2 and "integrated_gradients" in run.stdout
    bad = cli("explain", str(bundles["gpt2"]), "--text", "the fox", "--method", "nope", "--quiet")
    assert bad.returncode == 2 and "MethodNotAvailableError" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_ctrl_c_stops_within_two_seconds_with_one_line(bundles):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "attribfast.cli",
            "explain",
            str(bundles["gpt2"]),
            "--text",
            "the quick brown fox jumps over the lazy dog",
            "--target",
            " is",
            "--method",
            "shapley_sampling",
            "--param",
            "n_permutations=1000000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = []

    def read_stderr():
        while chunk := process.stderr.read1(256):
            seen.append(chunk)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while b"rows" not in b"".join(seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"rows" in b"".join(seen), "the progress bar never appeared"
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=10)
    elapsed = time.monotonic() - sent
    reader.join(timeout=5)
    process.stdout.close()
    process.stderr.close()
    stderr = b"".join(seen).decode(errors="replace")
    assert process.returncode == 130
    assert elapsed < 2.0, f"stopped after {elapsed:.2f} s"
    assert "Traceback" not in stderr
    last_line = stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert last_line == "attribfast: interrupted, run stopped"


def test_progress_callback_is_called(gpt2):
    calls = []
    gpt2.attribute("the quick brown fox", targets=[" is"], progress=lambda d, t: calls.append((d, t)), batch_size=2)
    assert calls and calls[-1][0] == calls[-1][1]


def test_readme_example_runs_as_written(bundles, tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("```python\n") + len("```python\n")
    example = readme[start : readme.index("```", start)]
    assert len([line for line in example.splitlines() if line.strip()]) == 5
    env = {**os.environ, "MPLBACKEND": "Agg"}
    run = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "heatmap.png").is_file()
