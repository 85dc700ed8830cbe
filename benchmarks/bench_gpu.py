"""GPU: attribfast fp32 and fp16 vs Captum on the same GPU, occlusion and integrated gradients.

    python benchmarks/bench_gpu.py --only gpt2-small --repeats 3

Models (random init, tokenizer trained locally): GPT-2-small shape (12 layers, hidden 768, 124M) and
Qwen2-0.5B shape (24 layers, hidden 896, 14 query / 2 key-value heads, vocab 151,936). A 512-token
prompt and 5 continuations; occlusion with window 1 and integrated gradients with 32 Gauss-Legendre
steps. Captum runs the same target-only score in torch on the same GPU (fp32, TF32 off as in
attribfast), best-tuned: each batch option is probed once, the fastest is timed. Medians of
--repeats runs, all in one process. Needs onnxruntime-gpu (or ATTRIBFAST_ORT_LIBRARY) and a CUDA torch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import CACHE, CONTINUATIONS, median_seconds, prompt_ids, table

PROMPT_TOKENS = 512
N_STEPS = 32


def make_model(name: str):
    import torch
    from tiny_models import gpt2_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

    folder = CACHE / name
    if (folder / "config.json").is_file():
        return folder
    fast = gpt2_tokenizer()
    torch.manual_seed(0)
    eos = fast.eos_token_id
    if name.startswith("gpt2"):
        # gpt2-4x256: the CPU benchmarks' shape; gpt2-smoke: a CPU dry run of this script.
        layers, width = {"gpt2-small": (12, 768), "gpt2-4x256": (4, 256), "gpt2-smoke": (2, 32)}[name]
        config = GPT2Config(
            n_layer=layers,
            n_embd=width,
            n_head=max(width // 64, 4),
            n_positions=1024,
            vocab_size=50257,
            bos_token_id=eos,
            eos_token_id=eos,
        )
        model = GPT2LMHeadModel(config)
    else:
        config = Qwen2Config(
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            vocab_size=151936,
            max_position_embeddings=1024,
            tie_word_embeddings=True,
            rope_theta=1e6,
            bos_token_id=eos,
            eos_token_id=eos,
        )
        model = Qwen2ForCausalLM(config)
    model.eval().save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def bundles(name: str, model_dir):
    """(fp32 bundle, fp16 bundle, export seconds, export peak RSS MB, fp16 conversion seconds)."""
    import json

    import attribfast
    from attribfast.precision import to_float16

    fp32 = CACHE / f"bundle-{name}"
    if not (fp32 / "attribfast.json").is_file():
        start = time.perf_counter()
        attribfast.export(
            model_dir,
            task="causal-lm",
            out_dir=fp32,
            overwrite=True,
            progress=lambda step: print(f"  export {time.perf_counter() - start:6.1f} s: {step}", flush=True),
        )
    manifest = json.loads((fp32 / "attribfast.json").read_text())
    fp16 = CACHE / f"bundle-{name}-fp16"
    start = time.perf_counter()
    if not (fp16 / "attribfast.json").is_file():
        to_float16(fp32, fp16, overwrite=True)
    convert = time.perf_counter() - start
    return fp32, fp16, manifest["export_seconds"], manifest["peak_memory_mb"], convert


def tuned_captum(options, make_run, repeats):
    """Captum best-tuned: probe each option once after a warm-up, then time the fastest."""
    make_run(options[0])()
    probes = []
    for option in options:
        start = time.perf_counter()
        make_run(option)()
        probes.append((time.perf_counter() - start, option))
    best = min(probes, key=lambda p: p[0])[1]
    median, times = median_seconds(make_run(best), repeats, warmup=0)
    return median, times, best


def relative(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


METHODS = ("occlusion", "integrated gradients")


def attribfast_part(name: str, repeats: int, device: str, batch_size: int | None, dtype: str) -> dict:
    """attribfast with the fp32 bundle or its fp16 copy: medians and matrices per method."""
    import attribfast

    model_dir = make_model(name)
    fp32_dir, fp16_dir, export_s, export_mb, convert_s = bundles(name, model_dir)
    loaded = attribfast.load(fp32_dir if dtype == "fp32" else fp16_dir, providers=(device,))
    ids = prompt_ids(loaded._spec.tokenizer, PROMPT_TOKENS if device == "cuda" else 32)
    out = {"export": (export_s, export_mb, convert_s)}
    for label, method in zip(METHODS, ("occlusion", attribfast.IntegratedGradients(n_steps=N_STEPS)), strict=True):
        result = loaded.attribute(ids, CONTINUATIONS, method, batch_size=batch_size)
        run = lambda k=method: loaded.attribute(ids, CONTINUATIONS, k, batch_size=batch_size)  # noqa: E731
        out[label] = (*median_seconds(run, repeats), result.matrix, result.evaluations, len(ids))
    out["memory"] = loaded.session("forward").device_memory()
    return out


def captum_part(name: str, repeats: int, device: str) -> dict:
    """Captum fp32 on the same device, best-tuned: medians and matrices per method."""
    import attribfast
    import torch
    from captum.attr import LayerIntegratedGradients, Occlusion
    from reference_scores import causal_target_only, causal_target_only_from_embeddings
    from transformers import AutoModelForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False
    model_dir = make_model(name)
    bundle = attribfast.bundle.Bundle.load(CACHE / f"bundle-{name}")
    tokenizer = bundle.tokenizer
    ids = prompt_ids(tokenizer, PROMPT_TOKENS if device == "cuda" else 32)
    special = bundle.manifest["special_tokens"]
    pad = next(special[k] for k in ("pad", "unk", "eos") if special.get(k) is not None)  # attribfast's default
    continuations = [tokenizer.encode(c, add_special_tokens=False).ids for c in CONTINUATIONS]
    hf = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa").eval().to(device)
    prompt = torch.tensor([ids], device=device)
    embedding = hf.get_input_embeddings()

    def sync(fn):
        def run():
            result = fn()
            if device == "cuda":
                torch.cuda.synchronize()
            return result

        return run

    def occlusion(ppe):
        return sync(
            lambda: [
                Occlusion(causal_target_only(hf, c)).attribute(
                    prompt, sliding_window_shapes=(1,), baselines=pad, perturbations_per_eval=ppe
                )
                for c in continuations
            ]
        )

    def integrated_gradients(batch):
        def run():
            result = []
            for c in continuations:
                score = causal_target_only_from_embeddings(hf, c)
                lig = LayerIntegratedGradients(lambda x, s=score: s(embedding(x)), embedding)
                baselines = torch.full_like(prompt, pad)
                attribution = lig.attribute(
                    prompt, baselines=baselines, n_steps=N_STEPS, method="gausslegendre", internal_batch_size=batch
                )
                result.append(attribution.sum(-1))
            return result

        return sync(run)

    out = {}
    for label, make, options in zip(
        METHODS, (occlusion, integrated_gradients), ((32, 64, 128), (32, 64, 160)), strict=True
    ):
        matrix = np.stack([a[0].detach().float().cpu().numpy() for a in make(options[-1])()], 1)
        out[label] = (*tuned_captum(options, make, repeats), matrix)
    return out


def bench(name: str, repeats: int, device: str, batch_size: int | None = None) -> None:
    """Each side in its own process: torch's CUDA context and ONNX Runtime's stay apart (one
    process holding both crashed ORT's CUDA provider in our runs), and neither warms the other.
    fp32 and fp16 run apart too: each model's sessions keep their arenas, and a second model's
    sessions in the same process could not get a cuBLAS handle on an H200 (docs/benchmarks.md)."""
    import pickle
    import subprocess
    import sys
    import tempfile

    parts = {}
    with tempfile.TemporaryDirectory() as folder:
        for part in ("fp32", "fp16", "captum"):
            path = f"{folder}/{part}.pkl"
            command = [sys.executable, __file__, "--part", part, "--name", name, "--device", device]
            command += ["--repeats", str(repeats), "--out", path]
            if batch_size:
                command += ["--batch-size", str(batch_size)]
            if subprocess.run(command).returncode == 0:
                with open(path, "rb") as f:
                    parts[part] = pickle.load(f)
            else:
                print(f"{part}: failed (its output is above); its rows are left out", flush=True)
    captum = parts.get("captum", {})
    for label in METHODS:
        rows, matrices, n_tokens, evaluations = [], {}, None, None
        for tag in ("fp32", "fp16"):
            if tag in parts:
                median, times, matrices[tag], evaluations, n_tokens = parts[tag][label]
                rows.append((f"attribfast {tag}", median, times))
        if label in captum:
            median, times, best, matrices["captum"] = captum[label]
            knob = "perturbations_per_eval" if label == "occlusion" else "internal_batch_size"
            rows.append((f"Captum fp32, best-tuned ({knob}={best})", median, times))
        if not rows:
            continue
        heading = f"{label}: {name}, {n_tokens or PROMPT_TOKENS}-token prompt, 5 continuations ({evaluations} rows)"
        print(f"\n### {heading}\n")
        print(table(rows, rows[0][0]))
        if "fp32" in matrices and "captum" in matrices:
            reference = matrices["captum"]
            print(f"\nmax |attribfast fp32 - Captum| = {np.abs(matrices['fp32'] - reference).max():.3g} "
                  f"(relative {relative(matrices['fp32'], reference):.3g})")
        if "fp32" in matrices and "fp16" in matrices:
            fp16_error = relative(matrices["fp16"], matrices["fp32"])
            print(f"fp16 vs fp32 relative (max |diff| / max |fp32|) = {fp16_error:.3g}")
    ran = [tag for tag in ("fp32", "fp16") if tag in parts]
    if ran:
        export_s, export_mb, convert_s = parts[ran[0]]["export"]
        print(f"\nexport: {export_s} s, peak RSS {export_mb} MB; fp16 conversion {convert_s:.1f} s")
    for tag in ran:
        print(f"device memory free/total after the {tag} runs: {parts[tag]['memory']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("gpt2-small", "qwen2-0.5b", "gpt2-4x256"))
    parser.add_argument("--batch-size", type=int, help="attribfast's rows per run (default: from device memory)")
    parser.add_argument("--smoke", action="store_true", help="a 2-layer model on the CPU: checks the script")
    parser.add_argument("--part", choices=("fp32", "fp16", "captum"), help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        import pickle

        if args.part in ("fp32", "fp16"):
            result = attribfast_part(args.name, args.repeats, args.device, args.batch_size, args.part)
        else:
            result = captum_part(args.name, args.repeats, args.device)
        with open(args.out, "wb") as f:
            pickle.dump(result, f)
        return
    import attribfast
    import onnxruntime
    import torch

    info = attribfast.runtime_info()
    print(f"ORT {info.ort_version} at {info.library_path}; usable {info.usable_providers}; torch {torch.__version__}")
    print(f"python onnxruntime {onnxruntime.__version__}", flush=True)
    if args.smoke:
        return bench("gpt2-smoke", 1, "cpu")
    if "cuda" not in info.usable_providers:
        raise SystemExit(f"CUDA is not usable: {info.unusable_reasons}")
    for name in ("gpt2-small", "qwen2-0.5b", "gpt2-4x256"):
        if args.only in (None, name):
            bench(name, args.repeats, "cuda", args.batch_size)


if __name__ == "__main__":
    main()
