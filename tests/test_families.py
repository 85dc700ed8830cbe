"""The family matrix: every architecture family of tests/families.py exports (no allowlist), and its
bundle agrees with Captum on the same torch model: occlusion within 1e-5, input x gradient within 1e-4.
This file checks every other family; tests/test_families_odd.py the rest, with check_family from here
(pytest-xdist gives each worker whole files: two files let the two workers share the matrix).

Set ATTRIBFAST_FAMILY_RESULTS=path to also record the results (python tests/families.py path prints
docs/models.md from them).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import attribfast
import numpy as np
import pytest
import torch
from captum.attr import InputXGradient as CaptumInputXGradient
from captum.attr import Occlusion as CaptumOcclusion
from families import FAMILIES, make_family
from transformers import AutoTokenizer

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor.*did not already require gradients:UserWarning")

PROMPT = "the quick brown fox jumps"
CONTINUATION = " over the"
REFERENCE = "a small model trained on plain english"
TRANSLATION = "over"  # short: scores stay small, so float32 rounding stays far below 1e-5


def torch_model(folder, task):
    import transformers

    auto = {
        "causal-lm": transformers.AutoModelForCausalLM,
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "sentence-similarity": transformers.AutoModel,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
    }[task]
    transformers.utils.logging.disable_progress_bar()
    return auto.from_pretrained(folder, attn_implementation="eager").eval()


def score_of_embeddings(model, task, extra):
    """f(embeddings [B, n, H]) -> scores [B]: the target's score as the Hugging Face model computes it."""
    if task == "causal-lm":
        continuation = torch.tensor(extra)
        table = model.get_input_embeddings()

        def causal(embeds):
            batch, n, _ = embeds.shape
            tail = table(continuation).expand(batch, -1, -1)
            logits = model(inputs_embeds=torch.cat([embeds, tail], dim=1)).logits
            log_probs = torch.log_softmax(logits, dim=-1)[:, n - 1 : n - 1 + len(extra)]
            return log_probs.gather(-1, continuation.expand(batch, -1).unsqueeze(-1)).squeeze(-1).sum(-1)

        return causal
    if task == "sequence-classification":
        if model.config.model_type == "bart":
            return bart_class_logit(model, extra)
        return lambda embeds: model(inputs_embeds=embeds).logits[:, extra]

    def similarity(embeds):
        hidden = model(inputs_embeds=embeds).last_hidden_state.mean(1)
        return torch.nn.functional.cosine_similarity(hidden, extra[None], dim=-1)

    return similarity


def seq2seq_scores(model, labels: list[int]):
    """(f(source ids [B, n]), f(source embeddings [B, n, H])) -> [B]: the log-probability of the
    target tokens `labels`, teacher-forced from decoder_start_token_id, summed. The embeddings are
    the embedding module's output; Marian's encoder scales them by embed_scale (as it does from ids)."""
    target = torch.tensor([labels])
    decoder = torch.tensor([[model.config.decoder_start_token_id, *labels[:-1]]])
    scale = getattr(model.get_encoder(), "embed_scale", None)
    scale = scale if isinstance(scale, float) else 1.0

    def total(logits):
        picked = torch.log_softmax(logits, -1).gather(-1, target.expand(len(logits), -1).unsqueeze(-1))
        return picked.squeeze(-1).sum(-1)

    def from_ids(ids):
        return total(model(input_ids=ids, decoder_input_ids=decoder.expand(len(ids), -1)).logits)

    def from_embeddings(embeds):
        decoder_ids = decoder.expand(len(embeds), -1)
        return total(model(inputs_embeds=embeds * scale, decoder_input_ids=decoder_ids).logits)

    return from_ids, from_embeddings


def bart_class_logit(model, target):
    """BART's classification of ids, written over embeddings: the decoder reads the input shifted
    right after decoder_start_token_id, the head reads the state at the final EOS (the last token)."""
    table = model.get_input_embeddings()
    start = table(torch.tensor([model.config.decoder_start_token_id]))

    def forward(embeds):
        decoder = torch.cat([start.expand(embeds.shape[0], 1, -1), embeds[:, :-1]], dim=1)
        hidden = model.model(inputs_embeds=embeds, decoder_inputs_embeds=decoder).last_hidden_state
        return model.classification_head(hidden[:, -1])[:, target]

    return forward


# Families whose bundles must carry the prefix-reuse graphs, checked to give reuse = no-reuse; the
# other families export without them (export_model(prefix_reuse=False)).
REUSE_FAMILIES = ("gpt2", "llama", "qwen2", "mistral")


def check_prefix_reuse(model, family, targets):
    note = model._spec.manifest.get("prefix_reuse") or {}
    if family.name in REUSE_FAMILIES:
        assert note.get("available") is True, note
    else:
        assert note == {"available": False, "reason": "not requested (prefix_reuse=False)"}, note
    if not model._engine.reuses_prefix():
        return
    # batch_size=2 makes buckets of one or two positions, so most rows read a prefix cache.
    reused = model.attribute(PROMPT, targets=targets, method="occlusion", batch_size=2)
    full = model.attribute(PROMPT, targets=targets, method="occlusion", batch_size=2, reuse_prefix=False)
    np.testing.assert_allclose(reused.matrix, full.matrix, atol=1e-5, rtol=0)
    assert reused.token_positions < full.token_positions


# Families whose bundles must carry the packed graphs (checked: packed = unpacked); bloom (ALiBi, no
# position ids) must decline them at export; the others skip them to save CI time.
PACK_FAMILIES = REUSE_FAMILIES
DECLINES_PACKING = ("bloom",)


def check_packing(model, family):
    note = model._spec.manifest.get("packing") or {}
    if family.name in DECLINES_PACKING:
        assert note.get("available") is False and "position ids" in note["reason"], note
        assert "packed_score" not in model._spec.graphs
    if family.name not in PACK_FAMILIES:
        return
    assert note.get("available") is True and note.get("reuse") is True, note
    targets = [CONTINUATION, " no", CONTINUATION + CONTINUATION]
    packed = model.attribute(PROMPT, targets=targets, method="occlusion")
    rows = model.attribute(PROMPT, targets=targets, method="occlusion", pack_targets=False)
    np.testing.assert_allclose(packed.matrix, rows.matrix, atol=1e-5, rtol=0)
    assert packed.token_positions < rows.token_positions


def record(name, result):
    path = os.environ.get("ATTRIBFAST_FAMILY_RESULTS")
    if path:
        file = Path(path)
        results = json.loads(file.read_text()) if file.exists() else {}
        results[name] = result
        file.write_text(json.dumps(results, indent=2))


@pytest.mark.parametrize("family", FAMILIES[0::2], ids=[f.key for f in FAMILIES[0::2]])
def test_family_exports_and_agrees_with_captum(family, tmp_path):
    check_family(family, tmp_path)


def check_family(family, tmp_path):
    folder = make_family(family, tmp_path / "model")
    started = time.perf_counter()
    # The reuse graphs are checked on REUSE_FAMILIES; the others skip them, which saves CI time.
    bundle = attribfast.export_model(
        folder,
        task=family.task,
        out_dir=tmp_path / "bundle",
        prefix_reuse=family.name in REUSE_FAMILIES,
        packed_targets=family.name in PACK_FAMILIES + DECLINES_PACKING,
        # The shared gradient graph costs causal LMs one more backward trace (~5 s each); it is
        # checked on gpt2 and llama in tests/test_shared_gradient.py, and built for the others.
        shared_gradient=family.name not in PACK_FAMILIES,
    )
    seconds = time.perf_counter() - started
    model = attribfast.load(bundle)
    reference = torch_model(folder, family.task)
    tokenizer = model._spec.tokenizer
    ids = torch.tensor([tokenizer.encode(PROMPT).ids])
    table = reference.get_input_embeddings()
    if family.task == "causal-lm":
        targets, extra = [CONTINUATION], tokenizer.encode(CONTINUATION, add_special_tokens=False).ids
    elif family.task == "sequence-classification":
        targets, extra = ["positive"], 2
    elif family.task == "seq2seq":
        targets = [TRANSLATION]
        labels = AutoTokenizer.from_pretrained(folder)(text_target=TRANSLATION)["input_ids"]
        score_ids, score = seq2seq_scores(reference, labels)
        with torch.no_grad():  # the teacher-forced score is the model's own loss on these labels
            loss = reference(input_ids=ids, labels=torch.tensor([labels])).loss
            np.testing.assert_allclose(score_ids(ids), -loss * len(labels), rtol=1e-5)
            np.testing.assert_allclose(score(table(ids)), score_ids(ids), atol=1e-5)
    else:
        targets = [REFERENCE]
        with torch.no_grad():
            extra = reference(torch.tensor([tokenizer.encode(REFERENCE).ids])).last_hidden_state.mean(1)[0]
    if family.task != "seq2seq":
        score = score_of_embeddings(reference, family.task, extra)

        def score_ids(x):
            return score(table(x))

    if family.task == "sequence-classification":
        with torch.no_grad():  # the embeddings route is the model's own route from ids
            np.testing.assert_allclose(score(table(ids)), reference(ids).logits[:, extra], atol=1e-5)

    occlusion = model.attribute(PROMPT, targets=targets, method="occlusion")
    with torch.no_grad():
        expected_occlusion = (
            CaptumOcclusion(score_ids)
            .attribute(ids, sliding_window_shapes=(1,), baselines=model._baseline_id(None))[0]
            .numpy()
        )
    occlusion_ok = bool(np.abs(occlusion.matrix[:, 0] - expected_occlusion).max() <= 1e-5)

    gradient = model.attribute(PROMPT, targets=targets, method="input_x_gradient")
    embeds = table(ids).detach()
    expected = CaptumInputXGradient(score).attribute(embeds).sum(-1)[0].detach()
    gradient_ok = bool(np.abs(gradient.matrix[:, 0] - expected.numpy()).max() <= 1e-4)
    if family.task == "causal-lm":
        check_prefix_reuse(model, family, targets)
        check_packing(model, family)
    record(
        family.key,
        {"task": family.task, "export_seconds": seconds, "occlusion": occlusion_ok, "gradient": gradient_ok},
    )
    np.testing.assert_allclose(occlusion.matrix[:, 0], expected_occlusion, atol=1e-5, rtol=0)
    np.testing.assert_allclose(gradient.matrix[:, 0], expected.numpy(), atol=1e-4, rtol=0)
