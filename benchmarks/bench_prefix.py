"""Prefix (key/value) reuse: occlusion on a causal LM with and without reuse, Captum, the ORT floor.

    python benchmarks/bench_prefix.py --repeats 5

Model: a GPT-2-style LM (4 layers, hidden 256, vocab 50257, 256 positions, random init). Prompts of
64 / 128 / 240 tokens, 5 continuations of 5 tokens each, occlusion with window 1. Contenders:
attribfast with prefix reuse (the default), attribfast with reuse_prefix=False, Captum best-tuned
(target-only head, the best perturbations_per_eval), and plain onnxruntime running the no-reuse
rows through forward.onnx at its best batch size. Timings are medians of --repeats runs in one
process; every contender's matrix is checked against the no-reuse one first. Token positions: what
each attribfast run computed (batch x padded length of every model run, the prefix run included).
--device cuda runs attribfast on ONNX Runtime's CUDA provider and Captum on the same GPU (fp32, TF32
off, sdpa attention, perturbations_per_eval 32 / 64 / 128); the onnxruntime floor is CPU-only and is
left out there.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from common import (
    CACHE,
    PROMPT_WORDS,
    best_of,
    causal_target_feeds,
    current_bundle,
    gpt2_bench_model,
    median_seconds,
    ort_floor,
)

LENGTHS = (64, 128, 240)
WORDS = PROMPT_WORDS.split()


def continuations(tokenizer, count: int = 5, length: int = 5) -> list[str]:
    """count continuation strings of exactly `length` tokens, from consecutive prompt words."""
    found = []
    for start in range(len(WORDS)):
        for end in range(start + 1, len(WORDS) + 1):
            text = " " + " ".join(WORDS[start:end])
            size = len(tokenizer.encode(text, add_special_tokens=False).ids)
            if size == length and text not in found:
                found.append(text)
                break
            if size > length:
                break
        if len(found) == count:
            return found
    raise RuntimeError("not enough 5-token continuations in the prompt words")


def prompt(tokenizer, n: int) -> list[int]:
    ids = tokenizer.encode(PROMPT_WORDS).ids
    while len(ids) < n:
        ids = ids + ids
    return ids[:n]


def bench_length(model, hf, bundle, n: int, targets: list[str], repeats: int, captum_repeats: int, device: str):
    import torch
    from captum.attr import Occlusion
    from reference_scores import causal_target_only

    tokenizer = model._spec.tokenizer
    ids = prompt(tokenizer, n)

    def run(reuse, pack=False):
        return model.attribute(ids, targets=targets, method="occlusion", reuse_prefix=reuse, pack_targets=pack)

    reused, full = run(True), run(False)
    both, packed = run(True, True), run(False, True)
    difference = max(float(np.abs(r.matrix - full.matrix).max()) for r in (reused, both, packed))
    rows = [
        ("attribfast, prefix reuse", *median_seconds(lambda: run(True), repeats), reused.token_positions),
        ("attribfast, no reuse", *median_seconds(lambda: run(False), repeats), full.token_positions),
        ("attribfast, packed + prefix reuse", *median_seconds(lambda: run(True, True), repeats), both.token_positions),
        ("attribfast, packed, no reuse", *median_seconds(lambda: run(False, True), repeats), packed.token_positions),
    ]

    baseline = model._baseline_id(None)
    pieces = [tokenizer.encode(t, add_special_tokens=False).ids for t in targets]
    ids_t = torch.tensor([ids], device=device)

    def captum(ppe):
        def run():
            result = [
                Occlusion(causal_target_only(hf, c)).attribute(
                    ids_t, sliding_window_shapes=(1,), baselines=baseline, perturbations_per_eval=ppe
                )
                for c in pieces
            ]
            if device == "cuda":
                torch.cuda.synchronize()
            return result

        return run

    captum_matrix = np.stack([m[0].cpu().numpy() for m in captum(32)()], 1)
    captum_difference = float(np.abs(captum_matrix - full.matrix).max())
    best = best_of((16, 32) if device == "cpu" else (32, 64, 128), captum, captum_repeats)
    rows.append((f"Captum best-tuned (target-only, perturbations_per_eval={best[2]})", best[0], best[1], None))
    if device != "cpu":
        return rows, difference, captum_difference, full.evaluations

    seq = n + 4

    def feeds(count):
        return {
            "input_ids": np.full((count, seq), ids[0], np.int64),
            "attention_mask": np.ones((count, seq), np.int64),
            **causal_target_feeds(count, n, 5),
        }

    floor = ort_floor(bundle / "forward.onnx", feeds, full.evaluations, (8, 16), repeats)
    rows.append((f"floor: onnxruntime, {full.evaluations} full rows, batch {floor[2]}", floor[0], floor[1], None))
    return rows, difference, captum_difference, full.evaluations


def main():
    import attribfast
    import torch
    from transformers import AutoModelForCausalLM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--captum-repeats", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    model_dir = gpt2_bench_model(positions=256)  # room for 240 + 5 tokens
    bundle = CACHE / "bundle-gpt2-4x256-p256"
    if not current_bundle(bundle, "causal-lm"):
        attribfast.export_model(model_dir, task="causal-lm", out_dir=bundle, overwrite=True)
    sizes = {f.name: f.stat().st_size for f in sorted(bundle.iterdir())}
    print("bundle files (bytes):", sizes)
    model = attribfast.load(bundle, providers=(args.device,))
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # as attribfast's CUDA sessions
        print(attribfast.runtime_info(), f"torch {torch.__version__}", torch.cuda.get_device_name())
    attention = "eager" if args.device == "cpu" else "sdpa"
    hf = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attention).eval().to(args.device)
    targets = continuations(model._spec.tokenizer)
    for n in args.lengths:
        rows, difference, captum_difference, evaluations = bench_length(
            model, hf, bundle, n, targets, args.repeats, args.captum_repeats, args.device
        )
        print(f"\n### Occlusion, window 1: {n}-token prompt, 5 continuations of 5 tokens ({evaluations} rows)\n")
        print(f"max |(reuse, packed) - neither| = {difference:.2e}; ", end="")
        print(f"max |Captum - no reuse| = {captum_difference:.2e}\n")
        reference = rows[0][1]
        print("| contender | median (s) | min (s) | runs | time / reuse | token positions |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, median, times, positions in rows:
            count = "" if positions is None else f"{positions:,}"
            print(f"| {name} | {median:.4f} | {min(times):.4f} | {len(times)} | {median / reference:.2f}x | {count} |")


if __name__ == "__main__":
    main()
