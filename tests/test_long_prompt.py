"""A 2,000-token prompt on a causal LM with the default memory budget: sentence-level occlusion and
Hierarchical run through prefix reuse on a tiny GPT-2 with 2,080 positions (2 layers, width 32)."""

from __future__ import annotations

import attribfast
import numpy as np
import pytest
from attribfast.spans import level_groups, sentence_spans
from tiny_models import CORPUS, gpt2_tokenizer

TARGETS = [" the lazy dog"]


@pytest.fixture(scope="module")
def long_model(tmp_path_factory):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    fast = gpt2_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=2080, vocab_size=len(fast),
                        bos_token_id=fast.eos_token_id, eos_token_id=fast.eos_token_id)
    folder = tmp_path_factory.mktemp("long-gpt2")
    GPT2LMHeadModel(config).eval().save_pretrained(folder / "hf")
    fast.save_pretrained(folder / "hf")
    bundle = attribfast.export_model(folder / "hf", task="causal-lm", out_dir=folder / "bundle", packed_targets=False)
    return attribfast.load(bundle)


def long_text(model, n_tokens: int = 2000) -> str:
    sentences = [s[0].upper() + s[1:] + "." for s in CORPUS[:5]]
    parts: list[str] = []
    while len(model._spec.tokenizer.encode(" ".join(parts)).ids) < n_tokens:
        parts.append(sentences[len(parts) % len(sentences)])
    return " ".join(parts)


def test_sentence_occlusion_and_hierarchical_on_a_2000_token_prompt(long_model):
    model = long_model
    text = long_text(model)
    n_sentences = len(sentence_spans(text))
    sentences = model.attribute(text, TARGETS, method=attribfast.FeatureAblation(groups="sentence"))
    n = len(sentences.tokens)
    assert 2000 <= n <= 2080 and np.isfinite(sentences.matrix).all()
    assert sentences.evaluations == 1 + n_sentences
    # Reuse: rows after the prefix run only their suffix, so far fewer positions than rows x length.
    assert sentences.token_positions < 0.7 * sentences.evaluations * n
    coarse = sentences.aggregate("sentence")
    assert len(coarse.tokens) == n_sentences and coarse.tokens[0] == "The quick brown fox jumps over the lazy…"

    hierarchical = model.attribute(text, TARGETS, method=attribfast.Hierarchical(keep=2))
    groups = np.asarray(level_groups("sentence", text, sentences.offsets, sentences.special))
    values = sentences.matrix[[np.flatnonzero(groups == g)[0] for g in range(n_sentences)]]
    kept = np.sort(np.argsort(-np.abs(values).sum(axis=1), kind="stable")[:2])
    levels = hierarchical.parameters["hierarchy"]
    assert levels[0]["groups"] == n_sentences and levels[0]["kept"] == 2
    # The two sentences of largest |value| are refined token by token; the rest cost nothing more.
    refined = int(np.isin(groups, kept).sum())
    assert levels[1]["groups"] == refined < 100
    assert hierarchical.evaluations == (1 + n_sentences) + (1 + refined)  # not the ~2,000 of token occlusion
    # Sentences left coarse keep exactly the sentence-level value, spread over their tokens.
    unrefined = np.setdiff1d(np.arange(n_sentences), kept)
    per_sentence = hierarchical.aggregate("sentence").matrix
    np.testing.assert_allclose(per_sentence[unrefined], values[unrefined], atol=1e-4, rtol=1e-5)
    for sentence in kept:  # refined: each token its own value, not an even share
        assert np.ptp(hierarchical.matrix[groups == sentence, 0]) > 0
