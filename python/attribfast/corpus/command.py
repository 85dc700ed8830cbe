"""`attribfast explain-corpus BUNDLE INPUT -o OUT.parquet`: a resumable corpus run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import InvalidInputError


def add_parser(commands, method_help: str, method_epilog: str, method_from_args) -> None:
    """Adds explain-corpus; method_from_args(name, params) turns --method/--param into a config (the CLI's)."""
    parser = commands.add_parser(
        "explain-corpus",
        help="attribute every row of a .jsonl, .csv or .parquet file into a Parquet dataset (resumable)",
        epilog=method_epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", help="bundle directory written by `attribfast export`")
    parser.add_argument("input", help="input file: .jsonl, .csv or .parquet, one text per row")
    parser.add_argument(
        "-o", "--output", required=True, help="output Parquet dataset directory; rerunning resumes it"
    )
    parser.add_argument("--text-column", default="text", help="column holding the texts (default: %(default)s)")
    targets = parser.add_mutually_exclusive_group()
    targets.add_argument("--target", action="append", help="a target for every row (repeat for several)")
    targets.add_argument(
        "--target-column", help="column holding each row's targets (a string, or a JSON list in .csv input)"
    )
    parser.add_argument("--method", default="occlusion", metavar="NAME", help=method_help)
    parser.add_argument(
        "--param", action="append", default=[], help="method parameter key=value (repeatable; keys below)"
    )
    parser.add_argument("--chunk-size", type=int, default=256, help="rows per Parquet part (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, help="rows per model run (default: from the memory budget)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: ORT decides)")
    parser.add_argument(
        "--truncate", choices=("left", "right"), help="drop the first or last tokens of a too-long input"
    )
    parser.add_argument(
        "--ray", action="store_true", help="run on Ray Data (the cluster in $RAY_ADDRESS, else a local one)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="Ray actors (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run, method_from_args=method_from_args)


def run(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from .files import ChunkWriter, read_table

    if args.chunk_size < 1:
        raise InvalidInputError("--chunk-size must be >= 1")
    method = args.method_from_args(args.method, args.param)
    frame = read_table(args.input)
    if args.text_column not in frame.columns:
        raise InvalidInputError(f"{args.input} has no column {args.text_column!r} (columns: {list(frame.columns)})")
    if args.target_column and args.target_column not in frame.columns:
        raise InvalidInputError(f"{args.input} has no column {args.target_column!r}")
    writer = ChunkWriter(args.output)
    done = writer.done_ids()
    todo = [i for i in range(len(frame)) if i not in done]
    if not args.quiet:
        print(f"{len(frame)} rows, {len(done)} already in {args.output}, {len(todo)} to attribute")
    chunks = [todo[i : i + args.chunk_size] for i in range(0, len(todo), args.chunk_size)]
    source = _ray_chunks if args.ray else _local_chunks
    bar = None if args.quiet else _bar(len(todo))
    try:
        # One conversion of the whole input: every part then has the same input column types, even
        # where a chunk's cells alone would infer another (all missing, say).
        inputs = pa.Table.from_pandas(frame, preserve_index=False)
        for row_ids, records in source(args, method, frame, chunks):
            writer.write(inputs.take(row_ids), row_ids, records)
            if bar is not None:
                bar.update(len(row_ids))
    finally:
        if bar is not None:
            bar.close()
    failed = _count_errors(args.output)
    if not args.quiet:
        print(f"wrote {args.output}: {len(frame)} rows, {failed} with an error")
    return 0


def _targets_of(args, frame, rows: list[int]) -> list:
    if args.target_column:
        return [_cell_targets(frame[args.target_column].iloc[i]) for i in rows]
    return [args.target or None] * len(rows)


def _cell_targets(value):
    import json

    if isinstance(value, str) and value.startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and value != value:  # pandas reads a missing cell as NaN
        return None
    return value


def _local_chunks(args, method, frame, chunks):
    from ..model import load
    from .sweep import attribute_records

    model = load(args.bundle, threads=args.threads)
    texts = frame[args.text_column]
    for rows in chunks:
        records = list(
            attribute_records(
                model,
                [_text(texts.iloc[i]) for i in rows],
                _targets_of(args, frame, rows),
                method,
                batch_size=args.batch_size,
                truncate=args.truncate,
            )
        )
        yield rows, records


def _ray_chunks(args, method, frame, chunks):
    """One Ray dataset of every row to do; results come back in chunks as the actors finish them."""
    import ray
    import ray.data

    from .ray_data import attribute_dataset
    from .records import RESULT_COLUMNS

    todo = [i for rows in chunks for i in rows]
    if not todo:
        return
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    part = frame.iloc[todo][[args.text_column]].reset_index(drop=True)
    part["__row_id"] = todo
    if args.target_column:
        part["__targets"] = _targets_of(args, frame, todo)
    result = attribute_dataset(
        ray.data.from_pandas(part),
        args.bundle,
        text_column=args.text_column,
        targets="__targets" if args.target_column else (args.target or None),
        method=method,
        concurrency=args.concurrency,
        truncate=args.truncate,
        **({"threads": args.threads} if args.threads else {}),
    )
    for batch in result.iter_batches(batch_size=args.chunk_size, batch_format="pandas"):
        rows = [int(i) for i in batch["__row_id"]]
        yield rows, batch[list(RESULT_COLUMNS)].to_dict("records")


def _text(value) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _count_errors(output) -> int:
    import pyarrow.parquet as pq

    if not any(Path(output).glob("part-*.parquet")):
        return 0
    table = pq.read_table(output, columns=["error"])
    return sum(1 for e in table.column("error").to_pylist() if e)


def _bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="row", desc="attributing")
