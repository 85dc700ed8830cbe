"""The attribfast command line: info, export, quantize, explain, explain-corpus, demo."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path

from .errors import AttribfastError
from .faithfulness.command import add_parser as add_compare_parser
from .faithfulness.command import print_figures


def _info(args: argparse.Namespace) -> int:
    import numpy as np

    from . import _core
    from ._runtime import runtime_info
    from .session import Session

    info = runtime_info()
    print(f"ONNX Runtime {info.ort_version} (C API {info.api_version}) from {info.library_path}")
    print(f"providers listed: {', '.join(info.available_providers)}")
    print(f"providers usable: {', '.join(info.usable_providers)}")
    for provider, why in info.unusable_reasons.items():
        print(f"  {provider} unusable: {why}")
    (y,) = Session(_core.PROBE_MODEL).run({"x": np.array([-1.0], np.float32)})
    print(f"tiny model ran through the core: relu(-1) = {float(y[0])}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_model

    started = time.perf_counter()
    out = export_model(
        args.model_dir,
        task=args.task,
        out_dir=args.output,
        score=args.score,
        max_length=args.max_length,
        opset=args.opset,
        overwrite=args.overwrite,
        optimize=args.optimize,
        prefix_reuse=not args.no_prefix_reuse,
        packed_targets=not args.no_packed_targets,
        shared_gradient=not args.no_shared_gradient,
        progress=lambda line: print(f"[{time.perf_counter() - started:6.1f}s] {line}", flush=True),
    )
    manifest = json.loads((out / "attribfast.json").read_text())
    errors = manifest["export_errors"]
    print(
        f"bundle written to {out}: scores differ from torch by {errors['forward_scores']:.2e}, "
        f"gradients by {errors['gradients']:.2e} (relative)"
    )
    for graph, report in (manifest.get("optimization") or {}).items():
        verdict = "kept" if report["kept"] else "not kept"
        print(f"optimisation of {graph}.onnx: {report['speedup']}x measured, {verdict}")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from .int8 import quantize

    out = quantize(args.bundle, args.output, per_channel=not args.per_tensor, overwrite=args.overwrite)
    graphs = json.loads((out / "attribfast.json").read_text())["quantization"]["graphs"]
    print(f"int8 bundle written to {out}: " + ", ".join(f"{name} {dtype}" for name, dtype in graphs.items()))
    return 0


def _parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"none": None, "true": True, "false": False}.get(text.lower(), text)


def _method_from_args(name: str, params: list[str]):
    from .errors import InvalidInputError
    from .methods import METHODS, resolve_method

    if not params:
        return name
    resolve_method(name)
    values = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError(f"--param takes key=value, got {item!r}")
        values[key] = _parse_value(value)
    try:
        return METHODS[name](**values)
    except TypeError as e:
        raise InvalidInputError(f"bad parameter for {name}: {e}") from None


def _explain(args: argparse.Namespace) -> int:
    from .model import load

    model = load(args.bundle, threads=args.threads)
    method = _method_from_args(args.method, args.param)
    result = model.attribute(
        args.text,
        targets=args.target or None,
        method=method,
        generate=args.generate,
        batch_size=args.batch_size,
        progress=not args.quiet,
        truncate=args.truncate,
        per_token=args.per_token,
        contrast=None if not args.contrast else args.contrast[0] if len(args.contrast) == 1 else args.contrast,
        evaluate=args.evaluate,
    )
    if args.words:
        result = result.aggregate("word")
    result = result.normalize(args.normalize)
    _print_matrix(result)
    print_figures(result)
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        fig, _ = result.plot()
        fig.savefig(args.out, dpi=args.dpi)
        print(f"heatmap written to {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"result written to {args.json}")
    return 0


def _print_matrix(result) -> None:
    width = max(8, *(len(t) for t in result.tokens))
    columns = [t if len(t) <= 16 else t[:15] + "…" for t in result.targets]
    col_width = max(10, *(len(c) for c in columns))
    print(f"{result.method} ({result.evaluations} model rows, {result.seconds:.3f} s)")
    print(" " * width + "  " + "  ".join(c.rjust(col_width) for c in columns))
    for token, row in zip(result.tokens, result.matrix, strict=True):
        print(token.ljust(width) + "  " + "  ".join(f"{v:{col_width}.4f}" for v in row))


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out=args.out, bundle=args.bundle, contrast=args.contrast)
    return 0


def _method_help() -> tuple[str, str]:
    """The --method help and an epilog listing each method's parameters, both from the registry."""
    from dataclasses import MISSING, fields

    from .methods import METHODS

    lines = ["methods and their --param keys (defaults):"]
    for name, cls in METHODS.items():
        params = ", ".join(
            f"{f.name}={f.default!r}" if f.default is not MISSING else f.name for f in fields(cls) if f.init
        )
        lines += textwrap.wrap(params or "(none)", 96, initial_indent=f"  {name}: ", subsequent_indent=" " * 6)
    return f"attribution method, one of: {', '.join(METHODS)} (default: %(default)s)", "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="attribfast", description="Token attribution on ONNX Runtime.")
    parser.add_argument("--version", action="version", version=f"attribfast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="print the runtime and its providers, and run a tiny model")
    info.set_defaults(run=_info)

    export = commands.add_parser("export", help="export a Hugging Face model directory to a bundle")
    export.add_argument("model_dir", help="local Hugging Face model directory (config, weights, tokenizer)")
    export.add_argument(
        "--task", required=True, help="causal-lm, sequence-classification, sentence-similarity or seq2seq"
    )
    export.add_argument("-o", "--output", required=True, help="bundle directory to create")
    export.add_argument(
        "--score",
        help="score kind (causal-lm and seq2seq: logprob, prob, logit; classifiers: logit, logprob, prob; cosine)",
    )
    export.add_argument(
        "--max-length", type=int, help="longest input the bundle accepts (default: the model's position limit)"
    )
    export.add_argument("--opset", type=int, default=18, help="ONNX opset of the graphs (default: %(default)s)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    export.add_argument(
        "--optimize", action="store_true", help="try ORT's offline optimisation, kept if exact and faster"
    )
    export.add_argument(
        "--no-prefix-reuse",
        action="store_true",
        help="causal LMs: skip the prefix-reuse graphs (faster export, smaller bundle, no KV reuse)",
    )
    export.add_argument(
        "--no-packed-targets",
        action="store_true",
        help="causal LMs: skip the packed graphs (faster export; every continuation then runs its own rows)",
    )
    export.add_argument(
        "--no-shared-gradient",
        action="store_true",
        help="skip the shared gradient graph (faster export; gradient methods then run a forward per target)",
    )
    export.set_defaults(run=_export)

    quantize = commands.add_parser("quantize", help="write an int8 copy of a bundle (gradient graph stays fp32)")
    quantize.add_argument("bundle", help="float32 bundle directory")
    quantize.add_argument("-o", "--output", required=True, help="bundle directory to create")
    quantize.add_argument("--per-tensor", action="store_true", help="one weight scale per matrix, not per column")
    quantize.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    quantize.set_defaults(run=_quantize)

    method_help, method_epilog = _method_help()
    explain = commands.add_parser(
        "explain",
        help="attribute a text's targets and draw the heatmap",
        epilog=method_epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("bundle", help="bundle directory written by `attribfast export`")
    explain.add_argument("--text", required=True, help="the input text whose tokens are attributed")
    explain.add_argument(
        "--target",
        action="append",
        help="a target: continuation, class, reference text or seq2seq output text (repeat for several)",
    )
    explain.add_argument(
        "--generate", type=int, help="generate N tokens greedily and attribute each (causal LMs, seq2seq)"
    )
    explain.add_argument("--per-token", action="store_true", help="one column per target token (causal LMs, seq2seq)")
    explain.add_argument(
        "--contrast",
        action="append",
        help="attribute score(target) - score(this): once for every target, once per --target, or 'others'",
    )
    explain.add_argument("--method", default="occlusion", metavar="NAME", help=method_help)
    explain.add_argument(
        "--param", action="append", default=[], help="method parameter key=value (repeatable; keys below)"
    )
    explain.add_argument("--out", help="heatmap PNG to write")
    explain.add_argument("--json", help="result JSON to write")
    explain.add_argument(
        "--normalize", choices=("maxabs", "l1"), help="scale each column by its max |value| or its sum of |values|"
    )
    explain.add_argument("--words", action="store_true", help="sum subword tokens into words")
    explain.add_argument("--batch-size", type=int, help="rows per model run (default: from the memory budget)")
    explain.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: ORT decides)")
    explain.add_argument(
        "--truncate", choices=("left", "right"), help="drop the first or last tokens of a too-long input"
    )
    explain.add_argument("--dpi", type=int, default=150, help="resolution of the heatmap PNG (default: %(default)s)")
    explain.add_argument("--quiet", action="store_true", help="no progress bar")
    explain.add_argument("--evaluate", action="store_true", help="add faithfulness figures (docs/faithfulness.md)")
    explain.set_defaults(run=_explain)
    add_compare_parser(commands)

    from .corpus.command import add_parser as add_corpus_parser

    add_corpus_parser(commands, method_help, method_epilog, _method_from_args)

    demo = commands.add_parser("demo", help="attribute the seed's arithmetic prompt with the shipped model")
    demo.add_argument("--out", help="heatmap PNG to write (default: heatmap.png; heatmap-contrast.png with --contrast)")
    demo.add_argument(
        "--contrast",
        action="store_true",
        help='each column: this expression rather than the others (contrast="others")',
    )
    demo.add_argument("--bundle", help="another bundle to use instead of the shipped arithmetic model")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("attribfast: interrupted, run stopped", file=sys.stderr)
        return 130
    except AttribfastError as e:
        print(f"attribfast: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


def run() -> None:
    """The `attribfast` command (and `python -m attribfast`): main(), then the process ends.

    After an export, torch, transformers and the ONNX translator are loaded (about a million
    objects), and the interpreter's own teardown (a full garbage collection, then finalising
    every module) took 2-2.5 s of a 14 s `attribfast export` of a tiny GPT-2. It only frees
    memory that the ending process gives back anyway, so where torch was loaded and no other
    (non-daemon) thread runs, it is skipped: the exit handlers libraries registered still run, logging is
    shut down and the output flushed first. Other commands end as usual."""
    import threading

    code = main()
    # Daemon threads (tqdm's monitor) end with the process anyway; another thread is joined first.
    working = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if "torch" not in sys.modules or working:
        sys.exit(code)
    import atexit
    import logging
    import os

    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a closed pipe (`| head`): what was not read is lost either way
            pass
    os._exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
