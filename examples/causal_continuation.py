"""Why does a causal LM continue a prompt this way? Attribute continuations to the prompt's tokens.

    python examples/causal_continuation.py [BUNDLE] [--prompt TEXT] [--target TEXT ...]

BUNDLE: a causal-lm bundle (`attribfast export MODEL --task causal-lm -o BUNDLE`); default: the
arithmetic model shipped with attribfast. Prints the plain attribution (score: log p(continuation
| prompt)), then the contrast of the first target against the second ("why this rather than
that"), and writes heatmap PNGs of both.
"""

from __future__ import annotations

import argparse

import attribfast
from attribfast.demo import shipped_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", help="causal-lm bundle (default: the shipped arithmetic model)")
    parser.add_argument("--prompt", default="-$16,000√-0.8=")
    parser.add_argument("--target", action="append", help="a continuation (repeat; default: two expressions)")
    parser.add_argument("--out", default="continuation", help="prefix of the PNGs written")
    args = parser.parse_args()
    # {column label: continuation}; the arithmetic model writes each expression on a new line.
    targets = {t: t for t in args.target} if args.target else {e: "\n" + e for e in ("4900 / 100 = 49", "9 + 3 = 12")}
    if len(targets) < 2:
        parser.error("give at least two --target: the second is the first one's contrast")
    first, second = list(targets.values())[:2]

    model = attribfast.load(args.bundle or shipped_bundle())
    method = attribfast.IntegratedGradients(n_steps=32)
    result = model.attribute(args.prompt, targets=targets, method=method)
    for label, score in zip(result.targets, result.target_scores, strict=True):
        print(f"log p({label!r} | prompt) = {score:.4f}")
    print(result.to_pandas().round(4).to_string())

    # "Why this rather than that": log p(first) - log p(second) and the reverse, from one run.
    contrast = model.attribute(
        args.prompt, targets=targets, contrast=[second, first] + [first] * (len(targets) - 2), method=method
    )
    print(contrast.to_pandas().round(4).to_string())

    import matplotlib

    matplotlib.use("Agg")
    result.plot()[0].savefig(f"{args.out}.png", dpi=100)
    contrast.plot()[0].savefig(f"{args.out}-contrast.png", dpi=100)
    print(f"heatmaps written to {args.out}.png and {args.out}-contrast.png")


if __name__ == "__main__":
    main()
