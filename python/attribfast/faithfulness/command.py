"""`attribfast compare`: attribute one text with several methods and tabulate their faithfulness."""

from __future__ import annotations

import argparse


def print_figures(result) -> None:
    """The faithfulness table of an evaluated result, under its matrix."""
    table = result.faithfulness_table()
    if table is None:
        return
    figures = result.faithfulness
    print(f"faithfulness ({figures['rows_run']} model rows, {figures['seconds']:.3f} s)")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))


def _compare(args: argparse.Namespace) -> int:
    from ..model import load
    from .compare import compare
    from .params import Faithfulness

    model = load(args.bundle, threads=args.threads)
    points = None if args.exact else (args.points or Faithfulness.points)
    params = Faithfulness(metrics=args.metric or None, points=points)
    result = compare(model, args.text, targets=args.target or None, methods=args.method, evaluate=params)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(result.table.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        fig, _ = result.plot(target=0)
        fig.savefig(args.out, dpi=150)
        print(f"deletion curves written to {args.out}")
    if args.csv:
        result.table.to_csv(args.csv)
        print(f"table written to {args.csv}")
    return 0


def add_parser(commands) -> None:
    compare = commands.add_parser("compare", help="attribute one text with several methods and compare faithfulness")
    compare.add_argument("bundle", help="bundle directory written by `attribfast export`")
    compare.add_argument("--text", required=True, help="the input text whose tokens are attributed")
    compare.add_argument("--target", action="append", help="a target (repeat for several; default: the top one)")
    compare.add_argument(
        "--method",
        action="append",
        required=True,
        help="a method name (repeat: at least one; e.g. --method occlusion --method saliency)",
    )
    compare.add_argument("--metric", action="append", help="a metric name, or 'all' (default: the bounded four)")
    compare.add_argument("--points", type=int, help="even curve steps, the bins added (default: 12)")
    compare.add_argument("--exact", action="store_true", help="exact curves: every feature count")
    compare.add_argument("--out", help="PNG of the first target's deletion curves")
    compare.add_argument("--csv", help="CSV of the table")
    compare.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: ORT decides)")
    compare.set_defaults(run=_compare)
