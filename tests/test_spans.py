"""Sentence, line and paragraph groups (attribfast.spans): the splitting rules on tricky text by hand,
tokens mapped to spans through real tokenizers' offsets (special tokens alone, as in word groups),
groups="sentence" ablating whole sentences and aggregate("sentence") rows with readable labels."""

from __future__ import annotations

import attribfast
import numpy as np
import pytest
from attribfast.errors import InvalidInputError
from attribfast.spans import level_groups, line_spans, paragraph_spans, sentence_spans, span_groups, span_label
from onnx_models import linear_score_model
from tiny_models import bert_tokenizer, gpt2_tokenizer
from tokenizers import Tokenizer, models, pre_tokenizers


def texts(spans, text):
    return [text[a:b] for a, b in spans]


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("Dr. Smith went home. He slept.", ["Dr. Smith went home.", "He slept."]),
        ("Use fruit, e.g. apples. Then eat", ["Use fruit, e.g. apples.", "Then eat"]),  # no final period
        ("I.e. this, i.e. that. Mr. and Mrs. Jones left.", ["I.e. this, i.e. that.", "Mr. and Mrs. Jones left."]),
        ("J. Smith won 3.5 points. U.S. troops came.", ["J. Smith won 3.5 points.", "U.S. troops came."]),
        ('He said "Stop!" Then left. Really?! Yes', ['He said "Stop!"', "Then left.", "Really?!", "Yes"]),
        ("Wait... What? fine. ok", ["Wait...", "What? fine. ok"]),  # lower case goes on
        ("  lead and trail.  \n", ["lead and trail."]),
        ("one\ntwo. Three", ["one\ntwo.", "Three"]),  # a line break alone ends no sentence
        ("title\n\nBody text", ["title", "Body text"]),  # a blank line does
        ("", []),
        (" \n\t ", []),
    ],
)
def test_sentences_by_hand(text, sentences):
    assert texts(sentence_spans(text), text) == sentences


def test_lines_and_paragraphs_by_hand():
    text = "  first line\r\nsecond.\r\n\r\n\r\nthird\n \t\nfourth\rfifth  "
    assert texts(line_spans(text), text) == ["first line", "second.", "third", "fourth", "fifth"]
    # CRLF is one break: "\r\n" alone never makes a blank line.
    assert texts(paragraph_spans(text), text) == ["first line\r\nsecond.", "third", "fourth\rfifth"]
    assert texts(sentence_spans(text), text) == ["first line\r\nsecond.", "third", "fourth\rfifth"]
    assert texts(paragraph_spans("a\n\n\n\n\nb\n"), "a\n\n\n\n\nb\n") == ["a", "b"]


def test_span_groups_by_hand():
    text = "Hi there. Go now."
    # [BOS] "Hi" " there" "." " Go" " now" "." [EOS]; " Go" starts with the space after sentence 1.
    offsets = np.array([[0, 0], [0, 2], [2, 8], [8, 9], [9, 12], [12, 16], [16, 17], [0, 0]])
    special = np.array([True, False, False, False, False, False, False, True])
    assert span_groups(text, offsets, special, sentence_spans(text)) == [0, 1, 1, 1, 2, 2, 2, 3]
    # Whitespace-only tokens go with the span before them; leading whitespace with the first.
    text = "  a.\n\nb."
    offsets = np.array([[0, 2], [2, 3], [3, 4], [4, 6], [6, 7], [7, 8]])
    assert span_groups(text, offsets, None, paragraph_spans(text)) == [0, 0, 0, 0, 1, 1]


def test_tokens_of_real_tokenizers_fall_in_their_sentences():
    text = "Dr. Smith met the dog. It ran!\r\n\r\nA new paragraph\nwith two lines"
    for fast, has_special in ((bert_tokenizer(), True), (gpt2_tokenizer(), False)):
        encoding = fast.backend_tokenizer.encode(text)
        special = np.asarray(encoding.special_tokens_mask, bool)
        assert special.any() == has_special
        offsets = np.asarray(encoding.offsets)
        for level, expected in (
            ("sentence", ["Dr. Smith met the dog.", "It ran!", "A new paragraph\nwith two lines"]),
            ("line", ["Dr. Smith met the dog. It ran!", "A new paragraph", "with two lines"]),
            ("paragraph", ["Dr. Smith met the dog. It ran!", "A new paragraph\nwith two lines"]),
        ):
            groups = np.asarray(level_groups(level, text, offsets, special))
            # Special tokens ([CLS], [SEP]) are groups of their own; the others cover the spans in order.
            assert len(set(groups[special])) == special.sum()
            plain = [g for g in dict.fromkeys(groups[~special].tolist())]
            assert len(plain) == len(expected), (level, fast)
            for group, span in zip(plain, expected, strict=True):
                rows = np.flatnonzero(groups == group)
                start, end = offsets[rows[0]][0], offsets[rows[-1]][1]
                assert text[start:end].strip().lower() == span.lower(), (level, span)


def word_tokenizer():
    """Whitespace/punctuation pre-tokenizer over a fixed word vocabulary: token i is word i."""
    vocab = {"[PAD]": 0, "Smith": 1, "ran": 2, "sat": 3, ".": 4, "Go": 5, "Dr": 6, "He": 7}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[PAD]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def linear_model(tmp_path, table):
    path = tmp_path / "linear.onnx"
    path.write_bytes(linear_score_model(np.asarray(table, np.float32)))
    return attribfast.AttributionModel.from_onnx(path, tokenizer=word_tokenizer(), pad_id=0)


def test_sentence_ablation_and_sentence_rows(tmp_path):
    # Column 0: each token adds its id's row; the pad baseline adds 0, so a group's drop is its sum.
    table = [[0], [1], [2], [3], [0], [-10], [7], [3]]
    model = linear_model(tmp_path, table)
    text = "Dr. Smith ran.\nHe sat sat. Go"
    ablation = model.attribute(text, targets=[0], method=attribfast.FeatureAblation(groups="sentence"))
    # Sentences "Dr. Smith ran." (7 + 0 + 1 + 2 = 10), "He sat sat." (9), "Go" (-10): every token
    # holds its sentence's drop.
    np.testing.assert_allclose(ablation.matrix[:, 0], [10, 10, 10, 10, 10, 9, 9, 9, 9, -10], atol=1e-6)
    occlusion = model.attribute(text, targets=[0], method="occlusion")
    rows = occlusion.aggregate("sentence")
    assert rows.tokens == ("Dr. Smith ran.", "He sat sat.", "Go")
    np.testing.assert_allclose(rows.matrix[:, 0], [10, 9, -10], atol=1e-6)
    assert rows.parameters["aggregated"] == "sentence"
    assert occlusion.aggregate("line").tokens == ("Dr. Smith ran.", "He sat sat. Go")
    assert occlusion.aggregate("paragraph").tokens == ("Dr. Smith ran. He sat sat. Go",)
    with pytest.raises(InvalidInputError, match="sentence groups need text"):
        model.attribute([1, 2], targets=[0], method=attribfast.FeatureAblation(groups="sentence"))
    with pytest.raises(InvalidInputError, match="groups must be one of"):
        attribfast.ShapleySampling(groups="clause")
    with pytest.raises(InvalidInputError, match="aggregate supports"):
        occlusion.aggregate("clause")


def test_long_spans_get_short_readable_labels():
    assert span_label("Short one.\n") == "Short one."
    label = span_label("This is a long sentence\nthat wraps over  two lines and goes on for a while.")
    assert label == "This is a long sentence that wraps over…"
    assert len(label) <= 40
