"""The family matrix: one tiny random-init model per architecture family, with a tokenizer trained
here whose vocabulary is the model's (tests/tiny_models.py), exported and checked against Captum by
tests/test_families.py and tests/test_families_odd.py. `python tests/families.py` prints the table
of docs/models.md from a results file the tests write (ATTRIBFAST_FAMILY_RESULTS)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
ROPE = {**SMALL, "num_key_value_heads": 2, "max_position_embeddings": 64}
# One encoder and one decoder layer (BART-style configs: bart, marian, mbart).
SEQ2SEQ = {
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_position_embeddings": 64,
}


@dataclass(frozen=True)
class Family:
    name: str  # the model_type
    task: str
    config: str  # transformers config class
    kwargs: dict
    # "bpe" (byte-level, GPT-2 style), "wordpiece" (BERT style), "bart"; seq2seq: "t5", "bart", "marian",
    # "mbart" (tests/tiny_seq2seq.py)
    tokenizer: str = "bpe"
    id: str = ""  # the test id and results key where the model_type alone is ambiguous (bart twice)

    @property
    def key(self) -> str:
        return self.id or self.name


FAMILIES = [
    Family("gpt2", "causal-lm", "GPT2Config", {"n_layer": 2, "n_embd": 32, "n_head": 4, "n_positions": 64}),
    Family("llama", "causal-lm", "LlamaConfig", {**ROPE, "tie_word_embeddings": False}),
    Family("qwen2", "causal-lm", "Qwen2Config", ROPE),
    Family("qwen3", "causal-lm", "Qwen3Config", {**ROPE, "head_dim": 8}),
    Family("mistral", "causal-lm", "MistralConfig", ROPE),
    Family("phi3", "causal-lm", "Phi3Config", {**ROPE, "original_max_position_embeddings": 64}),
    Family("gemma", "causal-lm", "GemmaConfig", {**ROPE, "head_dim": 8}),
    Family("gemma2", "causal-lm", "Gemma2Config", {**ROPE, "head_dim": 8, "sliding_window": 16}),
    Family("gemma3_text", "causal-lm", "Gemma3TextConfig", {**ROPE, "head_dim": 8, "sliding_window": 16}),
    Family("gpt_neox", "causal-lm", "GPTNeoXConfig", {**SMALL, "max_position_embeddings": 64}),
    Family(
        "opt",
        "causal-lm",
        "OPTConfig",
        {
            "hidden_size": 32,
            "ffn_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 64,
            "word_embed_proj_dim": 32,
        },
    ),
    Family(
        "falcon", "causal-lm", "FalconConfig", {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}
    ),
    Family("bloom", "causal-lm", "BloomConfig", {"hidden_size": 32, "n_layer": 2, "n_head": 4}),
    Family(
        "gptj", "causal-lm", "GPTJConfig", {"n_embd": 32, "n_layer": 2, "n_head": 4, "rotary_dim": 4, "n_positions": 64}
    ),
    Family(
        "mixtral",
        "causal-lm",
        "MixtralConfig",
        {**ROPE, "num_local_experts": 4, "num_experts_per_tok": 2},
    ),
    Family(
        "qwen2_moe",
        "causal-lm",
        "Qwen2MoeConfig",
        {
            **ROPE,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 32,
        },
    ),
    Family(
        "qwen3_moe",
        "causal-lm",
        "Qwen3MoeConfig",
        {**ROPE, "head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32},
    ),
    Family("bert", "sequence-classification", "BertConfig", {**SMALL, "max_position_embeddings": 64}, "wordpiece"),
    Family(
        "roberta", "sequence-classification", "RobertaConfig", {**SMALL, "max_position_embeddings": 64}, "wordpiece"
    ),
    Family(
        "xlm-roberta",
        "sequence-classification",
        "XLMRobertaConfig",
        {**SMALL, "max_position_embeddings": 64},
        "wordpiece",
    ),
    Family(
        "distilbert",
        "sequence-classification",
        "DistilBertConfig",
        {"dim": 32, "hidden_dim": 64, "n_layers": 2, "n_heads": 4, "max_position_embeddings": 64},
        "wordpiece",
    ),
    Family(
        "deberta-v2",
        "sequence-classification",
        "DebertaV2Config",
        {**SMALL, "max_position_embeddings": 64},
        "wordpiece",
    ),
    Family(
        "electra",
        "sequence-classification",
        "ElectraConfig",
        {**SMALL, "embedding_size": 32, "max_position_embeddings": 64},
        "wordpiece",
    ),
    Family(
        "albert",
        "sequence-classification",
        "AlbertConfig",
        {**SMALL, "embedding_size": 16, "max_position_embeddings": 64},
        "wordpiece",
    ),
    Family(
        "modernbert",
        "sequence-classification",
        "ModernBertConfig",
        {**SMALL, "max_position_embeddings": 64, "local_attention": 16},
        "wordpiece",
    ),
    Family("bart", "sequence-classification", "BartConfig", SEQ2SEQ, "bart"),
    Family("mpnet", "sentence-similarity", "MPNetConfig", {**SMALL, "max_position_embeddings": 66}, "wordpiece"),
    Family(
        "t5",
        "seq2seq",
        "T5Config",
        {
            "d_model": 32,
            "d_ff": 64,
            "d_kv": 8,
            "num_layers": 1,
            "num_decoder_layers": 1,
            "num_heads": 4,
            "relative_attention_num_buckets": 8,
            "relative_attention_max_distance": 16,
        },
        "t5",
    ),
    Family("bart", "seq2seq", "BartConfig", SEQ2SEQ, "bart", id="bart-seq2seq"),
    # Marian and mBART scale their embeddings by sqrt(d_model), as the released checkpoints do.
    Family("marian", "seq2seq", "MarianConfig", {**SEQ2SEQ, "scale_embedding": True}, "marian"),
    Family("mbart", "seq2seq", "MBartConfig", {**SEQ2SEQ, "scale_embedding": True}, "mbart"),
]


def make_family(family: Family, folder: Path, seed: int = 0) -> Path:
    """Saves a random-init model of the family with a tokenizer whose vocabulary is the model's."""
    import torch
    import transformers
    from tiny_models import bart_tokenizer, bert_tokenizer, gpt2_tokenizer
    from tiny_seq2seq import seq2seq_tokenizer

    if family.task == "seq2seq":
        fast, fields = seq2seq_tokenizer(family.tokenizer)
        config = getattr(transformers, family.config)(**family.kwargs, **fields, vocab_size=len(fast))
        torch.manual_seed(seed)
        transformers.AutoModelForSeq2SeqLM.from_config(config).eval().save_pretrained(folder)
        fast.save_pretrained(folder)
        return folder
    fast = {"bpe": gpt2_tokenizer, "wordpiece": bert_tokenizer, "bart": bart_tokenizer}[family.tokenizer]()
    special = {}
    for name in ("pad", "bos", "eos", "cls", "sep", "mask", "unk"):
        value = getattr(fast, f"{name}_token_id", None)
        if value is not None:
            special[f"{name}_token_id"] = value
    if "pad_token_id" not in special:
        special["pad_token_id"] = fast.eos_token_id
    if family.tokenizer == "bart":
        special["decoder_start_token_id"] = fast.eos_token_id
    kwargs = {**family.kwargs, **special, "vocab_size": len(fast)}
    if family.task == "sequence-classification":
        labels = ["negative", "neutral", "positive"]
        kwargs.update(num_labels=3, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    config = getattr(transformers, family.config)(**kwargs)
    auto = {
        "causal-lm": transformers.AutoModelForCausalLM,
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "sentence-similarity": transformers.AutoModel,
    }[family.task]
    torch.manual_seed(seed)
    auto.from_config(config).eval().save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def markdown(results: dict) -> str:
    lines = [
        "# Tested model families",
        "",
        "Generated from the CI tests `tests/test_families*.py`: `ATTRIBFAST_FAMILY_RESULTS=r.json python -m pytest",
        "-n 0 tests/test_families.py tests/test_families_odd.py` (one process: both write r.json), then",
        "`python tests/families.py r.json > docs/models.md`. Each family: a tiny",
        "random-init model (2 layers, width 32; encoder-decoders: one encoder and one decoder layer)",
        "with a tokenizer trained in the test, exported, then occlusion compared with Captum within 1e-5 and input",
        "x gradient within 1e-4. seq2seq scores a target text by teacher forcing (its tokens with the special",
        "tokens the family's tokenizer adds to targets, the decoder starting from decoder_start_token_id); Captum",
        "runs on the Hugging Face model's own forward, whose score must equal its loss on the same labels.",
        "Export seconds are from one run of the two files in one process on the 2-core CI machine, nothing",
        "else running. gpt2, llama, qwen2 and mistral export seven graphs (forward, gradient, next_token, the",
        "prefix-reuse and the packed graphs), the other causal families four (forward, gradient, next_token,",
        "shared_gradient). Other architectures are not refused: the exporter's validation against torch decides.",
        "Marian (opus-mt) checkpoints ship only sentencepiece files (source.spm, target.spm, vocab.json) and",
        "a slow tokenizer; the exporter builds the fast tokenizer itself (protobuf only: no sentencepiece",
        "package), ids from vocab.json, and says so in its progress; it matched MarianTokenizer on 328 texts",
        "(tests/test_marian_tokenizer.py checks hand-derived pieces). Targets are split with source.spm's",
        "pieces (a bundle has one tokenizer), and sacremoses punctuation normalisation is not applied.",
        "",
        "| family (model_type) | task | export (s) | occlusion = Captum | gradient = Captum |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for family in FAMILIES:
        r = results.get(family.key)
        if r is None:
            lines.append(f"| {family.name} | {family.task} | | not run | not run |")
            continue
        lines.append(
            f"| {family.name} | {family.task} | {r['export_seconds']:.1f} | "
            f"{'yes' if r['occlusion'] else 'no'} | {'yes' if r['gradient'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "family-results.json")
    print(markdown(json.loads(path.read_text())), end="")
