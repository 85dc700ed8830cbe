"""Corpus files: reading .jsonl / .csv / .parquet input, and a resumable Parquet output.

The output is a Parquet dataset directory (OUT.parquet/part-NNNNN.parquet). Each chunk is written
to a temporary name and renamed, so a killed run leaves only whole chunks; a rerun reads their
`row_id`s and skips those rows. pandas.read_parquet and pyarrow read the directory as one table.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError

FORMATS = (".jsonl", ".csv", ".parquet")


def read_table(path: str | os.PathLike):
    """The input as a pandas DataFrame (row order kept: a row's id is its position)."""
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise InvalidInputError(f"no input file {path}")
    try:
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False, dtype=str)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"cannot read {path}: {e}") from None
    raise InvalidInputError(f"input must be one of {', '.join(FORMATS)}, got {path.name}")


class ChunkWriter:
    """Appends chunks of result rows to OUT.parquet/ and knows which row ids are already there."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise InvalidInputError(f"{self.out} exists and is not a Parquet dataset directory written by attribfast")
        self.out.mkdir(parents=True, exist_ok=True)
        self._parts = sorted(self.out.glob("part-*.parquet"))

    def done_ids(self) -> set[int]:
        import pyarrow.parquet as pq

        done: set[int] = set()
        for part in self._parts:
            done.update(pq.read_table(part, columns=["row_id"]).column("row_id").to_pylist())
        return done

    def write(self, inputs, row_ids: list[int], records: list[dict]) -> None:
        """inputs: a pyarrow Table of the chunk's input rows (one schema for every chunk)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not records:
            return
        table = inputs.append_column("row_id", pa.array(row_ids, pa.int64()))
        for name, kind in _result_types().items():
            values = [record[name] for record in records]
            if name == "matrix":
                values = [np.asarray(m, np.float32).tolist() for m in values]
            elif name == "target_scores":
                values = [np.asarray(v, np.float64).tolist() for v in values]
            table = table.append_column(name, pa.array(values, type=kind))
        index = len(self._parts)
        final = self.out / f"part-{index:05d}.parquet"
        temporary = self.out / f".part-{index:05d}.parquet.tmp"
        pq.write_table(table, temporary)
        os.replace(temporary, final)  # atomic: a killed run leaves whole chunks only
        self._parts.append(final)


def _result_types() -> dict:
    import pyarrow as pa

    return {
        "tokens": pa.list_(pa.string()),
        "targets": pa.list_(pa.string()),
        "matrix": pa.list_(pa.list_(pa.float32())),
        "target_scores": pa.list_(pa.float64()),
        "method": pa.string(),
        "parameters": pa.string(),
        "error": pa.string(),
    }
