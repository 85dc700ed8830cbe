"""Hierarchical attribution against full token occlusion on a 2,000-token prompt, on one CPU.

    python benchmarks/bench_hierarchical.py --repeats 5 --full-repeats 3

Model: a GPT-2-style LM (2 layers, hidden 128, 4 heads, vocab 50257, 2048 positions, random init);
full token occlusion of a 2,000-token prompt runs ~2,000 rows of up to 2,000 positions, which a
bigger model makes a matter of many minutes per run on this machine. Prompt: sentences of the test
corpus, capitalised and ended with a period, up to 2,000 tokens; one continuation of 5 tokens.
Everything runs with prefix reuse and the default memory budget (1 GiB).

Each contender runs in its own process (so that its peak RSS, resource.getrusage's ru_maxrss, is
its own): one warm-up run, then --repeats timed runs (full token occlusion: --full-repeats runs,
no warm-up), reported as median and min. "top-10 agreement": the share of full occlusion's 10 tokens of largest
|value| that the contender also ranks among its 10 largest.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import CACHE, current_bundle, median_seconds

N_TOKENS = 2000
CONTENDERS = {
    "occlusion (token, window 1)": lambda a: a.Occlusion(),
    "occlusion (sentence groups)": lambda a: a.FeatureAblation(groups="sentence"),
    "Hierarchical(keep=0.5)": lambda a: a.Hierarchical(keep=0.5),
    "Hierarchical(keep=5)": lambda a: a.Hierarchical(keep=5),
    "Hierarchical(keep=2)": lambda a: a.Hierarchical(keep=2),
}
FULL = "occlusion (token, window 1)"
COARSE = "occlusion (sentence groups)"  # one value per sentence: no token ranking to compare
TARGET = " the quick brown fox jumps"


def model_dir() -> Path:
    import torch
    from tiny_models import gpt2_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = CACHE / "gpt2-2x128-p2048"
    if not (folder / "config.json").is_file():
        fast = gpt2_tokenizer()
        torch.manual_seed(0)
        config = GPT2Config(n_layer=2, n_embd=128, n_head=4, n_positions=2048, vocab_size=50257,
                            eos_token_id=fast.eos_token_id, bos_token_id=fast.eos_token_id)
        GPT2LMHeadModel(config).eval().save_pretrained(folder)
        fast.save_pretrained(folder)
    return folder


def bundle() -> Path:
    import attribfast

    out = CACHE / "bundle-gpt2-2x128-p2048"
    if not current_bundle(out, "causal-lm"):
        attribfast.export_model(model_dir(), task="causal-lm", out_dir=out, overwrite=True)
    return out


def prompt(tokenizer) -> str:
    from tiny_models import CORPUS

    sentences = [s[0].upper() + s[1:] + "." for s in CORPUS[:5]]
    parts: list[str] = []
    while len(tokenizer.encode(" ".join(parts + [sentences[len(parts) % 5]])).ids) <= N_TOKENS:
        parts.append(sentences[len(parts) % 5])
    return " ".join(parts)


def run_contender(name: str, repeats: int, out: Path) -> None:
    """In a child process: time one contender, save its matrix, print its figures as JSON."""
    import attribfast

    model = attribfast.load(bundle())
    text = prompt(model._spec.tokenizer)
    method = CONTENDERS[name](attribfast)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = []
    # Full occlusion takes minutes a run: no warm-up run for it (opening the sessions is ~0.1 s of it).
    median, times = median_seconds(lambda: results.append(model.attribute(text, [TARGET], method=method)), repeats,
                                   warmup=0 if name == FULL else 1)
    result = results[-1]
    np.save(out, result.matrix)
    print(json.dumps({
        "median": median, "times": times, "rows": result.evaluations, "positions": result.token_positions,
        "tokens": len(result.tokens), "rss_before_mb": before / 1024,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "hierarchy": result.parameters.get("hierarchy"),
    }))


def top_agreement(matrix: np.ndarray, reference: np.ndarray, k: int = 10) -> float:
    top = set(np.argsort(-np.abs(reference[:, 0]), kind="stable")[:k])
    return len(top & set(np.argsort(-np.abs(matrix[:, 0]), kind="stable")[:k])) / k


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--full-repeats", type=int, default=3)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--export", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export:
        bundle()
        return
    if args.contender:
        run_contender(args.contender, args.repeats, Path(args.out))
        return
    # Exported once, before any timing, in a child: a child process starts with its parent's peak
    # RSS (Linux keeps ru_maxrss across fork and exec), so this process must stay small.
    subprocess.run([sys.executable, __file__, "--export"], check=True, capture_output=True)
    figures, matrices = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CONTENDERS:
            out = Path(tmp) / f"{len(matrices)}.npy"
            repeats = args.full_repeats if name == FULL else args.repeats
            child = subprocess.run([sys.executable, __file__, "--contender", name, "--repeats", str(repeats),
                                    "--out", str(out)], check=True, capture_output=True, text=True)
            figures[name] = json.loads(child.stdout.strip().splitlines()[-1])
            print(name, figures[name], file=sys.stderr, flush=True)
            matrices[name] = np.load(out)
    full = figures[FULL]
    print(f"\n### {full['tokens']}-token prompt, one continuation of 5 tokens\n")
    print("| contender | median (s) | min (s) | runs | time / full | rows | token positions | top-10 agreement |"
          " peak RSS (MB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, f in figures.items():
        agreement = "–" if name == COARSE else f"{top_agreement(matrices[name], matrices[FULL]):.1f}"
        print(f"| {name} | {f['median']:.3f} | {min(f['times']):.3f} | {len(f['times'])} | "
              f"{f['median'] / full['median']:.3f}x | {f['rows']:,} | {f['positions']:,} | {agreement} | "
              f"{f['rss_peak_mb']:.0f} |")
    print(f"\nRSS after loading the bundle, before attributing: {full['rss_before_mb']:.0f} MB")
    for name, f in figures.items():
        if f["hierarchy"]:
            print(f"{name}: " + "; ".join(
                f"{e['level']}: {e['groups']} groups, {e['rows']} rows"
                + (f", {e['kept']} kept" if "kept" in e else "") for e in f["hierarchy"]))


if __name__ == "__main__":
    main()
