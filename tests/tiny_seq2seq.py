"""Tokenizers for tiny random-init encoder-decoder models (t5, bart, marian, mbart), built here
without downloads, each with its family's special-token conventions for sources and targets.

T5 and mBART use transformers' own tokenizer classes over a Unigram vocabulary trained on the
corpus of tiny_models.py (so mBART's target language handling is transformers'); Marian's class
needs sentencepiece files, so it is a fast tokenizer with Marian's conventions ("text </s>", the
decoder starting from <pad>); BART's is tiny_models.bart_tokenizer ("<s> text </s>").
"""

from __future__ import annotations

import json

from tiny_models import CORPUS, bart_tokenizer

SOURCE_LANG, TARGET_LANG = "en_XX", "ro_RO"


def _unigram(special: list[str], vocab_size: int = 160):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=special, unk_token="<unk>")
    tokenizer.train_from_iterator(CORPUS, trainer)
    return tokenizer


def _vocab(special: list[str]) -> list[tuple[str, float]]:
    """A trained Unigram vocabulary [(piece, score)], the special tokens first in the given order."""
    vocab = [(piece, float(score)) for piece, score in json.loads(_unigram(special).to_str())["model"]["vocab"]]
    if [piece for piece, _ in vocab[: len(special)]] != special:
        raise RuntimeError("the trainer did not put the special tokens first")
    return vocab


def t5_tokenizer():
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=_vocab(["<pad>", "</s>", "<unk>"]), extra_ids=2)


def mbart_tokenizer():
    from transformers import MBartTokenizer
    from transformers.models.mbart.tokenization_mbart import FAIRSEQ_LANGUAGE_CODES

    vocab = _vocab(["<s>", "<pad>", "</s>", "<unk>"])
    vocab += [(code, 0.0) for code in FAIRSEQ_LANGUAGE_CODES] + [("<mask>", 0.0)]
    return MBartTokenizer(vocab=vocab, src_lang=SOURCE_LANG, tgt_lang=TARGET_LANG)


def marian_tokenizer():
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tokenizer = _unigram(["</s>", "<unk>", "<pad>"])
    eos = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


def seq2seq_tokenizer(kind: str):
    """(fast tokenizer, config fields for its special tokens, decoder_start_token_id included)."""
    fast = {"t5": t5_tokenizer, "bart": bart_tokenizer, "marian": marian_tokenizer, "mbart": mbart_tokenizer}[kind]()
    fields = {"pad_token_id": fast.pad_token_id, "eos_token_id": fast.eos_token_id}
    if fast.bos_token_id is not None:
        fields["bos_token_id"] = fast.bos_token_id
    # As the real checkpoints: T5 and Marian start from <pad>, BART from </s>, mBART (en-ro) from
    # the target language code, which its tokenizer puts last in a target.
    start = {
        "t5": fast.pad_token_id,
        "marian": fast.pad_token_id,
        "bart": fast.eos_token_id,
        "mbart": fast.convert_tokens_to_ids(TARGET_LANG),
    }[kind]
    fields["decoder_start_token_id"] = start
    return fast, fields
