"""int8 bundles: occlusion time fp32 vs int8 in one run, and how far the int8 matrix drifts.

    python benchmarks/bench_int8.py --repeats 7

Models: the pretrained all-MiniLM-L6-v2 (sentence similarity, 5 references) and the GPT-2-style
LM of common.py (4 layers, hidden 256, vocab 50257; 64-token prompt, 5 continuations). Each fp32
bundle is quantized once by attribfast.quantize (defaults: per-channel uint8 weights, uint8
activations). The fp32 and int8 runs alternate, so that both see the same machine load; the table
gives medians and the ratio. Drift: max |int8 - fp32| over the occlusion matrix (and its share of
the largest fp32 attribution), and the Spearman rank correlation of the whole matrix and of each
column.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from common import CACHE, CONTINUATIONS, REFERENCES, SIMILARITY_TEXT, bundle_for, gpt2_bench_model, minilm, prompt_ids


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks = [np.argsort(np.argsort(np.ravel(x), kind="stable")) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def int8_copy(bundle):
    import attribfast

    out = CACHE / f"{bundle.name}-int8"
    if not (out / "attribfast.json").is_file():
        attribfast.quantize(bundle, out, overwrite=True)
    return out


def compare(name: str, bundle, text, targets, repeats: int) -> None:
    import attribfast

    started = time.perf_counter()
    quantized = int8_copy(bundle)
    print(f"\n### {name} (int8 copy ready in {time.perf_counter() - started:.1f} s)\n")
    models = {"fp32": attribfast.load(bundle), "int8": attribfast.load(quantized)}
    results = {key: model.attribute(text, targets=targets, method="occlusion") for key, model in models.items()}
    times = {key: [] for key in models}
    for _ in range(repeats):
        for key, model in models.items():
            start = time.perf_counter()
            model.attribute(text, targets=targets, method="occlusion")
            times[key].append(time.perf_counter() - start)
    medians = {key: statistics.median(values) for key, values in times.items()}
    print("| bundle | median (s) | min (s) | runs | time / fp32 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for key, values in times.items():
        ratio = medians[key] / medians["fp32"]
        print(f"| {key} | {medians[key]:.4f} | {min(values):.4f} | {len(values)} | {ratio:.2f}x |")
    a, b = results["fp32"].matrix, results["int8"].matrix
    drift = float(np.abs(a - b).max())
    columns = [spearman(a[:, j], b[:, j]) for j in range(a.shape[1])]
    sizes = {key: sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".onnx", ".data", ".bin"))
             for key, path in (("fp32", bundle), ("int8", quantized))}
    print(
        f"\n{results['fp32'].evaluations} rows per attribution, {a.shape[0]} tokens x {a.shape[1]} targets; "
        f"graph bytes fp32 {sizes['fp32'] / 1e6:.1f} MB, int8 {sizes['int8'] / 1e6:.1f} MB (gradient graph stays fp32)"
    )
    print(
        f"max |int8 - fp32| = {drift:.4g} ({drift / np.abs(a).max():.1%} of the largest |fp32| attribution); "
        f"clean scores fp32 {np.round(results['fp32'].target_scores, 4).tolist()} "
        f"int8 {np.round(results['int8'].target_scores, 4).tolist()}"
    )
    print(f"Spearman rank correlation: whole matrix {spearman(a, b):.3f}; per column {np.round(columns, 3).tolist()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", choices=("minilm", "gpt2"))
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores")
    if args.only in (None, "minilm"):
        _, bundle, _ = minilm()
        compare("all-MiniLM-L6-v2 similarity, 5 references", bundle, SIMILARITY_TEXT, REFERENCES, args.repeats)
    if args.only in (None, "gpt2"):
        bundle = bundle_for(gpt2_bench_model(), "causal-lm", "gpt2-4x256")
        import attribfast

        ids = prompt_ids(attribfast.load(bundle)._spec.tokenizer, 64)
        compare("GPT-2 4x256, 64-token prompt, 5 continuations", bundle, ids, CONTINUATIONS, args.repeats)


if __name__ == "__main__":
    main()
