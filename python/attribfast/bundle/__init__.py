"""Attribution bundles on disk: the manifest, its checks, and loading without torch."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import BundleError, BundleIntegrityError, BundleVersionError
from ..tasks import TASKS as _TASKS
from .contract import check_graphs
from .schema import check_manifest
from .stamp import fingerprint, is_current, read_stamp, write_stamp

MANIFEST = "attribfast.json"
SCHEMA_VERSION = 1
# The tasks a bundle may hold (each is a module in attribfast.tasks, which owns its graph contract).
TASKS = tuple(_TASKS)
VERIFY_MODES = (True, False, "always")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_hash(manifest: dict) -> str:
    """A stable hash of a manifest, carried by results to name the bundle they came from."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle directory. Files are verified against the manifest's sha256 on load.

    verify: True hashes every file unless a stamp in the user's cache (attribfast.bundle.stamp)
    shows it unchanged since it was last verified; "always" hashes every file; False hashes
    nothing. The manifest's schema, its paths and the graph contract are checked in every mode.

    Every path in the manifest (`files` keys, `graphs.*.file`, `tokenizer`, `embeddings`) must be
    relative and stay inside the bundle once links are resolved, and every file the manifest names
    must be one that `files` hashes: a manifest cannot make attribfast read an unchecked file.
    """

    path: Path
    manifest: dict

    @classmethod
    def load(cls, path: str | os.PathLike, *, verify: bool | str = True) -> Bundle:
        if not any(verify is mode or (isinstance(mode, str) and verify == mode) for mode in VERIFY_MODES):
            raise BundleError(f"verify must be True, False or 'always', got {verify!r}")
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise BundleError(f"{path} is not an attribfast bundle (no {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{manifest_path} is not valid JSON: {e}") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{manifest_path} must hold a JSON object, got {type(manifest).__name__}")
        version = manifest.get("schema_version")
        if not isinstance(version, int):
            raise BundleError(f"{manifest_path} has no schema_version (this attribfast reads schema {SCHEMA_VERSION})")
        if version > SCHEMA_VERSION:
            raise BundleVersionError(
                f"bundle schema version {version} is newer than this attribfast reads ({SCHEMA_VERSION}); "
                "upgrade attribfast"
            )
        if manifest.get("task") not in TASKS:
            raise BundleError(
                f"unknown task {manifest.get('task')!r} in {manifest_path} (possible: {', '.join(TASKS)})"
            )
        check_manifest(manifest, TASKS, SCHEMA_VERSION, str(manifest_path))
        bundle = cls(path, manifest)
        bundle._check_paths()  # even unverified: paths decide what is read at all
        if verify:
            bundle.verify(use_stamp=verify is True)
        graphs = manifest["graphs"]
        check_graphs(manifest["task"], graphs, {name: bundle.graph_path(name) for name in graphs})
        return bundle

    def verify(self, *, use_stamp: bool = True) -> None:
        """Hashes the bundle's files; with use_stamp, files unchanged since their last check are skipped."""
        stamp = read_stamp(self.path) if use_stamp else {}
        verified = {}
        for name, expected in self._hashed().items():
            file = self._resolve(f"files[{name!r}]", name)
            if not file.is_file():
                raise BundleIntegrityError(f"bundle file {name} is missing")
            if is_current(stamp.get(name), expected, file):
                verified[name] = stamp[name]
                continue
            before = fingerprint(file)
            actual = sha256_of(file)
            if actual != expected:
                raise BundleIntegrityError(
                    f"bundle file {name} was modified: sha256 {actual[:12]}... != manifest {expected[:12]}..."
                )
            if fingerprint(file) == before:  # not rewritten while it was being hashed
                verified[name] = {"sha256": actual, "stat": before}
        if verified != stamp:
            write_stamp(self.path, verified)

    def _hashed(self) -> dict:
        files = self.manifest.get("files")
        if not isinstance(files, dict) or not files:
            raise BundleError("the manifest lists no files")
        for name, digest in files.items():
            if not isinstance(digest, str):
                raise BundleError(f"manifest field files[{name!r}] must be a sha256 string, got {digest!r}")
        return files

    def _named(self) -> dict[str, object]:
        """Manifest field -> the path it names, for every file the manifest points at."""
        graphs = self.manifest.get("graphs")
        if not isinstance(graphs, dict) or not graphs:
            raise BundleError("manifest field graphs must map graph names to {file: ...}")
        named: dict[str, object] = {}
        for name, graph in graphs.items():
            if not isinstance(graph, dict):
                raise BundleError(f"manifest field graphs.{name} must be an object with a file, got {graph!r}")
            named[f"graphs.{name}.file"] = graph.get("file")
        named["tokenizer"] = self.manifest.get("tokenizer")
        named["embeddings"] = self.manifest.get("embeddings")
        return named

    def _check_paths(self) -> None:
        hashed = {self._resolve(f"files[{name!r}]", name) for name in self._hashed()}
        for field, name in self._named().items():
            if self._resolve(field, name) not in hashed:
                raise BundleIntegrityError(
                    f"manifest field {field} names {name!r}, which the manifest's files do not hash; "
                    "an unhashed file cannot be trusted"
                )

    def _resolve(self, field: str, name) -> Path:
        """The file a manifest field names, resolved (links followed); BundleError unless inside the bundle."""
        if not isinstance(name, str) or not name:
            raise BundleError(f"manifest field {field} must be a file name in the bundle, got {name!r}")
        if Path(name).is_absolute():
            raise BundleError(f"manifest field {field} is an absolute path ({name!r}); bundle paths are relative")
        root = self.path.resolve()
        resolved = (root / name).resolve()
        if resolved == root or not resolved.is_relative_to(root):
            raise BundleError(f"manifest field {field} ({name!r}) leads outside the bundle to {resolved}")
        return resolved

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def hash(self) -> str:
        return manifest_hash(self.manifest)

    def graph_path(self, name: str) -> Path | None:
        graph = self.manifest["graphs"].get(name)
        return None if graph is None else self._resolve(f"graphs.{name}.file", graph["file"])

    @cached_property
    def tokenizer(self):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self._resolve("tokenizer", self.manifest["tokenizer"])))
        # Inputs must keep their own length: padding would add attended-to tokens, truncation a silent cut.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return tokenizer

    @cached_property
    def embeddings(self) -> np.ndarray:
        """The input embedding matrix [vocab, hidden] (memory-mapped)."""
        return np.load(self._resolve("embeddings", self.manifest["embeddings"]), mmap_mode="r")
