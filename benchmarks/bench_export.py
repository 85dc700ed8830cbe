"""Where export time goes: each run exports a model in a fresh Python process and records the time
of every step the exporter reports (its progress lines), the whole wall time (imports included) and
the peak RSS. Medians over the runs.

    python benchmarks/bench_export.py --model gpt2 --repeats 3
    python benchmarks/bench_export.py --model gpt2-small --repeats 1   # 124M, random init
    python benchmarks/bench_export.py --model qwen2-0.5b --repeats 1 --basic
    python benchmarks/bench_export.py --model gpt2 --repeats 5 --cli   # `python -m attribfast export`

--cli times the command line instead of a Python call (wall time and peak RSS only): the command
skips the interpreter's teardown after an export (attribfast.cli.run), which a Python caller's
process still pays when it ends (the "exit" line of the Python runs).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

CHILD = r"""
import json, os, resource, sys, threading, time
started = time.perf_counter()
# The RSS of this process, sampled every 20 ms: the peak of each step (ru_maxrss only gives the
# whole run's peak; tracemalloc does not see torch's or onnxruntime's allocations).
PAGE = os.sysconf("SC_PAGE_SIZE") / 2**20
window = [0.0]
def sample():
    with open("/proc/self/statm") as statm:
        while True:
            statm.seek(0)
            window[0] = max(window[0], int(statm.read().split()[1]) * PAGE)
            time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
import attribfast
steps = []
last = [time.perf_counter()]
def progress(line):
    now = time.perf_counter()
    if steps:
        steps[-1]["seconds"] = now - last[0]
        steps[-1]["peak_rss_mb"] = window[0]
    else:
        imports_rss[0] = window[0]
    window[0] = 0.0
    steps.append({"step": line, "seconds": 0.0})
    last[0] = now
imports_rss = [0.0]
export = getattr(attribfast, "export_model", None) or attribfast.export  # the name before 0.2
options = json.loads(sys.argv[4])
export(sys.argv[1], task=sys.argv[2], out_dir=sys.argv[3], progress=progress, **options)
total = time.perf_counter() - started
print(json.dumps({"total": total, "steps": steps[:-1], "imports_rss_mb": imports_rss[0],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_model(name: str, folder: Path) -> tuple[Path, str, int]:
    """(model directory, task, parameter count) of a random-init model of the named shape."""
    import torch
    from tiny_models import gpt2_tokenizer

    fast = gpt2_tokenizer()
    torch.manual_seed(0)
    if name == "gpt2":
        from tiny_models import make_gpt2

        make_gpt2(folder)
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder)
    elif name == "gpt2-small":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
        model = GPT2LMHeadModel(config)
    elif name == "qwen2-0.5b":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        config = Qwen2Config(
            vocab_size=151936,
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            tie_word_embeddings=True,
        )
        model = Qwen2ForCausalLM(config)
    else:
        raise SystemExit(f"unknown model {name}")
    if name != "gpt2":
        # The tokenizer's ids are a subset of the model's vocabulary: enough to export and validate.
        model.eval().save_pretrained(folder)
        fast.save_pretrained(folder)
    return folder, "causal-lm", sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gpt2", choices=("gpt2", "gpt2-small", "qwen2-0.5b"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the runs here")
    parser.add_argument(
        "--basic", action="store_true", help="forward, gradient and next_token only (no prefix-reuse or packed graphs)"
    )
    parser.add_argument("--cli", action="store_true", help="time `python -m attribfast export` instead")
    args = parser.parse_args()
    if args.cli:
        return command_line(args)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, task, n_parameters = make_model(args.model, Path(tmp) / "model")
        runs = []
        options = {"prefix_reuse": False, "packed_targets": False} if args.basic else {}
        for k in range(args.repeats):
            out = Path(tmp) / f"bundle{k}"
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-c", CHILD, str(model_dir), task, str(out), json.dumps(options)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise SystemExit(result.stderr[-3000:])
            run = json.loads(result.stdout.strip().splitlines()[-1])
            run["process_seconds"] = time.perf_counter() - started
            run["noise_lines"] = [line for line in result.stderr.splitlines() if line.strip()]
            runs.append(run)
            print(f"run {k + 1}: {run['process_seconds']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
    weights_mb = n_parameters * 4 / 2**20
    print(f"\n{args.model}: {n_parameters / 1e6:.1f}M parameters ({weights_mb:.0f} MB fp32), {len(runs)} runs")
    print(f"process wall time (imports included): median {statistics.median(r['process_seconds'] for r in runs):.1f} s")
    exits = [r["process_seconds"] - r["total"] for r in runs]
    print(f"exit (process start and the interpreter's teardown): median {statistics.median(exits):.1f} s")
    peak = statistics.median(r["peak_rss_mb"] for r in runs)
    print(f"peak RSS: median {peak:.0f} MB = {peak / weights_mb:.1f}x the fp32 weights")
    print(f"RSS after the imports: median {statistics.median(r['imports_rss_mb'] for r in runs):.0f} MB")
    print("| step | median (s) | median peak RSS in the step (MB) |\n| --- | ---: | ---: |")
    for i, step in enumerate(runs[0]["steps"]):
        seconds = statistics.median(r["steps"][i]["seconds"] for r in runs)
        rss = statistics.median(r["steps"][i]["peak_rss_mb"] for r in runs)
        print(f"| {step['step'][:60]} | {seconds:.2f} | {rss:.0f} |")
    noise = runs[0]["noise_lines"]
    print(f"stderr lines of one export: {len(noise)}" + (f" (first: {noise[0][:100]!r})" if noise else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2) + "\n")


def command_line(args) -> None:
    """Times the export through the command line, each run a fresh process."""
    flags = ["--no-prefix-reuse", "--no-packed-targets"] if args.basic else []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, task, n_parameters = make_model(args.model, Path(tmp) / "model")
        seconds = []
        for k in range(args.repeats):
            command = [sys.executable, "-m", "attribfast", "export", str(model_dir), "--task", task]
            started = time.perf_counter()
            result = subprocess.run(command + ["-o", str(Path(tmp) / f"bundle{k}"), *flags], capture_output=True)
            seconds.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise SystemExit(result.stderr.decode()[-3000:])
            print(f"run {k + 1}: {seconds[-1]:.1f} s", flush=True)
    # The largest peak of any run (the children's ru_maxrss is their maximum).
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\n{args.model}: {n_parameters / 1e6:.1f}M parameters, `attribfast export`, {len(seconds)} runs")
    print(f"process wall time: median {statistics.median(seconds):.1f} s; largest peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
