"""Attribution over many texts, collected in one pandas table and a CSV.

    python examples/corpus.py BUNDLE [--csv FILE]

BUNDLE: a sequence-classification bundle. Each text of a small corpus is attributed to every
class; the rows (text, word, class, value) go to one long table. This uses the current API (a list
of texts gives a list of results); a corpus API with batching across texts is planned and will
replace the loop.
"""

from __future__ import annotations

import argparse

import attribfast
import pandas as pd

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "attribution tells which tokens matter for a prediction",
    "hello world, this is a test of the tokenizer with punctuation!",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="sequence-classification bundle")
    parser.add_argument("--csv", default="corpus_attributions.csv", help="CSV file to write")
    args = parser.parse_args()

    model = attribfast.load(args.bundle)
    results = model.attribute(CORPUS, targets=list(model.labels), method="occlusion")
    frames = []
    for number, result in enumerate(results):
        words = result.aggregate("word").to_pandas()
        long = words.reset_index(names="word").melt(id_vars="word", var_name="class", value_name="value")
        frames.append(long.assign(text=number))
    table = pd.concat(frames, ignore_index=True)[["text", "word", "class", "value"]]
    table.to_csv(args.csv, index=False)
    print(f"{len(results)} texts, {len(table)} rows written to {args.csv}")
    # The words that raise each class most across the corpus.
    print(table.loc[table.groupby("class")["value"].idxmax()].round(4).to_string(index=False))


if __name__ == "__main__":
    main()
