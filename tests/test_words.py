"""Words come from the tokenizer's pre-tokenizer (attribfast.words), whitespace only as the fallback:
aggregate("word") and groups="word" on text without spaces and where punctuation splits words."""

from __future__ import annotations

import attribfast
import numpy as np
import pytest
from attribfast import Attribution
from attribfast.words import word_groups
from onnx_models import linear_score_model
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

CORPUS = ["我喜欢猫和狗。", "东京很大。", "hello, world! it is fine.", "hello世界 ok"] * 3


def tokenizer(kind: str) -> Tokenizer:
    """BPE trained on CORPUS with the given pre-tokenizer ("bert": per CJK character and per
    punctuation mark; "scripts": whitespace, then Unicode script; "bytelevel": GPT-2's; "none")."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    if kind == "bert":
        tok.normalizer = normalizers.BertNormalizer(lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    elif kind == "scripts":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.UnicodeScripts()])
    elif kind == "bytelevel":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet() if kind == "bytelevel" else []
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]"], initial_alphabet=alphabet)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def linear_model(tmp_path, kind: str):
    tok = tokenizer(kind)
    table = np.random.default_rng(0).standard_normal((tok.get_vocab_size(), 2)).astype(np.float32)
    path = tmp_path / f"linear-{kind}.onnx"
    path.write_bytes(linear_score_model(table))
    return attribfast.AttributionModel.from_onnx(path, tokenizer=tok), table, tok


@pytest.mark.parametrize(
    "kind, text, words",
    [
        # Chinese, no spaces: a per-character pre-tokenizer makes every character a word.
        ("bert", "我喜欢猫", ("我", "喜", "欢", "猫")),
        # Scripts split where spaces do not: "世界" is a word of two tokens.
        ("scripts", "hello世界 ok", ("hello", "世界", "ok")),
        # Punctuation: whitespace would say "hello," and "world!".
        ("bytelevel", "hello, world!", ("hello", ",", "world", "!")),
        ("bert", "hello, world!", ("hello", ",", "world", "!")),
    ],
)
def test_aggregate_and_groups_follow_the_tokenizer_words(tmp_path, kind, text, words):
    model, table, tok = linear_model(tmp_path, kind)
    encoding = tok.encode(text)
    result = model.attribute(text, targets=[0, 1], method="occlusion")
    np.testing.assert_array_equal(result.word_ids, [-1 if w is None else w for w in encoding.word_ids])
    aggregated = result.aggregate("word")
    assert aggregated.tokens == words
    # The whitespace rule, which the tokenizer's words replace, gives other words here.
    assert len(set(word_groups(text, result.offsets, result.special))) != len(words)
    groups = np.asarray(word_groups(text, result.offsets, result.special, result.word_ids))
    for word in range(len(words)):
        np.testing.assert_allclose(aggregated.matrix[word], result.matrix[groups == word].sum(0), rtol=1e-6)
    # groups="word" ablates whole words: on the linear model each token of a word gets the word's drop.
    ablation = model.attribute(text, targets=[0, 1], method=attribfast.FeatureAblation(groups="word"))
    ids = np.asarray(encoding.ids)
    drop = table[ids] - table[model._baseline_id(None)]
    expected = np.stack([drop[groups == g].sum(0) for g in groups])
    np.testing.assert_allclose(ablation.matrix, expected, atol=1e-5, rtol=0)


def test_a_tokenizer_without_pre_tokenizer_falls_back_to_whitespace(tmp_path):
    model, _, tok = linear_model(tmp_path, "none")
    assert all(w == 0 for w in tok.encode("hello, world!").word_ids)  # one "word": useless as words
    result = model.attribute("hello, world!", targets=[0], method="occlusion")
    assert result.word_ids is None
    # Whitespace chunks by each token's first character (this BPE merged ", w" across the space).
    words = result.aggregate("word")
    assert words.tokens == ("hello, w", "orld!")


def test_word_ids_survive_save_load_and_a_second_aggregation(tmp_path):
    model, _, _ = linear_model(tmp_path, "bert")
    result = model.attribute("我喜欢猫", targets=[0], method="occlusion")
    result.save(tmp_path / "r.npz")
    loaded = Attribution.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(loaded.word_ids, result.word_ids)
    once = loaded.aggregate("word")
    assert once.tokens == ("我", "喜", "欢", "猫")
    assert once.aggregate("word").tokens == once.tokens


def test_word_groups_by_hand():
    text = "ab, cd"
    offsets = np.array([[0, 0], [0, 1], [1, 2], [2, 3], [4, 6], [0, 0]])
    special = np.array([True, False, False, False, False, True])
    # Tokenizer words: "ab" "," "cd"; special tokens alone.
    assert word_groups(text, offsets, special, np.array([-1, 0, 0, 1, 2, -1])) == [0, 1, 1, 2, 3, 4]
    # Whitespace: "ab," "cd".
    assert word_groups(text, offsets, special) == [0, 1, 1, 1, 2, 3]
    # A token that is only a space joins the word that follows it (whitespace rule).
    assert word_groups("a b", np.array([[0, 1], [1, 2], [2, 3]]), None) == [0, 1, 1]
