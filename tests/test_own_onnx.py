"""Bring-your-own ONNX as optimum exports a classifier: inputs (input_ids, attention_mask,
token_type_ids) -> logits, in a directory with config.json and tokenizer.json."""

from __future__ import annotations

import json
import shutil
import warnings

import attribfast
import numpy as np
import pytest
import torch
from attribfast.errors import MissingTokenizerError
from captum.attr import Occlusion as CaptumOcclusion

TEXT = "hello world this is a test"


@pytest.fixture(scope="module")
def optimum_dir(hf_dirs, torch_models, tmp_path_factory):
    model = torch_models["bert"]
    folder = tmp_path_factory.mktemp("optimum")
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]])
    mask = (ids != 0).long()

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "token_type_ids": {0: "batch", 1: "sequence"},
        "logits": {0: "batch"},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits().eval(),
            (ids, mask, torch.zeros_like(ids)),
            str(folder / "model.onnx"),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["logits"],
            dynamic_axes=axes,
            dynamo=False,
        )
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(hf_dirs["bert"] / name, folder / name)
    return folder


def captum_occlusion(torch_model, ids, target, baseline):
    def forward(x):
        with torch.no_grad():
            return torch_model(x).logits[:, target]

    return CaptumOcclusion(forward).attribute(ids, sliding_window_shapes=(1,), baselines=baseline)[0].numpy()


def test_model_directory_reads_labels_tokenizer_and_feeds_token_type_ids(optimum_dir, torch_models):
    model = attribfast.AttributionModel.from_onnx(optimum_dir)
    config = json.loads((optimum_dir / "config.json").read_text())
    assert model.labels == tuple(config["id2label"][str(i)] for i in range(3))
    result = model.attribute(TEXT, targets=["positive"], method="occlusion")
    ids = torch.tensor([model._spec.tokenizer.encode(TEXT).ids])
    assert model._baseline_id(None) == config["pad_token_id"]
    expected = captum_occlusion(torch_models["bert"], ids, 2, config["pad_token_id"])
    np.testing.assert_allclose(result.matrix[:, 0], expected, atol=1e-5, rtol=0)
    assert result.tokens[0] == "[CLS]" and result.targets == ("positive",)


@pytest.mark.parametrize("kind", ["path", "tokenizers", "transformers"])
def test_tokenizer_as_path_object_or_transformers_tokenizer(optimum_dir, hf_dirs, kind):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tokenizer = {
        "path": str(optimum_dir / "tokenizer.json"),
        "tokenizers": Tokenizer.from_file(str(optimum_dir / "tokenizer.json")),
        "transformers": AutoTokenizer.from_pretrained(hf_dirs["bert"]),
    }[kind]
    model = attribfast.AttributionModel.from_onnx(
        optimum_dir / "model.onnx", tokenizer=tokenizer, labels=["a", "b", "c"]
    )
    reference = attribfast.AttributionModel.from_onnx(optimum_dir)
    ours = model.attribute(TEXT, targets=["c"], method="occlusion")
    theirs = reference.attribute(TEXT, targets=["positive"], method="occlusion")
    np.testing.assert_allclose(ours.matrix, theirs.matrix, atol=1e-6)
    assert model._spec.score_output == "logits"


def test_a_tokenizer_of_the_wrong_kind_is_a_typed_error(optimum_dir, tmp_path):
    with pytest.raises(MissingTokenizerError, match="tokenizer must be"):
        attribfast.AttributionModel.from_onnx(optimum_dir / "model.onnx", tokenizer=42)
    with pytest.raises(MissingTokenizerError, match="no tokenizer file"):
        attribfast.AttributionModel.from_onnx(optimum_dir / "model.onnx", tokenizer=str(tmp_path / "none.json"))
