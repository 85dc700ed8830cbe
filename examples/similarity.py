"""Which tokens make two sentences similar? Attribute cosine similarity to a sentence's tokens.

    python examples/similarity.py BUNDLE [--text TEXT] [--reference TEXT ...]

BUNDLE: a sentence-similarity bundle (`attribfast export MODEL --task sentence-similarity -o
BUNDLE`, e.g. all-MiniLM-L6-v2). Each column is a reference sentence; the score is the cosine
similarity of the mean-pooled sentence embeddings, as sentence-transformers computes it.
"""

from __future__ import annotations

import argparse

import attribfast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="sentence-similarity bundle")
    parser.add_argument("--text", default="A man is playing a guitar on stage.")
    parser.add_argument("--reference", action="append", help="a reference sentence (repeat)")
    args = parser.parse_args()
    references = args.reference or ["Someone performs music.", "A chef is cooking pasta."]

    model = attribfast.load(args.bundle)
    result = model.attribute(args.text, targets=references, method="occlusion")
    for reference, score in zip(result.targets, result.target_scores, strict=True):
        print(f"cosine similarity to {reference!r}: {score:.4f}")
    print(result.aggregate("word").to_pandas().round(4).to_string())


if __name__ == "__main__":
    main()
