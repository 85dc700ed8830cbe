"""Faithfulness of the attribution methods, compared on one input per model (docs/faithfulness.md).

    python benchmarks/compare_methods.py [--only gpt2|minilm] [--exact] [--int8]

attribfast.compare on: the pretrained all-MiniLM-L6-v2 (sentence similarity, the benchmarks'
similarity text against two references) and the GPT-2-style 4x256 LM of bench_prefix (random init,
a 64-token prompt, 2 continuations). Default metrics plus normalised AOPC and leave-one-out Spearman
(metrics="all"), curves at 20 steps (--exact: every feature count). Times are one run each on this
machine (the cost comparison with medians is bench_faithfulness.py). --int8 runs the same on the
int8 copies of the bundles (attribfast.quantize, as bench_int8.py makes them).
"""

from __future__ import annotations

import argparse

from bench_int8 import int8_copy
from bench_prefix import continuations, prompt
from common import CACHE, REFERENCES, SIMILARITY_TEXT, gpt2_bench_model, minilm


def methods():
    import attribfast

    return [
        "occlusion",
        attribfast.ShapleySampling(n_permutations=10),
        attribfast.KernelShap(n_samples=200),
        attribfast.Lime(n_samples=200),
        "integrated_gradients",
        "input_x_gradient",
        "saliency",
    ]


def show(title, comparison):
    import pandas as pd

    print(f"\n### {title}\n")
    table = comparison.table.drop(columns=["wall_seconds"])
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_markdown(floatfmt=".4g") if _has_tabulate() else table.to_string(float_format="%.4g"))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def main():
    import attribfast

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("gpt2", "minilm"))
    parser.add_argument("--exact", action="store_true")
    parser.add_argument("--int8", action="store_true", help="compare on the int8 copies of the bundles")
    args = parser.parse_args()
    copy = int8_copy if args.int8 else (lambda bundle: bundle)
    params = attribfast.Faithfulness(metrics="all", points=None if args.exact else 20)
    if args.only in (None, "minilm"):
        _, bundle, model = minilm()
        model = attribfast.load(copy(bundle))
        comparison = attribfast.compare(model, SIMILARITY_TEXT, REFERENCES[:2], methods(), evaluate=params)
        show(f"all-MiniLM-L6-v2 similarity: {SIMILARITY_TEXT!r} vs 2 references", comparison)
    if args.only in (None, "gpt2"):
        bundle = CACHE / "bundle-gpt2-4x256-p256"
        if not (bundle / "attribfast.json").is_file():
            attribfast.export_model(gpt2_bench_model(positions=256), task="causal-lm", out_dir=bundle, overwrite=True)
        model = attribfast.load(copy(bundle))
        targets = continuations(model._spec.tokenizer)[:2]
        ids = prompt(model._spec.tokenizer, 64)
        comparison = attribfast.compare(model, ids, targets, methods(), evaluate=params)
        show(f"GPT-2 4x256 (random init), 64-token prompt, continuations {targets}", comparison)


if __name__ == "__main__":
    main()
