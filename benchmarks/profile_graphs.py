"""Kernel-time profile of a bundle's forward and gradient graphs under onnxruntime, by op type.

    python benchmarks/profile_graphs.py [--denormal-as-zero]

Uses the GPT-2 4x256 bundle of the benchmarks (8 rows of 66 tokens, 3 scored tokens, 10 runs), and
its shared gradient graph on 8 packed rows of the same prompt with 5 three-token continuations.
"""

from __future__ import annotations

import collections
import json

import numpy as np
from common import CACHE, bundle_for, gpt2_bench_model


def profile(graph_path, feeds, denormal_as_zero: bool, runs: int = 10) -> tuple[float, list[tuple[str, float]]]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.set_denormal_as_zero", "1" if denormal_as_zero else "0")
    options.enable_profiling = True
    options.profile_file_prefix = str(CACHE / "profile")
    session = onnxruntime.InferenceSession(str(graph_path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, feeds)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    per_op = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    return total / runs / 1000, [(op, 100 * d / total) for op, d in per_op.most_common(8)]


def shared_feeds(rows: int, prompt_embeds) -> dict:
    """The shared gradient graph's feeds: a 64-token prompt and 5 packed 3-token continuations
    (a row scores them all; the per-target gradient graph needs 5 rows of 66 tokens for that)."""
    from attribfast.tasks.shared_gradient import packed_gradient_layout

    n, hidden = prompt_embeds.shape[1], prompt_embeds.shape[2]
    layout = packed_gradient_layout(n, [np.array([1, 2, 3])] * 5, 0)
    width = len(layout.suffixes[0])
    suffix = np.full((rows, width, hidden), 0.01, np.float32)
    return {
        "inputs_embeds": np.concatenate([prompt_embeds, suffix], 1),
        "attention_mask": np.ones((rows, n + width), np.int64),
        **{name: np.repeat(value, rows, 0) for name, value in layout.extras.items()},
    }


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--denormal-as-zero", action="store_true", help="flush denormals to zero in ORT")
    args = parser.parse_args()
    bundle = bundle_for(gpt2_bench_model(), "causal-lm", "gpt2-4x256")
    rows, seq, hidden, scored = 8, 66, 256, 3
    targets = {
        "score_positions": np.tile(np.arange(63, 63 + scored), (rows, 1, 1)),
        "score_ids": np.ones((rows, 1, scored), np.int64),
        "score_weights": np.ones((rows, 1, scored), np.float32),
    }
    mask = {"attention_mask": np.ones((rows, seq), np.int64)}
    embeds = (np.random.default_rng(0).standard_normal((rows, seq, hidden)) * 0.02).astype(np.float32)
    graphs = {
        "forward": {"input_ids": np.ones((rows, seq), np.int64), **mask, **targets},
        "gradient": {"inputs_embeds": embeds, **mask, **targets},
    }
    if (bundle / "shared_gradient.onnx").is_file():
        graphs["shared_gradient"] = shared_feeds(rows, embeds[:, :64])
    for name, feeds in graphs.items():
        milliseconds, ops = profile(bundle / f"{name}.onnx", feeds, args.denormal_as_zero)
        what = f"{rows} packed rows of 5 targets" if name == "shared_gradient" else f"{rows} rows"
        print(f"{name}.onnx: {milliseconds:.2f} ms of kernels per run of {what}")
        for op, share in ops:
            print(f"    {op:<24} {share:5.1f}%")


if __name__ == "__main__":
    main()
