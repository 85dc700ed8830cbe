#!/usr/bin/env bash
# Regenerates python/attribfast/_core.pyi from the installed extension with pybind11-stubgen
# (pip install ".[test]" brings it). tests/test_packaging.py fails when the committed stub drifts.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && python3 -m pybind11_stubgen attribfast._core -o out)
cp "$tmp/out/attribfast/_core.pyi" python/attribfast/_core.pyi
echo "wrote python/attribfast/_core.pyi"
