"""Compares the exporter's Marian fast tokenizer with transformers' MarianTokenizer (which needs the
sentencepiece package: not a dependency of attribfast or its tests) on two sentencepiece models
trained here (nmt_nfkc normalisation), a Marian-style vocab.json, the test corpus and 300 random texts.

    pip install sentencepiece && python scripts/check_marian_tokenizer.py [folder]
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def build(out: Path, corpus: list[str]) -> None:
    import sentencepiece as spm

    for side, size in (("source", 63), ("target", 66)):
        spm.SentencePieceTrainer.train(
            minloglevel=2,
            sentence_iterator=iter(corpus * 3),
            model_prefix=str(out / side),
            vocab_size=size,
            model_type="unigram",
            normalization_rule_name="nmt_nfkc",
            character_coverage=1.0,
            bos_id=-1,
            eos_id=1,
            unk_id=0,
            pad_id=-1,
        )
        (out / f"{side}.model").rename(out / f"{side}.spm")
    # Marian's numbering: </s>, <unk>, a language code, the pieces of both models, <pad> last.
    vocab = {"</s>": 0, "<unk>": 1, ">>deu<<": 2}
    for side in ("source", "target"):
        processor = spm.SentencePieceProcessor(model_file=str(out / f"{side}.spm"))
        for i in range(processor.get_piece_size()):
            vocab.setdefault(processor.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "MarianTokenizer"}))


def main() -> None:
    from attribfast.export.marian import marian_fast_tokenizer
    from tiny_models import CORPUS
    from transformers import MarianTokenizer

    out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
    build(out, list(CORPUS))
    slow = MarianTokenizer(str(out / "source.spm"), str(out / "target.spm"), str(out / "vocab.json"))
    fast, note = marian_fast_tokenizer(out)
    print(note)
    rng = random.Random(0)
    words = " ".join(CORPUS).split()
    texts = [*CORPUS, "  Hello   world  ", "ｆｕｌｌｗｉｄｔｈ text", ">>deu<< the cat", "über naïve café"]
    texts += ["x\ty\nz", "a  b", "", "the </s> end"]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(300)]
    mismatches = [t for t in texts if slow(t)["input_ids"] != fast(t)["input_ids"]]
    for text in mismatches[:8]:
        print(repr(text), slow(text)["input_ids"], fast(text)["input_ids"])
    print(f"mismatches: {len(mismatches)} of {len(texts)}")
    raise SystemExit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
