"""A fast tokenizer for Marian (opus-mt) checkpoints, which ship only sentencepiece files.

MarianTokenizer splits text into the pieces of source.spm (a sentencepiece Unigram model), maps each
piece to its id in vocab.json (unknown pieces to <unk>) and appends </s>. The same tokenizer is
built here with the tokenizers library: a Unigram model whose id k is vocab.json's token k, scored
by source.spm (read with protobuf, so the sentencepiece package is not needed), sentencepiece's
normalisation table, and "$A </s>" after each text. Language codes (">>fra<<") stay whole tokens.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import MissingTokenizerError

MARIAN_FILES = ("source.spm", "vocab.json")
# Pieces that vocab.json has but source.spm lacks (the target side's) are kept out of the way.
UNSCORED = -1e4


def is_marian(folder: Path) -> bool:
    return all((folder / name).is_file() for name in MARIAN_FILES)


def marian_fast_tokenizer(folder: Path):
    """(fast tokenizer, note for the user) from a Marian checkpoint's sentencepiece files."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    proto = _spm_proto(folder / "source.spm")
    if proto.trainer_spec.model_type != 1:
        raise MissingTokenizerError(f"{folder / 'source.spm'} is not a Unigram sentencepiece model")
    try:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MissingTokenizerError(f"cannot read {folder / 'vocab.json'}: {e}") from e
    by_id = sorted((int(i), token) for token, i in vocab.items())
    if [i for i, _ in by_id] != list(range(len(by_id))):
        raise MissingTokenizerError(f"{folder / 'vocab.json'} does not number its tokens 0..{len(by_id) - 1}")
    config = _config(folder)
    names = {kind: config.get(f"{kind}_token", default) for kind, default in _SPECIAL.items()}
    for kind, token in names.items():
        if token not in vocab:
            raise MissingTokenizerError(f"vocab.json has no {kind} token {token!r}")
    scores = {piece.piece: piece.score for piece in proto.pieces if piece.type in (1, 4)}
    tokenizer = Tokenizer(Unigram([(token, scores.get(token, UNSCORED)) for _, token in by_id], vocab[names["unk"]]))
    charsmap = proto.normalizer_spec.precompiled_charsmap
    # sentencepiece's remove_extra_whitespaces: no leading or trailing spaces, runs of spaces as one.
    extra = proto.normalizer_spec.remove_extra_whitespaces
    steps = [normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")] if extra else []
    tokenizer.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap), *steps] if charsmap else steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    codes = [token for _, token in by_id if re.fullmatch(r">>.+<<", token)]
    tokenizer.add_special_tokens([AddedToken(t, normalized=False) for t in [*names.values(), *codes]])
    eos = names["eos"]
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, vocab[eos])])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=eos,
        unk_token=names["unk"],
        pad_token=names["pad"],
        additional_special_tokens=codes or None,
    )
    missing = sum(1 for piece in scores if piece not in vocab)
    note = "built a fast tokenizer from the Marian sentencepiece files (source.spm, vocab.json)"
    if missing:
        note += f"; {missing} pieces of source.spm are not in vocab.json and are never produced"
    target = folder / "target.spm"
    if target.is_file() and target.read_bytes() != (folder / "source.spm").read_bytes():
        note += "; target texts are split with source.spm's pieces (a bundle has one tokenizer)"
    return fast, note


_SPECIAL = {"eos": "</s>", "unk": "<unk>", "pad": "<pad>"}


def _config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError as e:
        raise MissingTokenizerError(f"cannot read {path}: {e}") from e
    # Tokens may be stored as AddedToken dicts.
    return {k: v.get("content") if isinstance(v, dict) else v for k, v in config.items()}


def _spm_proto(path: Path):
    try:
        from transformers.convert_slow_tokenizer import import_protobuf

        model_pb2 = import_protobuf()
    except ImportError as e:
        raise MissingTokenizerError(
            f"reading {path.name} needs protobuf (pip install protobuf) or sentencepiece: {e}"
        ) from e
    proto = model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise MissingTokenizerError(f"{path} is not a sentencepiece model: {e}") from e
    return proto
