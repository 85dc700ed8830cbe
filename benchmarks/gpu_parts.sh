#!/bin/bash
# Builds, on this machine, the parts a device-machine lease needs (benchmarks/gpu_session.sh):
#   bash benchmarks/gpu_parts.sh OUT_DIR
# OUT_DIR/first: the ONNX Runtime library (xz), the shared provider, a _core built for Python 3.12
# (the machine's python3), the captum and jsonschema wheels and the CUDA provider's first part;
# OUT_DIR/cuda1, cuda2, ...: the rest of the CUDA provider (xz, split). Every folder stays under
# the 64 MiB a device call carries.
set -eu
OUT=$(realpath -m "${1:-.gpu}")
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT/first"
cd "$WORK"
pip download -q onnxruntime-gpu==1.31.1 --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 -d .
pip download -q captum==0.9.0 --no-deps -d "$OUT/first"
pip download -q jsonschema --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  --platform manylinux2014_x86_64 -d "$OUT/first"
unzip -q onnxruntime_gpu-*.whl 'onnxruntime/capi/libonnxruntime*'
LIBS=onnxruntime/capi
cp "$LIBS/libonnxruntime_providers_shared.so" "$OUT/first/"
xz -6 -T1 -c "$LIBS/libonnxruntime.so.1.31.1" >"$OUT/first/libort.xz"
xz -6 -T1 -c "$LIBS/libonnxruntime_providers_cuda.so" >cuda.xz
split -b 50M -d cuda.xz cuda.xz.part
mv cuda.xz.part00 "$OUT/first/"
k=1
for part in cuda.xz.part*; do
  mkdir -p "$OUT/cuda$k" && mv "$part" "$OUT/cuda$k/" && k=$((k + 1))
done
PYENV_VERSION=3.12.1 python3.12 -m pip wheel -q --no-deps -w wheel "$REPO"
unzip -q -o wheel/attribfast-*.whl 'attribfast/_core*' -d core
cp core/attribfast/_core*.so "$OUT/first/"
du -sh "$OUT"/*
