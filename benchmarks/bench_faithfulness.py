"""Faithfulness evaluation cost next to the occlusion attribution it evaluates.

    python benchmarks/bench_faithfulness.py --repeats 5

Model: the GPT-2-style LM of bench_prefix (4 layers, hidden 256, vocab 50257, 256 positions,
random init). A 64-token prompt, 5 continuations of 5 tokens, occlusion with window 1. Timed, all
in one process, medians of --repeats runs after a warm-up: the occlusion attribution (with prefix
reuse, the default, and without), model.evaluate of its result with the default metrics (deletion
and insertion curves at 20 steps, comprehensiveness and sufficiency at ERASER's 5 bins) with and
without prefix reuse, and with every metric (leave-one-out occlusion included). Ratios are to the
default occlusion of the same run.
"""

from __future__ import annotations

import argparse

from bench_prefix import continuations, prompt
from common import CACHE, gpt2_bench_model, median_seconds


def main():
    import attribfast

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--length", type=int, default=64)
    args = parser.parse_args()
    model_dir = gpt2_bench_model(positions=256)
    bundle = CACHE / "bundle-gpt2-4x256-p256"
    if not (bundle / "attribfast.json").is_file():
        attribfast.export_model(model_dir, task="causal-lm", out_dir=bundle, overwrite=True)
    model = attribfast.load(bundle)
    targets = continuations(model._spec.tokenizer)
    ids = prompt(model._spec.tokenizer, args.length)

    def attribute(reuse):
        return model.attribute(ids, targets=targets, method="occlusion", reuse_prefix=reuse)

    result = attribute(True)
    unreused = attribute(False)
    cases = [
        ("occlusion, prefix reuse (default)", lambda: attribute(True), result.evaluations, result.token_positions),
        ("occlusion, no prefix reuse", lambda: attribute(False), unreused.evaluations, unreused.token_positions),
    ]
    for label, metrics, reuse in (
        ("evaluate, default metrics, prefix reuse", None, True),
        ("evaluate, default metrics, no prefix reuse", None, False),
        ("evaluate, all metrics (LOO included), prefix reuse", "all", True),
    ):
        figures = model.evaluate(result, metrics=metrics, reuse_prefix=reuse).faithfulness

        def run(metrics=metrics, reuse=reuse):
            return model.evaluate(result, metrics=metrics, reuse_prefix=reuse)

        cases.append((label, run, figures["rows_run"], figures["token_positions"]))
    print(
        f"\n### Faithfulness evaluation vs occlusion: {len(ids)}-token prompt, {len(targets)} continuations "
        f"of 5 tokens, GPT-2 4x256\n"
    )
    print("| run | median (s) | min (s) | runs | time / occlusion | model rows | token positions |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    reference = None
    for label, fn, rows, positions in cases:
        median, times = median_seconds(fn, args.repeats)
        reference = reference or median
        print(
            f"| {label} | {median:.4f} | {min(times):.4f} | {len(times)} | {median / reference:.2f}x | "
            f"{rows:,} | {positions:,} |"
        )
    print("\n" + result.__class__.__name__, "figures of the default evaluation:")
    print(model.evaluate(result).faithfulness_table().to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
