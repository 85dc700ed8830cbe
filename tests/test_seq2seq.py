"""task="seq2seq" beyond the family matrix (tests/test_families.py): per-token columns, generation,
integrated gradients against Captum, the command line, and the typed errors. One tiny mBART
(target language code after </s>, scaled embeddings), exported once through the CLI."""

from __future__ import annotations

import json

import attribfast
import numpy as np
import pytest
import torch
from attribfast import cli
from attribfast.errors import TargetError, UnsupportedArchitectureError
from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from captum.attr import Occlusion as CaptumOcclusion
from families import FAMILIES, make_family
from tolerances import float32_tolerance
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor.*did not already require gradients:UserWarning")

SOURCE = "the quick brown fox"
TARGETS = ["over", "a dog"]  # 5 and 7 target tokens: different lengths, so one decoder input is padded


@pytest.fixture(scope="module")
def mbart(tmp_path_factory):
    """(bundle directory, torch model, transformers tokenizer): the bundle written by `attribfast export`."""
    root = tmp_path_factory.mktemp("mbart")
    folder = make_family(next(f for f in FAMILIES if f.key == "mbart"), root / "model")
    assert cli.main(["export", str(folder), "--task", "seq2seq", "-o", str(root / "bundle")]) == 0
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, attn_implementation="eager").eval()
    return root / "bundle", model, AutoTokenizer.from_pretrained(folder)


def token_logprobs(model, source_ids, labels: list[int]):
    """f(source ids [B, n]) -> [B, len(labels)]: log p of each label token, teacher-forced."""
    target = torch.tensor([labels])
    decoder = torch.tensor([[model.config.decoder_start_token_id, *labels[:-1]]])

    def forward(ids):
        logits = model(input_ids=ids, decoder_input_ids=decoder.expand(len(ids), -1)).logits
        return torch.log_softmax(logits, -1).gather(-1, target.expand(len(ids), -1).unsqueeze(-1)).squeeze(-1)

    return forward


def test_whole_targets_and_token_columns_equal_captum(mbart):
    bundle, model, tokenizer = mbart
    loaded = attribfast.load(bundle)
    whole = loaded.attribute(SOURCE, targets=TARGETS, method="occlusion")
    per = loaded.attribute(SOURCE, targets=TARGETS, per_token=True, method="occlusion")
    ids = torch.tensor([tokenizer(SOURCE)["input_ids"]])
    baseline = loaded._baseline_id(None)
    start = 0
    for k, text in enumerate(TARGETS):
        labels = tokenizer(text_target=text)["input_ids"]  # ends with </s> ro_RO
        forward = token_logprobs(model, ids, labels)
        # The score sums len(labels) log-probabilities: one rounding each (tests/tolerances.py).
        tolerance = float32_tolerance(whole.target_scores[k], 1e-5, roundings=len(labels))
        with torch.no_grad():
            expected = CaptumOcclusion(lambda x, f=forward: f(x).sum(-1)).attribute(
                ids, sliding_window_shapes=(1,), baselines=baseline
            )[0]
            np.testing.assert_allclose(whole.target_scores[k], forward(ids).sum(), atol=tolerance, rtol=0)
        # The targets differ in length: the shorter one's decoder input is padded, which must not matter.
        np.testing.assert_allclose(whole.matrix[:, k], expected.numpy(), atol=tolerance, rtol=0)
        columns = per.matrix[:, start : start + len(labels)]
        assert per.targets[start + len(labels) - 1].startswith("ro_RO")
        np.testing.assert_allclose(columns.sum(1), whole.matrix[:, k], atol=tolerance, rtol=0)
        for j in range(len(labels)):
            with torch.no_grad():
                expected = CaptumOcclusion(lambda x, f=forward, j=j: f(x)[:, j]).attribute(
                    ids, sliding_window_shapes=(1,), baselines=baseline
                )[0]
            np.testing.assert_allclose(columns[:, j], expected.numpy(), atol=1e-5, rtol=0)
        start += len(labels)
    assert per.matrix.shape[1] == start


def test_integrated_gradients_equal_captum(mbart):
    bundle, model, tokenizer = mbart
    loaded = attribfast.load(bundle)
    method = attribfast.IntegratedGradients(n_steps=16)
    result = loaded.attribute(SOURCE, targets=TARGETS[1:], method=method)
    labels = tokenizer(text_target=TARGETS[1])["input_ids"]
    decoder = torch.tensor([[model.config.decoder_start_token_id, *labels[:-1]]])
    scale = model.get_encoder().embed_tokens.embed_scale  # mBART scales inside its embedding module
    table = model.get_input_embeddings()

    def forward(embeds):
        logits = model(inputs_embeds=embeds, decoder_input_ids=decoder.expand(len(embeds), -1)).logits
        picked = torch.log_softmax(logits, -1).gather(-1, torch.tensor([labels]).expand(len(embeds), -1)[..., None])
        return picked.squeeze(-1).sum(-1)

    assert scale != 1.0
    ids = torch.tensor([tokenizer(SOURCE)["input_ids"]])
    embeds = table(ids).detach()
    baseline = table(torch.full_like(ids, loaded._baseline_id(None))).detach()
    expected = CaptumIntegratedGradients(forward).attribute(embeds, baselines=baseline, n_steps=16)
    np.testing.assert_allclose(result.matrix[:, 0], expected.sum(-1)[0].detach().numpy(), atol=1e-4, rtol=0)


def test_generate_gives_the_greedy_tokens(mbart):
    bundle, model, tokenizer = mbart
    result = attribfast.load(bundle).attribute(SOURCE, generate=4, method="saliency")
    ids = torch.tensor([tokenizer(SOURCE)["input_ids"]])
    with torch.no_grad():
        greedy = model.generate(ids, max_new_tokens=4, do_sample=False, num_beams=1, forced_eos_token_id=None)
        generated = greedy[0, 1:].tolist()  # after decoder_start_token_id
        expected = token_logprobs(model, ids, generated)(ids)[0]
    assert len(result.targets) == len(generated) == 4
    np.testing.assert_allclose(result.target_scores, expected.numpy(), atol=1e-5)


def test_generation_stops_at_the_end_of_sequence(mbart):
    bundle, _, _ = mbart
    loaded = attribfast.load(bundle)
    eos = loaded._spec.manifest["eos_token_ids"][0]
    vocab = loaded._spec.vocab_size
    real = loaded.session("next_token")
    lengths = []

    class EndsAtThirdStep:
        def run(self, feeds):
            (logits,) = real.run(feeds)
            lengths.append(feeds["generated_ids"].shape[1])
            if len(lengths) == 3:
                logits = np.where(np.arange(vocab) == eos, 100.0, 0.0)[None].astype(np.float32)
            return [logits]

    loaded.session = lambda graph: EndsAtThirdStep() if graph == "next_token" else real
    result = loaded.attribute(SOURCE, generate=10, method="occlusion")
    assert lengths == [1, 2, 3]
    assert len(result.targets) == 3 and result.targets[-1] == "</s>"


def test_targets_and_generate_are_checked(mbart):
    loaded = attribfast.load(mbart[0])
    with pytest.raises(TargetError, match="not both"):
        loaded.attribute(SOURCE, targets=TARGETS, generate=2)
    with pytest.raises(TargetError, match="decoder takes at most 64"):
        loaded.attribute(SOURCE, targets=["dog " * 40])
    with pytest.raises(TargetError, match="target texts"):
        loaded.attribute(SOURCE, targets=[3])


def test_the_command_line_explains_token_columns(mbart, tmp_path, capsys):
    out = tmp_path / "result.json"
    args = ["explain", str(mbart[0]), "--text", SOURCE, "--target", TARGETS[0], "--per-token", "--quiet"]
    assert cli.main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    labels = mbart[2](text_target=TARGETS[0])["input_ids"]
    assert len(result["targets"]) == len(labels) and result["targets"][-2:] == ["</s>", "ro_RO"]
    assert "ro_RO" in capsys.readouterr().out


def test_models_without_an_encoder_and_a_decoder_are_refused(hf_dirs, tmp_path):
    from transformers import BertConfig, BertModel

    for name in ("bert", "gpt2"):  # encoder-only, decoder-only directories
        with pytest.raises(UnsupportedArchitectureError, match="not an encoder-decoder model; seq2seq needs one"):
            attribfast.export_model(hf_dirs[name], task="seq2seq", out_dir=tmp_path / name)
    module = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8))
    with pytest.raises(UnsupportedArchitectureError, match="'bert' is not an encoder-decoder model"):
        attribfast.export_model(module, task="seq2seq", out_dir=tmp_path / "module", tokenizer=hf_dirs["bert"])


def test_target_layouts_are_exact():
    from attribfast.tasks.seq2seq import token_columns, whole_targets

    pieces = [np.array([5, 6, 7]), np.array([8])]
    whole = whole_targets(pieces, 9, ("a", "b"))
    np.testing.assert_array_equal(whole.extras["decoder_input_ids"], [[9, 5, 6], [9, 9, 9]])
    np.testing.assert_array_equal(whole.extras["score_ids"], [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(whole.extras["score_weights"], [[[1, 1, 1]], [[1, 0, 0]]])
    assert whole.column_targets == [[0], [1]] and whole.horizons == [-1, -1] and whole.suffixes == [[], []]
    per = token_columns(pieces, 9, ("5", "6", "7", "8"))
    np.testing.assert_array_equal(per.extras["score_weights"][0], np.eye(3))
    np.testing.assert_array_equal(per.extras["score_weights"][1], [[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert per.column_targets == [[0, 1, 2], [3, -1, -1]]
    # One gradient row per column: its target's decoder row, a one-hot weight on its position.
    np.testing.assert_array_equal(per.gradient_extras["decoder_input_ids"][:, 0], [9, 9, 9, 9])
    np.testing.assert_array_equal(per.gradient_extras["score_ids"][3], [8, 0, 0])
    one_hot = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]
    np.testing.assert_array_equal(per.gradient_extras["score_weights"][:, 0], one_hot)
    assert len(per.gradient_suffixes) == 4


def test_a_tokenizer_that_rewrites_targets_is_refused():
    from attribfast.errors import ExportError
    from attribfast.tasks.seq2seq import target_specials

    class Rewrites:
        def __call__(self, text=None, text_target=None, add_special_tokens=True):
            return {"input_ids": [1, 2] if text_target is None else [3, 4]}

    with pytest.raises(ExportError, match="special tokens the tokenizer adds"):
        target_specials(Rewrites())
