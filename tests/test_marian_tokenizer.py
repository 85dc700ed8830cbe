"""Marian (opus-mt) checkpoints ship sentencepiece files, not tokenizer.json: the exporter builds the
fast tokenizer itself (protobuf only, no sentencepiece package, no download). A tiny sentencepiece
model is written here; the expected pieces are its best segmentations, derived by hand."""

from __future__ import annotations

import json

import pytest
from attribfast.errors import MissingTokenizerError
from attribfast.export.load import load_model, load_tokenizer
from attribfast.tasks import get_task

NORMAL, UNKNOWN, CONTROL = 1, 2, 3
# (piece, score, type) of source.spm, in sentencepiece's own order.
PIECES = [
    ("<unk>", 0.0, UNKNOWN),
    ("<s>", 0.0, CONTROL),
    ("</s>", 0.0, CONTROL),
    ("▁the", -1.0, NORMAL),
    ("▁t", -2.0, NORMAL),
    ("he", -2.0, NORMAL),
    ("▁", -3.0, NORMAL),
    ("t", -4.0, NORMAL),
    ("h", -4.0, NORMAL),
    ("e", -4.0, NORMAL),
    ("▁cat", -1.5, NORMAL),
    ("c", -4.0, NORMAL),
    ("a", -4.0, NORMAL),
]
# Marian numbers tokens its own way (vocab.json), with a language code and a target-only piece.
VOCAB = ["</s>", "<unk>", ">>fra<<", "▁the", "he", "▁t", "▁", "t", "h", "e", "▁cat", "c", "a", "<pad>", "▁zz"]


def write_marian(folder, pieces=PIECES, model_type=1):
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    proto.trainer_spec.model_type = model_type
    proto.trainer_spec.unk_id = 0
    proto.normalizer_spec.remove_extra_whitespaces = True
    for piece, score, kind in pieces:
        entry = proto.pieces.add()
        entry.piece, entry.score, entry.type = piece, score, kind
    folder.mkdir(exist_ok=True)
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(proto.SerializeToString())
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(VOCAB)}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "MarianTokenizer"}))
    return folder


def test_marian_sentencepiece_files_give_the_marian_ids(tmp_path):
    notes = []
    fast = load_tokenizer(write_marian(tmp_path / "m"), notes.append)
    assert notes and "source.spm" in notes[0] and "target texts" not in notes[0]
    ids = VOCAB.index
    assert fast("the cat")["input_ids"] == [ids("▁the"), ids("▁cat"), ids("</s>")]
    assert fast("  the   cat ")["input_ids"] == fast("the cat")["input_ids"]
    assert fast(">>fra<< the")["input_ids"] == [ids(">>fra<<"), ids("▁the"), ids("</s>")]
    # "▁t" + "h" (-6) beats "▁" + "t" + "h" (-11); x is unknown.
    assert fast("thx")["input_ids"] == [ids("▁t"), ids("h"), ids("<unk>"), ids("</s>")]
    assert (fast.pad_token_id, fast.eos_token_id, fast.unk_token_id) == (13, 0, 1)
    assert fast.decode(fast("the cat")["input_ids"], skip_special_tokens=True) == "the cat"


def test_marian_tokenizer_at_export_and_its_errors(tmp_path):
    from transformers import MarianConfig, MarianMTModel

    folder = write_marian(tmp_path / "model")
    config = MarianConfig(
        d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=16, decoder_ffn_dim=16, vocab_size=len(VOCAB), pad_token_id=13, eos_token_id=0,
        decoder_start_token_id=13, max_position_embeddings=32,
    )  # fmt: skip
    MarianMTModel(config).save_pretrained(folder)
    notes = []
    _, fast = load_model(folder, get_task("seq2seq"), None, notes.append)
    assert fast.backend_tokenizer is not None and any("Marian" in note for note in notes)
    (folder / "target.spm").write_bytes(b"")  # a different target model: the note says how targets split
    load_tokenizer(folder, notes.append)
    assert "target texts" in notes[-1]

    (folder / "source.spm").write_bytes(b"\xff\xfe not a model")
    with pytest.raises(MissingTokenizerError, match="not a sentencepiece model"):
        load_tokenizer(folder)
    write_marian(folder, model_type=2)
    with pytest.raises(MissingTokenizerError, match="not a Unigram"):
        load_tokenizer(folder)
    write_marian(folder)
    (folder / "vocab.json").write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(MissingTokenizerError, match="does not number"):
        load_tokenizer(folder)
