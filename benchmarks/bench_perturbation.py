"""Occlusion: attribfast vs Captum (typical and best-tuned) vs the plain ONNX Runtime floor.

    python benchmarks/bench_perturbation.py --repeats 5

Models: a GPT-2-style LM (4 layers, hidden 256, vocab 50257, random init) with a 64-token prompt and
5 continuation targets; the pretrained all-MiniLM-L6-v2 (sentence similarity, 5 references). All
contenders compute the same attribution; timings are medians of --repeats runs in one process.
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


def captum_occlusion(forward, ids, baseline, ppe):
    from captum.attr import Occlusion

    return Occlusion(forward).attribute(ids, sliding_window_shapes=(1,), baselines=baseline, perturbations_per_eval=ppe)


def bench_gpt2(repeats: int):
    import attribfast
    import torch
    from reference_scores import causal_full_logits, causal_target_only

    model_dir = gpt2_bench_model()
    bundle = bundle_for(model_dir, "causal-lm", "gpt2-4x256")
    model = attribfast.load(bundle)
    tokenizer = model._spec.tokenizer
    ids = prompt_ids(tokenizer)
    baseline = model._baseline_id(None)
    continuations = [tokenizer.encode(c, add_special_tokens=False).ids for c in CONTINUATIONS]
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    ids_t = torch.tensor([ids])

    ours = model.attribute(ids, targets=CONTINUATIONS, method="occlusion", pack_targets=False)
    packed = model.attribute(ids, targets=CONTINUATIONS, method="occlusion")
    assert np.abs(packed.matrix - ours.matrix).max() < 1e-4, np.abs(packed.matrix - ours.matrix).max()
    rows = [
        (
            f"attribfast, packed continuations ({packed.token_positions:,} token positions)",
            *median_seconds(lambda: model.attribute(ids, targets=CONTINUATIONS, method="occlusion"), repeats),
        ),
        (
            f"attribfast, unpacked (pack_targets=False; {ours.token_positions:,} token positions)",
            *median_seconds(
                lambda: model.attribute(ids, targets=CONTINUATIONS, method="occlusion", pack_targets=False), repeats
            ),
        ),
    ]

    # Correctness first: every contender computes the same matrix.
    reference = np.stack(
        [captum_occlusion(causal_target_only(hf, c), ids_t, baseline, 64)[0].numpy() for c in continuations], 1
    )
    assert np.abs(reference - ours.matrix).max() < 1e-4, np.abs(reference - ours.matrix).max()

    def typical():
        for c in continuations:
            captum_occlusion(causal_full_logits(hf, len(ids), c), ids_t, baseline, 1)

    rows.append(
        ("Captum, typical (HF forward with full logits, perturbations_per_eval=1)", *median_seconds(typical, repeats))
    )

    def tuned(ppe):
        return lambda: [captum_occlusion(causal_target_only(hf, c), ids_t, baseline, ppe) for c in continuations]

    best = best_of((8, 16, 32, 64), tuned, repeats)
    rows.append((f"Captum, best-tuned (target-only score, perturbations_per_eval={best[2]})", best[0], best[1]))

    longest = max(len(c) for c in continuations)
    seq = len(ids) + longest - 1

    def feeds(n):
        return {
            "input_ids": np.full((n, seq), ids[0], np.int64),
            "attention_mask": np.ones((n, seq), np.int64),
            **causal_target_feeds(n, len(ids), longest),
        }

    floor = ort_floor(bundle / "forward.onnx", feeds, ours.evaluations, (16, 32, 64, 128), repeats)
    rows.append((f"floor: onnxruntime, {ours.evaluations} rows, batch {floor[2]}", floor[0], floor[1]))
    return rows, ours.evaluations


def bench_minilm(repeats: int):
    import torch
    from reference_scores import similarity_score
    from transformers import AutoModel

    model_dir, bundle, model = minilm()
    tokenizer = model._spec.tokenizer
    text = SIMILARITY_TEXT
    ours = model.attribute(text, targets=REFERENCES, method="occlusion")
    rows = [
        ("attribfast", *median_seconds(lambda: model.attribute(text, targets=REFERENCES, method="occlusion"), repeats))
    ]
    hf = AutoModel.from_pretrained(model_dir).eval()
    ids_t = torch.tensor([tokenizer.encode(text).ids])
    baseline = model._baseline_id(None)
    refs = [torch.tensor([tokenizer.encode(r).ids]) for r in REFERENCES]

    reference = np.stack([captum_occlusion(similarity_score(hf, r), ids_t, baseline, 64)[0].numpy() for r in refs], 1)
    assert np.abs(reference - ours.matrix).max() < 1e-4

    def typical():
        for r in refs:
            captum_occlusion(similarity_score(hf, r), ids_t, baseline, 1)

    rows.append(("Captum, typical (perturbations_per_eval=1)", *median_seconds(typical, repeats)))

    def tuned(ppe):
        return lambda: [captum_occlusion(similarity_score(hf, r), ids_t, baseline, ppe) for r in refs]

    best = best_of((8, 16, 32, 64), tuned, repeats)
    rows.append((f"Captum, best-tuned (perturbations_per_eval={best[2]})", best[0], best[1]))
    seq = ids_t.shape[1]
    hidden = model._spec.hidden_size

    def feeds(n):
        return {
            "input_ids": np.tile(ids_t.numpy(), (n, 1)),
            "attention_mask": np.ones((n, seq), np.int64),
            "reference_embeddings": np.ones((n, len(REFERENCES), hidden), np.float32),
        }

    work = reference_embedding_work(bundle, tokenizer)
    floor = ort_floor(bundle / "forward.onnx", feeds, ours.evaluations, (16, 32, 64, 128), repeats, work)
    rows.append((f"floor: onnxruntime, {ours.evaluations} rows, batch {floor[2]}", floor[0], floor[1]))
    return rows, ours.evaluations


def main():
    run_main(
        __doc__.splitlines()[0], "Occlusion", "model rows per attribution", {"gpt2": bench_gpt2, "minilm": bench_minilm}
    )


if __name__ == "__main__":
    main()
