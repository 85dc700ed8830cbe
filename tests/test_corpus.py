"""Corpus runs (issue 12): many texts in one call, the resumable explain-corpus command, Ray Data."""

import json
import os
import signal
import subprocess
import sys
import time

import attribfast
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from attribfast._runtime import default_providers
from attribfast.corpus import RESULT_COLUMNS, attribute_corpus, to_attribution
from attribfast.corpus.sweep import per_text_targets
from attribfast.demo import shipped_bundle
from attribfast.errors import InvalidInputError
from tolerances import float32_tolerance

# Mixed lengths, an empty text and one too long for the shipped model (max_length 64).
TEXTS = ["12+3=", "7", "", "1234567890+-=", "9 x 5 = 4", "1" * 200, "3*3="]
BAD = {2: "InvalidInputError", 5: "InputTooLongError"}
PER_TEXT = [["1"], ["2", "3"], ["1"], None, ["4", "5"], ["1"], ["9"]]


def one_by_one(model, texts, targets, method):
    out = []
    for text, text_targets in zip(texts, targets, strict=True):
        try:
            out.append(model.attribute(text, targets=text_targets, method=method))
        except attribfast.errors.AttribfastError as error:
            out.append(error)
    return out


# A pooled batch mixes rows of several texts, so a row's sums may round otherwise than alone
# (tests/tolerances.py). A log-probability is logit - logsumexp(logits), so it rounds at the logits'
# size, not its own: scores below 2 differed by 9.5e-7 on this machine's CPU (one step of a number
# between 8 and 16), by ~2e-6 on CUDA (an H200). Hence the fp32 perturbation tolerance, 1e-5, or a
# few roundings of the scores where they are larger; a row mixed up moves values by 1e-2 and more.
ROW_TOLERANCE = 1e-5
# Gradient rows also pass within this relative bound (test_corpus_pooled_gradient.py says why).
GRADIENT_RTOL = 1e-5 if "cuda" in default_providers() else 1e-6


def assert_rows_match(frame, expected, rtol=0.0):
    assert len(frame) == len(expected)
    for (_, row), want in zip(frame.iterrows(), expected, strict=True):
        if isinstance(want, Exception):
            assert row["error"].startswith(type(want).__name__ + ": ") and str(want) in row["error"]
            assert len(row["tokens"]) == 0
            continue
        assert row["error"] == ""
        got = to_attribution(row)
        assert got.tokens == want.tokens and got.targets == want.targets
        atol = float32_tolerance(want.target_scores, ROW_TOLERANCE)
        np.testing.assert_allclose(got.matrix, want.matrix, atol=atol, rtol=rtol)
        np.testing.assert_allclose(got.target_scores, want.target_scores, atol=atol, rtol=rtol)


def test_targets_are_one_spec_for_all_or_aligned_with_the_texts():
    assert per_text_targets(["1", "2"], 3) == [["1", "2"]] * 3
    assert per_text_targets(None, 2) == [None, None]
    assert per_text_targets([["1"], None], 2) == [["1"], None]
    assert per_text_targets({"a": "1"}, 2) == [{"a": "1"}] * 2
    with pytest.raises(InvalidInputError, match="one entry per text: 2 for 3 texts"):
        per_text_targets([["1"], ["2"]], 3)


@pytest.mark.parametrize(
    "method",
    [attribfast.Occlusion(window=2), attribfast.ShapleySampling(n_permutations=3, seed=4),
     attribfast.IntegratedGradients(n_steps=8, tolerance=None)],
    ids=lambda m: m.name,
)
def test_a_corpus_call_equals_one_by_one_calls_and_records_bad_rows(arith, method):
    frame = attribute_corpus(arith, TEXTS, PER_TEXT, method=method)
    assert list(frame.columns) == ["text", *RESULT_COLUMNS]
    expected = one_by_one(arith, TEXTS, PER_TEXT, method)
    for index, name in BAD.items():
        assert type(expected[index]).__name__ == name
    # Gradient values reach ~5 here, where a pooled batch's float32 rounding can move them by 2e-6
    # (tests/test_corpus_pooled_gradient.py): relative 1e-6 for them (1e-5 on CUDA).
    assert_rows_match(frame, expected, rtol=GRADIENT_RTOL if method.needs == "gradient" else 0.0)


def test_one_target_spec_serves_every_text(arith):
    frame = attribute_corpus(arith, TEXTS[:2], ["1", "2"])
    assert [list(t) for t in frame["targets"]] == [["1", "2"], ["1", "2"]]


# explain-corpus ----------------------------------------------------------------------------------


def cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "attribfast", "explain-corpus", *args], capture_output=True, text=True, **kwargs
    )


def write_input(path, rows):
    frame = pd.DataFrame(rows)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_explain_corpus_writes_every_row_with_its_input_columns(arith, tmp_path, suffix):
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)]
    source = tmp_path / f"in{suffix}"
    write_input(source, rows)
    out = tmp_path / "out.parquet"
    run = cli(shipped_bundle(), str(source), "-o", str(out), "--target", "1", "--chunk-size", "3", "--quiet")
    assert run.returncode == 0, run.stderr
    table = pq.read_table(out).to_pandas().sort_values("row_id")
    assert table["row_id"].tolist() == list(range(len(TEXTS)))
    assert table["id"].tolist() == [r["id"] for r in rows]
    assert len(list(out.glob("part-*.parquet"))) == 3
    assert_rows_match(table.reset_index(drop=True), one_by_one(arith, TEXTS, [["1"]] * len(TEXTS), "occlusion"))


def test_explain_corpus_takes_targets_from_a_column(arith, tmp_path):
    source = tmp_path / "in.jsonl"
    write_input(source, [{"text": t, "want": w} for t, w in zip(TEXTS, PER_TEXT, strict=True)])
    out = tmp_path / "out.parquet"
    run = cli(shipped_bundle(), str(source), "-o", str(out), "--target-column", "want", "--quiet")
    assert run.returncode == 0, run.stderr
    table = pq.read_table(out).to_pandas().sort_values("row_id").reset_index(drop=True)
    assert_rows_match(table, one_by_one(arith, TEXTS, PER_TEXT, "occlusion"))


def test_a_killed_run_resumes_and_holds_every_row_exactly_once(arith, tmp_path):
    texts = [f"{i}+{i}=" for i in range(12)]
    source = tmp_path / "in.jsonl"
    write_input(source, [{"text": t} for t in texts])
    out = tmp_path / "out.parquet"
    # Slow rows (many Shapley permutations), 2 rows a chunk: the kill lands after the first chunk.
    args = [shipped_bundle(), str(source), "-o", str(out), "--target", "1", "--chunk-size", "2", "--quiet",
            "--method", "shapley_sampling", "--param", "n_permutations=300", "--param", "seed=1"]
    process = subprocess.Popen([sys.executable, "-m", "attribfast", "explain-corpus", *args])
    deadline = time.monotonic() + 120
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = len(list(out.glob("part-*.parquet")))
    assert 1 <= written < 6, f"the kill should land mid-run ({written} of 6 chunks written)"
    run = cli(*args)
    assert run.returncode == 0, run.stderr
    table = pq.read_table(out).to_pandas()
    assert sorted(table["row_id"]) == list(range(12)), "every row exactly once"
    method = attribfast.ShapleySampling(n_permutations=300, seed=1)
    table = table.sort_values("row_id").reset_index(drop=True)
    assert_rows_match(table, one_by_one(arith, texts, [["1"]] * 12, method))


def test_explain_corpus_refuses_a_missing_column_with_a_typed_error(tmp_path):
    source = tmp_path / "in.csv"
    write_input(source, [{"body": "1+1="}])
    run = cli(shipped_bundle(), str(source), "-o", str(tmp_path / "o.parquet"))
    assert run.returncode == 2 and "InvalidInputError" in run.stderr and "no column 'text'" in run.stderr


@pytest.mark.parametrize("targets", [1.5, object()])
def test_a_target_that_is_neither_one_nor_a_list_is_a_target_error(arith, targets):
    # Found by the corpus tests: a missing CSV cell (NaN) as targets raised TypeError.
    with pytest.raises(attribfast.errors.TargetError, match="one or a list"):
        arith.attribute("12+3=", targets=targets)
