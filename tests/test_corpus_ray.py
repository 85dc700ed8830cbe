"""attribute_dataset on a local Ray (issue 12): results equal one-by-one calls, bad rows recorded."""

import attribfast
import numpy as np
import pytest
import ray
import ray.data
from attribfast.corpus import attribute_dataset, to_attribution
from attribfast.demo import shipped_bundle
from attribfast.errors import InvalidInputError
from test_corpus import BAD, PER_TEXT, TEXTS, assert_rows_match, one_by_one


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def rows_in_order(dataset):
    return dataset.to_pandas().sort_values("row").reset_index(drop=True)


def test_ray_data_equals_one_by_one_with_a_target_column(local_ray, arith):
    items = [{"row": i, "text": t, "want": w} for i, (t, w) in enumerate(zip(TEXTS, PER_TEXT, strict=True))]
    method = attribfast.ShapleySampling(n_permutations=3, seed=2)
    result = attribute_dataset(
        ray.data.from_items(items), shipped_bundle(), targets="want", method=method, batch_size=3, concurrency=2
    )
    frame = rows_in_order(result)
    assert frame["row"].tolist() == list(range(len(TEXTS))) and frame["text"].tolist() == TEXTS
    expected = one_by_one(arith, TEXTS, PER_TEXT, method)
    assert_rows_match(frame, expected)
    assert sum(bool(e) for e in frame["error"]) == len(BAD)
    matrix = frame["matrix"][0]
    assert np.asarray(matrix).shape == (len(expected[0].tokens), 1), "a per-row [n_tokens, n_targets] array"


def test_ray_data_with_one_target_spec_and_a_gradient_method(local_ray, arith):
    texts = ["12+3=", "45*6=", "7"]
    method = attribfast.IntegratedGradients(n_steps=8, tolerance=None)
    dataset = ray.data.from_items([{"row": i, "body": t} for i, t in enumerate(texts)])
    result = attribute_dataset(dataset, shipped_bundle(), text_column="body", targets=["1", "2"], method=method)
    frame = rows_in_order(result)
    expected = one_by_one(arith, texts, [["1", "2"]] * 3, method)
    assert_rows_match(frame, expected)
    assert to_attribution(frame.iloc[1], text_column="body").text == "45*6="


def test_an_unknown_method_fails_before_any_actor_starts(local_ray):
    with pytest.raises(InvalidInputError, match="unknown method"):
        attribute_dataset(ray.data.from_items([{"text": "1"}]), shipped_bundle(), method="magic")


def test_explain_corpus_with_ray_joins_the_cluster_and_writes_every_row(local_ray, arith, tmp_path):
    import json
    import os
    import subprocess
    import sys

    import pyarrow.parquet as pq

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    out = tmp_path / "out.parquet"
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    run = subprocess.run(
        [sys.executable, "-m", "attribfast", "explain-corpus", shipped_bundle(), str(source), "-o", str(out),
         "--target", "1", "--ray", "--chunk-size", "3", "--quiet"],
        capture_output=True, text=True, env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    table = pq.read_table(out).to_pandas().sort_values("row_id").reset_index(drop=True)
    assert table["row_id"].tolist() == list(range(len(TEXTS)))
    assert_rows_match(table, one_by_one(arith, TEXTS, [["1"]] * len(TEXTS), "occlusion"))
