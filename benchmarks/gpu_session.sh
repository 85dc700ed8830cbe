#!/bin/bash
# One device-machine lease: a CUDA test run and the GPU benchmarks, within 15 minutes of device time.
#   bash benchmarks/gpu_session.sh prepare PARTS_DIR   (first call: starts the CPU-side exports)
#   bash benchmarks/gpu_session.sh tests PARTS_DIR [TEST_FILES...]  (once every part is carried)
#   bash benchmarks/gpu_session.sh bench PARTS_DIR SECONDS  (the benchmarks, within SECONDS)
# Parts: benchmarks/gpu_parts.sh builds them here.
# PARTS_DIR holds what benchmarks/gpu_machine.sh needs, plus a prebuilt _core for the machine's
# python3 (3.12) and the jsonschema wheels (not in the machine's image). `prepare` starts the bundle
# exports in their own process session, so they run on the machine's CPUs while the remaining parts
# travel (on cores 8-15; the CUDA tests take 0-7); `bench` waits for them. Logs go to $OUT (or /tmp/out).
set -u
MODE=$1
PARTS=${2:-/tmp/ortparts}
TOTAL=${3:-570}
LOGS=${OUT:-/tmp/out}
PRE=/tmp/pre
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 ATTRIBFAST_BENCH_CACHE=/tmp/bench-cache
START=$(date +%s)
elapsed() { echo $(($(date +%s) - START)); }
step() { echo "=== [$(elapsed) s] $*"; }
# A step gets what is left of the budget, at most its own limit.
budget() {
  local left=$(($1 - $(elapsed)))
  [ "$left" -lt 5 ] && left=5
  [ "$left" -lt "$2" ] && echo "$left" || echo "$2"
}

if [ "$MODE" = prepare ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$PARTS"/*.whl 2>&1 | grep -v WARNING
  rm -rf "$PRE" && mkdir -p "$PRE" && cp -r python benchmarks tests "$PRE"/ && cp "$PARTS"/_core*.so "$PRE/python/attribfast/"
  export PYTHONPATH=$PRE/python:/tmp/site
  python3 -c "import attribfast, torch, transformers, onnx; print(attribfast.runtime_info()); \
print('torch', torch.__version__, 'transformers', transformers.__version__, 'onnx', onnx.__version__)" || exit 1
  cd "$PRE/benchmarks"
  # CPU-only work: the exports validate on the image's onnxruntime (CPU) library.
  setsid bash -c "OMP_NUM_THREADS=8 taskset -c 8-15 python3 -c \"import bench_gpu as b; \
b.bundles('gpt2-small', b.make_model('gpt2-small'))\" >$PRE/gpt2-small.log 2>&1; touch $PRE/gpt2-small.done" \
    </dev/null >/dev/null 2>&1 &
  setsid bash -c "OMP_NUM_THREADS=4 taskset -c 12-15 python3 -c \"import bench_corpus; bench_corpus.BertTiny()\" \
    >$PRE/small.log 2>&1; touch $PRE/small.done" </dev/null >/dev/null 2>&1 &
  sleep 2; ps aux | grep -c "[p]ython3 -c"
  exit 0
fi

wait_for() {  # wait_for NAME DEADLINE: the prepared export NAME, until DEADLINE seconds into the run
  while [ ! -e "$PRE/$1.done" ] && [ "$(elapsed)" -lt "$2" ]; do sleep 2; done
  echo "$1 export: $([ -e "$PRE/$1.done" ] && echo finished || echo 'NOT finished')"; tail -2 "$PRE/$1.log"
}

step "libraries and core"
ATTRIBFAST_PREBUILT_CORE=$(ls "$PARTS"/_core*.so) source benchmarks/gpu_machine.sh "$PARTS"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import attribfast, torch; print(attribfast.runtime_info()); print('torch', torch.__version__)" \
  || exit 1

if [ "$MODE" = tests ]; then
  # Default: every test file with a CUDA path (docs/benchmarks.md, third lease); the MiniLM tests
  # need its wheel, which is not carried. Cores 8-15 keep the prepared exports going.
  step "CUDA test run (ATTRIBFAST_PROVIDERS=cuda,cpu)"
  FILES=("${@:3}")
  [ ${#FILES[@]} -eq 0 ] && FILES=(tests/test_cuda.py tests/test_gradient.py tests/test_sampled_gradient.py
    tests/test_corpus_pooled.py tests/test_corpus_pooled_gradient.py tests/test_shared_gradient.py
    tests/test_per_token.py tests/test_precision.py tests/test_perturbation.py tests/test_packing.py
    tests/test_prefix_reuse.py)
  ATTRIBFAST_PROVIDERS=cuda,cpu timeout "$(budget 330 320)" taskset -c 0-7 python3 -m pytest -q -n 8 \
    -p no:cacheprovider -k "not minilm and not similarity" "${FILES[@]}" 2>&1 | tee "$LOGS/pytest_cuda.log" | tail -40
  cp "$PRE"/*.log "$LOGS"/ 2>/dev/null
  step "done"
  exit 0
fi

step "waiting for the small exports"
wait_for small 40

# The gradient methods' pooled sweeps (occlusion's were measured on an H200 in session 5), each
# leaving bench_gpu at least 230 s.
for method in saliency integrated_gradients; do
  step "pooled corpus sweep on CUDA (bench_corpus --model bert-tiny --method $method)"
  ATTRIBFAST_PROVIDERS=cuda,cpu timeout "$(budget $((TOTAL - 230)) 90)" python3 benchmarks/bench_corpus.py \
    --model bert-tiny --method $method --only pooled loop --repeats 3 2>&1 | tee "$LOGS/bench_corpus_cuda_$method.log"
done

step "waiting for the GPT-2-small export"
wait_for gpt2-small $((TOTAL - 200))

step "attribfast fp32/fp16 vs Captum on the GPU (bench_gpu --only gpt2-small)"
timeout "$(budget "$TOTAL" 260)" python3 benchmarks/bench_gpu.py --only gpt2-small --repeats 3 2>&1 \
  | tee "$LOGS/bench_gpu.log"
cp "$PRE"/*.log "$LOGS"/ 2>/dev/null
step "done"
