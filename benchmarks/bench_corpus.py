"""Corpus sweeps: the pooled sweep vs the one-by-one loop, local Ray, a Captum loop and SHAP.

    python benchmarks/bench_corpus.py --repeats 3

1,000 short texts (10-40 tokens, drawn deterministically from a fixed word list), occlusion with
window 1 and the pad token as baseline, one target for every text. --model minilm: the pretrained
all-MiniLM-L6-v2 similarity bundle against one reference sentence; --model bert-tiny: a
BERT-tiny-shaped classifier (2 layers, hidden 128, random init), class "positive". Contenders:
  pooled   attribute_corpus: the variants of 256 texts per core call in shared length-sorted batches
  loop     model.attribute(text) for each text (each text its own batches)
  ray      attribute_dataset on a local Ray (2 actors, 1 ORT thread each, 100 texts per actor call);
           ray.init is outside the timing, the actors' bundle loading inside
  captum   captum.attr.Occlusion per text on the same torch model (the same score, all of a text's
           variants in one batch: perturbations_per_eval=64)
  shap     shap's text explainer (Partition, shap.maskers.Text) on the same torch score, when shap
           is installed; a different algorithm, given occlusion's model-row budget per text
           (max_evals = n_tokens + 1) and batch_size 64
--method saliency | integrated_gradients (16 Gauss-Legendre steps, fixed) compares pooled and loop
for a gradient method instead (the other contenders are occlusion only).
Rates are texts/s, medians of --repeats runs (pooled and loop interleaved, no warm-up beyond the
correctness runs); slow contenders run on the first --slow-texts texts.
Correctness first: pooled = loop (1e-6; 1e-5 on CUDA) and Captum = loop (1e-4) on the texts they share.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from common import median_seconds, minilm

WORDS = (
    "the a small model quick brown fox jumps over lazy dog while attribution tells which tokens matter for "
    "prediction and trained on tiny corpus of plain english sentences says hello world weather is nice today "
    "simple programs explain predictions quickly"
).split()
REFERENCE = "A fox jumps over a dog."
# The method of the pooled / loop comparison, from the attribfast module.
METHODS = {
    "occlusion": lambda af: af.Occlusion(),
    "saliency": lambda af: af.Saliency(),
    "integrated_gradients": lambda af: af.IntegratedGradients(n_steps=16, tolerance=None),
}


def corpus(tokenizer, n_texts: int, seed: int = 0) -> list[str]:
    """n_texts texts of 10 to 40 tokens (the tokenizer's count, special tokens included)."""
    rng = np.random.default_rng(seed)
    texts = []
    while len(texts) < n_texts:
        goal = int(rng.integers(10, 41))
        words = [WORDS[int(i)] for i in rng.integers(0, len(WORDS), goal)]
        while len(words) > 1 and len(tokenizer.encode(" ".join(words)).ids) > goal:
            words.pop()
        text = " ".join(words)
        if 10 <= len(tokenizer.encode(text).ids) <= 40:
            texts.append(text)
    return texts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--slow-texts", type=int, default=100, help="texts for the captum and shap contenders")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=["pooled", "loop", "ray", "captum", "shap"])
    parser.add_argument("--model", choices=("minilm", "bert-tiny"), default="minilm")
    parser.add_argument("--method", choices=tuple(METHODS), default="occlusion",
                        help="gradient methods: the pooled and loop contenders only")
    args = parser.parse_args()
    import attribfast
    from attribfast.corpus import attribute_corpus

    method = METHODS[args.method](attribfast)
    if args.method != "occlusion":
        args.only = [name for name in args.only if name in ("pooled", "loop")]

    task = MiniLM() if args.model == "minilm" else BertTiny()
    bundle, model = task.bundle, task.model
    tokenizer = model._spec.tokenizer
    texts = corpus(tokenizer, args.texts)
    lengths = [len(tokenizer.encode(t).ids) for t in texts]
    print(f"{len(texts)} texts, {min(lengths)}-{max(lengths)} tokens (mean {np.mean(lengths):.1f}), "
          f"{sum(lengths) + len(texts)} occlusion rows in all")
    slow = texts[: args.slow_texts]
    targets = task.targets
    rows = []

    def report(name, n, median, times):
        rows.append((name, n, median, times))
        print(f"{name}: {n / median:.1f} texts/s (median {median:.2f} s of {[round(t, 2) for t in times]}, {n} texts)",
              flush=True)

    loop_result = [model.attribute(t, targets=targets, method=method) for t in slow]
    if "pooled" in args.only and "loop" in args.only:
        # Interleaved runs (pooled, loop, pooled, ...): the ratio comes from the first pair.
        pooled_times, loop_times = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            frame = attribute_corpus(model, texts, targets, method=method)
            pooled_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            for text in texts:
                model.attribute(text, targets=targets, method=method)
            loop_times.append(time.perf_counter() - start)
        # cuBLAS orders a GEMM's sums by the batch's shape: 1e-5 on CUDA, as the tests bound it.
        bound = 1e-5 if "cuda" in os.environ.get("ATTRIBFAST_PROVIDERS", "") else 1e-6
        for (_, row), want in zip(frame.iloc[: len(slow)].iterrows(), loop_result, strict=True):
            got = np.asarray(list(row["matrix"]), np.float32)
            assert np.abs(got - want.matrix).max() <= bound, np.abs(got - want.matrix).max()
        print(f"first run each: pooled {pooled_times[0]:.2f} s, loop {loop_times[0]:.2f} s, loop / pooled "
              f"{loop_times[0] / pooled_times[0]:.2f}x", flush=True)
        report("pooled", len(texts), statistics.median(pooled_times), pooled_times)
        report("loop", len(texts), statistics.median(loop_times), loop_times)
    if "ray" in args.only:
        report("ray (2 actors)", len(texts), *bench_ray(bundle, texts, targets, args.repeats))
    if "captum" in args.only:
        report("captum loop", len(slow), *bench_captum(task, slow, loop_result, args.repeats))
    if "shap" in args.only:
        try:
            import shap  # noqa: F401
        except ImportError:
            print("shap: not installed, skipped")
        else:
            report("shap text explainer", len(slow), *bench_shap(task, slow, args.repeats))
    print("\n| contender | texts | median (s) | runs | texts/s |\n| --- | ---: | ---: | ---: | ---: |")
    for name, n, median, times in rows:
        print(f"| {name} | {n} | {median:.2f} | {len(times)} | {n / median:.1f} |")


def bench_ray(bundle, texts, targets, repeats):
    import ray
    import ray.data
    from attribfast.corpus import attribute_dataset

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False

    def run():
        ds = ray.data.from_items([{"text": t} for t in texts])
        out = attribute_dataset(ds, bundle, targets=targets, batch_size=100, concurrency=2, threads=1)
        rows = out.take_all()
        if len(rows) != len(texts) or any(r["error"] for r in rows):
            raise RuntimeError("the Ray run lost or failed rows")

    try:
        return median_seconds(run, repeats, warmup=0)
    finally:
        ray.shutdown()


class MiniLM:
    """The pretrained all-MiniLM-L6-v2, similarity to one reference sentence."""

    targets = [REFERENCE]

    def __init__(self):
        self.model_dir, self.bundle, self.model = minilm()

    def torch_model(self):
        from transformers import AutoModel

        return AutoModel.from_pretrained(self.model_dir).eval()

    def captum_forward(self, hf):
        import torch
        from reference_scores import similarity_score

        return similarity_score(hf, torch.tensor([self.model._spec.tokenizer.encode(REFERENCE).ids]))

    def batch_score(self, hf, tokenizer):
        """Scores of a list of texts, as shap calls it: mean-pooled cosine similarity to the reference."""
        import torch

        def embed(batch):
            encoded = tokenizer(list(batch), padding=True, return_tensors="pt")
            with torch.no_grad():
                hidden = hf(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

        reference = embed([REFERENCE])[0]
        return lambda batch: (embed(batch) @ reference).numpy()


class BertTiny:
    """A BERT-tiny-shaped classifier (2 layers, hidden 128, 2 heads, random init, the tests' locally
    trained WordPiece tokenizer), class "positive"."""

    targets = ["positive"]

    def __init__(self):
        import attribfast
        from common import CACHE, bundle_for
        from tiny_models import bert_tokenizer
        from transformers import BertConfig, BertForSequenceClassification

        folder = CACHE / "bert-tiny-2x128"
        if not (folder / "config.json").is_file():
            import torch

            fast = bert_tokenizer()
            torch.manual_seed(0)
            labels = ["negative", "neutral", "positive"]
            config = BertConfig(
                hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                max_position_embeddings=128, vocab_size=len(fast), num_labels=3,
                id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
                pad_token_id=fast.pad_token_id,
            )
            BertForSequenceClassification(config).eval().save_pretrained(folder)
            fast.save_pretrained(folder)
        self.model_dir = folder
        self.bundle = bundle_for(folder, "sequence-classification", "bert-tiny-2x128")
        self.model = attribfast.load(self.bundle)

    def torch_model(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(self.model_dir, attn_implementation="eager").eval()

    def captum_forward(self, hf):
        import torch

        def forward(ids):
            with torch.no_grad():
                return hf(ids, attention_mask=torch.ones_like(ids)).logits[:, 2]

        return forward

    def batch_score(self, hf, tokenizer):
        import torch

        def score(batch):
            encoded = tokenizer(list(batch), padding=True, return_tensors="pt")
            with torch.no_grad():
                return hf(**encoded).logits[:, 2].numpy()

        return score


def bench_captum(task, texts, expected, repeats):
    import torch
    from captum.attr import Occlusion

    torch.set_num_threads(os.cpu_count() or 2)
    forward = task.captum_forward(task.torch_model())
    tokenizer = task.model._spec.tokenizer
    baseline = task.model._baseline_id(None)
    inputs = [torch.tensor([tokenizer.encode(t).ids]) for t in texts]

    def run():
        return [Occlusion(forward).attribute(ids, sliding_window_shapes=(1,), baselines=baseline,
                                             perturbations_per_eval=64)[0].numpy() for ids in inputs]

    for got, want in zip(run(), expected, strict=True):
        assert np.abs(got - want.matrix[:, 0]).max() < 1e-4, np.abs(got - want.matrix[:, 0]).max()
    return median_seconds(run, repeats, warmup=0)


def bench_shap(task, texts, repeats):
    import shap
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 2)
    tokenizer = AutoTokenizer.from_pretrained(task.model_dir)
    explainer = shap.Explainer(task.batch_score(task.torch_model(), tokenizer), shap.maskers.Text(tokenizer))
    budgets = [len(tokenizer(t)["input_ids"]) + 1 for t in texts]  # occlusion's rows: n_tokens + 1
    explainer(texts[:1], max_evals=budgets[0], batch_size=64, silent=True)  # first-call setup

    def run():
        for text, budget in zip(texts, budgets, strict=True):
            explainer([text], max_evals=budget, batch_size=64, silent=True)

    return median_seconds(run, repeats, warmup=0)


if __name__ == "__main__":
    main()
