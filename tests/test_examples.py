"""Every script in examples/ runs (in a subprocess, as a user would run it) and prints what it says."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args, cwd: Path) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_every_example_is_tested():
    tested = {"causal_continuation.py", "classifier.py", "similarity.py", "corpus.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.parametrize("which", ["shipped", "gpt2"])
def test_causal_continuation(bundles, tmp_path, which):
    if which == "shipped":
        out = run_example("causal_continuation.py", cwd=tmp_path)
        assert "4900 / 100 = 49 vs 9 + 3 = 12" in out and "9 + 3 = 12 vs 4900 / 100 = 49" in out
        assert "√" in out
    else:
        out = run_example(
            "causal_continuation.py",
            bundles["gpt2"],
            "--prompt",
            "the quick brown fox",
            "--target",
            " jumps",
            "--target",
            " is",
            cwd=tmp_path,
        )
        assert " jumps vs  is" in out and " is vs  jumps" in out
        assert "\u2423" in out  # the prompt's tokens, spaces made visible
    assert out.count("| prompt) = ") == 2
    for png in ("continuation.png", "continuation-contrast.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_classifier(bundles, tmp_path):
    out = run_example("classifier.py", bundles["bert"], "--text", "hello world, this is fine!", cwd=tmp_path)
    assert "predicted class:" in out and "vs others" in out
    for label in ("negative", "neutral", "positive"):
        assert label in out
    # Words are the tokenizer's: the comma is a word of its own.
    rows = [line.split()[0] for line in out.splitlines() if line and not line.startswith(("predicted", "words"))]
    assert "hello" in rows and "," in rows and "hello," not in rows


def test_similarity(minilm_bundle, tmp_path):
    out = run_example(
        "similarity.py",
        minilm_bundle,
        "--reference",
        "Someone performs music.",
        "--reference",
        "A chef cooks.",
        cwd=tmp_path,
    )
    scores = [float(line.rsplit(":", 1)[1]) for line in out.splitlines() if line.startswith("cosine similarity")]
    assert len(scores) == 2 and scores[0] > scores[1], out  # the real MiniLM: music is closer than cooking
    assert "guitar" in out


def test_corpus(bundles, tmp_path):
    out = run_example("corpus.py", bundles["bert"], "--csv", tmp_path / "table.csv", cwd=tmp_path)
    assert "3 texts" in out
    with open(tmp_path / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"text", "word", "class", "value"}
    assert {r["text"] for r in rows} == {"0", "1", "2"} and {r["class"] for r in rows} == {
        "negative",
        "neutral",
        "positive",
    }
    assert any(r["word"] == "fox" for r in rows) and all(float(r["value"]) == float(r["value"]) for r in rows)
