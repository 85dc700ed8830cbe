"""Verification stamps: a bundle file hashed once is not hashed again while it is unchanged.

A stamp records, per file, the sha256 that was verified and the file's stat fingerprint (size,
mtime, ctime, inode, device). Rewriting a file changes its ctime, which a user cannot set back,
so an edited file never matches its stamp. Stamps live in the user's cache directory, not in
the bundle: whoever can write the bundle cannot also forge its stamp there.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

CACHE_ENV = "ATTRIBFAST_CACHE"


def cache_dir() -> Path:
    """$ATTRIBFAST_CACHE, else $XDG_CACHE_HOME/attribfast, else ~/.cache/attribfast."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "attribfast"


def fingerprint(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _stamp_file(root: Path) -> Path:
    key = hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:32]
    return cache_dir() / "verified" / f"{key}.json"


def read_stamp(root: Path) -> dict:
    """File name -> {"sha256", "stat"}; empty when there is no readable stamp."""
    try:
        stamp = json.loads(_stamp_file(root).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def is_current(entry, digest: str, path: Path) -> bool:
    return isinstance(entry, dict) and entry.get("sha256") == digest and entry.get("stat") == fingerprint(path)


def write_stamp(root: Path, entries: dict) -> None:
    """Best effort: a cache that cannot be written only means the next load hashes again."""
    target = _stamp_file(root)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False, suffix=".tmp") as f:
            json.dump(entries, f)
        os.replace(f.name, target)  # atomic: concurrent loads never read half a stamp
    except OSError:
        pass
