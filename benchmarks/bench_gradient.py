"""Integrated gradients (32 steps, 5 targets): attribfast vs Captum (typical and best-tuned) vs the floor.

    python benchmarks/bench_gradient.py --repeats 5

Same models as bench_perturbation.py. attribfast takes the gradients of every target from one
forward per step (the shared gradient graph); the per-target contender runs a forward per (target,
step) row (pack_targets=False). Captum runs LayerIntegratedGradients on the embedding layer; the
floor is plain onnxruntime running the bundle's per-target gradient graph for the same rows at its
best batch size. Timings are medians of --repeats runs in one process.
"""

from __future__ import annotations

import numpy as np
from common import (
    CONTINUATIONS,
    REFERENCES,
    SIMILARITY_TEXT,
    best_of,
    bundle_for,
    causal_target_feeds,
    gpt2_bench_model,
    median_seconds,
    minilm,
    ort_floor,
    prompt_ids,
    reference_embedding_work,
    run_main,
)

N_STEPS = 32


def lig(forward, layer, ids, baselines, internal_batch_size):
    from captum.attr import LayerIntegratedGradients

    return LayerIntegratedGradients(forward, layer).attribute(
        ids, baselines=baselines, n_steps=N_STEPS, method="gausslegendre", internal_batch_size=internal_batch_size
    )


def per_target_row(model, inputs, targets, method, ours, repeats: int):
    """attribfast with a forward per (target, step) row (pack_targets=False), checked equal to the
    shared-forward default, which takes every target's gradient from one forward per step."""
    if "shared_gradient" not in model._spec.graphs:
        raise SystemExit(f"the bundle has no shared gradient graph: {model._spec.manifest.get('shared_gradient')}")

    def run():
        return model.attribute(inputs, targets=targets, method=method, pack_targets=False)

    error = np.abs(run().matrix - ours.matrix).max()
    assert error < 1e-5, error
    return ("attribfast, a forward per target (pack_targets=False)", *median_seconds(run, repeats))


def bench_gpt2(repeats: int):
    import attribfast
    import torch
    from reference_scores import causal_full_logits, causal_target_only_from_embeddings
    from transformers import AutoModelForCausalLM

    model_dir = gpt2_bench_model()
    bundle = bundle_for(model_dir, "causal-lm", "gpt2-4x256")
    model = attribfast.load(bundle)
    tokenizer = model._spec.tokenizer
    ids = prompt_ids(tokenizer)
    pad = model._baseline_id(None)
    continuations = [tokenizer.encode(c, add_special_tokens=False).ids for c in CONTINUATIONS]
    method = attribfast.IntegratedGradients(n_steps=N_STEPS)
    ours = model.attribute(ids, targets=CONTINUATIONS, method=method)
    rows = [
        ("attribfast", *median_seconds(lambda: model.attribute(ids, targets=CONTINUATIONS, method=method), repeats)),
        per_target_row(model, ids, CONTINUATIONS, method, ours, repeats),
    ]

    hf = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    embedding = hf.get_input_embeddings()
    prompt = torch.tensor([ids])

    def tuned(batch):
        out = []
        for c in continuations:
            score = causal_target_only_from_embeddings(hf, c)
            out.append(lig(lambda x, s=score: s(embedding(x)), embedding, prompt, torch.full_like(prompt, pad), batch))
        return out

    reference = np.stack([a.sum(-1)[0].detach().numpy() for a in tuned(None)], 1)
    assert np.abs(reference - ours.matrix).max() < 1e-4, np.abs(reference - ours.matrix).max()

    def typical():
        for c in continuations:
            full = torch.tensor([ids + c])
            baseline = torch.tensor([[pad] * len(ids) + c])
            lig(causal_full_logits(hf, len(ids), c, grad=True), embedding, full, baseline, None)

    rows.append(("Captum, typical (LIG over the HF forward with full logits)", *median_seconds(typical, repeats)))
    best = best_of((8, 16, 32), lambda batch: lambda: tuned(batch), repeats)
    rows.append((f"Captum, best-tuned (target-only score, internal_batch_size={best[2]})", best[0], best[1]))

    longest = max(len(c) for c in continuations)
    seq = len(ids) + longest - 1
    hidden = model._spec.hidden_size

    def feeds(n):
        return {
            "inputs_embeds": np.ones((n, seq, hidden), np.float32),
            "attention_mask": np.ones((n, seq), np.int64),
            **causal_target_feeds(n, len(ids), longest),
        }

    floor = ort_floor(bundle / "gradient.onnx", feeds, ours.evaluations, (8, 16, 34, 64), repeats)
    rows.append((f"floor: onnxruntime gradient graph, {ours.evaluations} rows, batch {floor[2]}", floor[0], floor[1]))
    return rows, ours.evaluations


def bench_minilm(repeats: int):
    import attribfast
    import torch
    from reference_scores import similarity_score
    from transformers import AutoModel

    model_dir, bundle, model = minilm()
    tokenizer = model._spec.tokenizer
    text = SIMILARITY_TEXT
    method = attribfast.IntegratedGradients(n_steps=N_STEPS)
    ours = model.attribute(text, targets=REFERENCES, method=method)
    rows = [
        ("attribfast", *median_seconds(lambda: model.attribute(text, targets=REFERENCES, method=method), repeats)),
        per_target_row(model, text, REFERENCES, method, ours, repeats),
    ]
    hf = AutoModel.from_pretrained(model_dir).eval()
    embedding = hf.get_input_embeddings()
    ids = torch.tensor([tokenizer.encode(text).ids])
    baseline = torch.full_like(ids, model._baseline_id(None))
    refs = [torch.tensor([tokenizer.encode(r).ids]) for r in REFERENCES]

    def run(batch):
        return [lig(similarity_score(hf, r, grad=True), embedding, ids, baseline, batch) for r in refs]

    reference = np.stack([a.sum(-1)[0].detach().numpy() for a in run(None)], 1)
    assert np.abs(reference - ours.matrix).max() < 1e-4, np.abs(reference - ours.matrix).max()
    rows.append(("Captum, typical (internal_batch_size=None)", *median_seconds(lambda: run(None), repeats)))
    best = best_of((8, 16, 32), lambda batch: lambda: run(batch), repeats)
    rows.append((f"Captum, best-tuned (internal_batch_size={best[2]})", best[0], best[1]))
    seq, hidden = ids.shape[1], model._spec.hidden_size

    def feeds(n):
        return {
            "inputs_embeds": np.ones((n, seq, hidden), np.float32),
            "attention_mask": np.ones((n, seq), np.int64),
            "reference_embeddings": np.ones((n, 1, hidden), np.float32),
        }

    work = reference_embedding_work(bundle, tokenizer)
    floor = ort_floor(bundle / "gradient.onnx", feeds, ours.evaluations, (8, 16, 34, 64), repeats, work)
    rows.append((f"floor: onnxruntime gradient graph, {ours.evaluations} rows, batch {floor[2]}", floor[0], floor[1]))
    return rows, ours.evaluations


def main():
    run_main(
        __doc__.splitlines()[0],
        "Integrated gradients, 32 steps",
        "gradient rows",
        {"gpt2": bench_gpt2, "minilm": bench_minilm},
    )


if __name__ == "__main__":
    main()
