"""Which words make a classifier choose a class? Occlusion per token, then summed into words.

    python examples/classifier.py BUNDLE [--text TEXT]

BUNDLE: a sequence-classification bundle (`attribfast export MODEL --task
sequence-classification -o BUNDLE`). Prints the predicted class, the attribution of every class
to the text's words (the tokenizer's words), and the predicted class against the others.
"""

from __future__ import annotations

import argparse

import attribfast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="sequence-classification bundle")
    parser.add_argument("--text", default="hello world, this is a test of the tokenizer!")
    args = parser.parse_args()

    model = attribfast.load(args.bundle)
    top = model.attribute(args.text, method="occlusion")  # no targets: the predicted class
    print(f"predicted class: {top.targets[0]} (score {top.target_scores[0]:.4f}, {model.task})")

    every = model.attribute(args.text, targets=list(model.labels), method="occlusion")
    print(every.aggregate("word").to_pandas().round(4).to_string())

    # Predicted class rather than the others, in the same sweep.
    contrast = model.attribute(args.text, targets=list(model.labels), method="occlusion", contrast="others")
    column = contrast.targets[list(model.labels).index(top.targets[0])]
    words = contrast.aggregate("word").to_pandas()[column]
    print(f"words for {column!r}, strongest first:")
    print(words.sort_values(key=abs, ascending=False).round(4).to_string())


if __name__ == "__main__":
    main()
