# Sourced on a GPU machine to reproduce the GPU numbers (docs/benchmarks.md):
#   source benchmarks/gpu_machine.sh PARTS_DIR
# PARTS_DIR holds onnxruntime-gpu 1.31.1's libonnxruntime.so.1.31.1 (xz: libort.xz), its CUDA
# provider (xz, split: cuda.xz.part*), libonnxruntime_providers_shared.so and the captum wheel,
# carried there in parts under the transfer limit. It assembles the libraries, points the loader at
# the CUDA 13 libraries of the machine's torch (the nvidia-* wheels), installs captum and builds
# attribfast with the machine's own python3, cmake and pybind11; with ATTRIBFAST_PREBUILT_CORE (a
# _core built for that python elsewhere) it runs the working tree's package with that core instead.
PARTS=${1:-/tmp/ortparts}
ORT=/tmp/ort
if [ ! -s "$ORT/libonnxruntime_providers_cuda.so" ]; then
  mkdir -p "$ORT"
  cat "$PARTS"/cuda.xz.part* > /tmp/cuda.xz
  python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
    /tmp/cuda.xz "$ORT/libonnxruntime_providers_cuda.so"
  python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
    "$PARTS/libort.xz" "$ORT/libonnxruntime.so.1.31.1"
  cp "$PARTS/libonnxruntime_providers_shared.so" "$ORT/"
  rm -f /tmp/cuda.xz
fi
NVIDIA=$(python3 -c "import nvidia, os; print(list(nvidia.__path__)[0])")
LD_LIBRARY_PATH=$(find "$NVIDIA" -name 'lib*.so*' -printf '%h\n' | sort -u | tr '\n' ':')$ORT:${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH
export ATTRIBFAST_ORT_LIBRARY=$ORT/libonnxruntime.so.1.31.1
python3 -m pip install -q --no-index --no-deps --target /tmp/site "$PARTS"/captum-*.whl 2>&1 | grep -v WARNING
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
if [ -n "${ATTRIBFAST_PREBUILT_CORE:-}" ]; then
  cp "$ATTRIBFAST_PREBUILT_CORE" python/attribfast/
  export PYTHONPATH=$PWD/python:$PYTHONPATH
else
  python3 -m pip install -q --no-deps --no-build-isolation . 2>&1 | grep -v WARNING
fi
