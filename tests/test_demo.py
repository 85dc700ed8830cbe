"""The shipped arithmetic model: its bundle, its accuracy claim, its training script and the demo."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import attribfast
import numpy as np
import pytest
from attribfast import Bundle

ROOT = Path(__file__).resolve().parent.parent
ARITH = ROOT / "models" / "arith"
sys.path.insert(0, str(ARITH))
import train  # noqa: E402  (models/arith/train.py; needs torch only when training)


def test_shipped_bundle_verifies_and_is_small():
    bundle = Bundle.load(ARITH / "bundle")
    assert bundle.task == "causal-lm"
    size = sum(f.stat().st_size for f in (ARITH / "bundle").iterdir())
    assert size < 10 * 1024 * 1024, size


def test_held_out_accuracy_claims_hold():
    """Greedy answers from the bundle (ONNX Runtime, no torch) on the fixed held-out set."""
    claims = json.loads((ARITH / "accuracy.json").read_text())["held_out_exact_match"]
    model = attribfast.load(ARITH / "bundle")
    session = model.session("next_token")
    tokenizer = model._spec.tokenizer

    def next_logits(ids):
        ids = np.asarray([ids], np.int64)
        (logits,) = session.run(
            {"input_ids": ids, "attention_mask": np.ones_like(ids), "positions": np.array([ids.shape[1] - 1])}
        )
        return logits[0]

    measured = train.accuracy(next_logits, tokenizer, train.held_out())
    for operation, claimed in claims.items():
        # Argmax ties can break differently in fp32 ONNX Runtime and torch: one item of 100 slack.
        assert measured[operation] >= claimed - 0.01, (operation, measured[operation], claimed)
    for operation in train.EVAL_OPERATIONS:
        assert operation in measured


def test_training_script_runs_a_few_steps(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ARITH / "train.py"), "--out", str(tmp_path), "--steps", "3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "accuracy.json").read_text())
    assert report["steps"] == 3 and set(train.EVAL_OPERATIONS) <= set(report["held_out_exact_match"])
    Bundle.load(tmp_path / "bundle")


def test_demo_runs_without_torch(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None
        sys.modules["transformers"] = None
        from attribfast.cli import main
        code = main(["demo", "--out", {str(tmp_path / "heatmap.png")!r}])
        assert "torch" not in {{k for k, v in sys.modules.items() if v is not None}}
        sys.exit(code)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    for expression in ("9 + 3 = 12", "7 x 5 = 35", "4900 / 100 = 49", "9 - 3 = 6", "6 - 6 = 0"):
        assert expression in run.stdout
    assert "√" in run.stdout and "-$" in run.stdout


def test_demo_matrix_has_the_seed_layout():
    from attribfast.demo import SEED_EXPRESSIONS, SEED_PROMPT, shipped_bundle

    model = attribfast.load(shipped_bundle())
    result = model.attribute(SEED_PROMPT, targets=list(SEED_EXPRESSIONS), method="occlusion")
    assert result.tokens == ("-$", "1", "6", ",", "0", "0", "0", "√", "-", "0", ".", "8", "=")
    assert result.matrix.shape == (13, 5)


@pytest.mark.parametrize("op", ["+", "-", "x", "/", "√", "dec", "money", "neg"])
def test_generated_expressions_are_correct(op):
    import random

    rng = random.Random(5)
    for _ in range(50):
        question, answer = train.expression(rng, op)
        left = question.rstrip("= ").replace("$", "").replace(",", "").replace("x", "*")
        if left.startswith("√"):
            expected = float(left[1:]) ** 0.5
        else:
            expected = eval(left.replace("--", "+"))  # noqa: S307 - our own generated arithmetic
        assert abs(float(answer.replace("$", "").replace(",", "")) - expected) < 1e-9, (question, answer)
