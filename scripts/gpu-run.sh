#!/usr/bin/env bash
# Runs on the GPU machine, from the folder scripts/gpu-bundle.sh made: the library check, the
# reference checks on CUDA, then the measurements of docs/gpu.md. Results go to $OUT (default
# ./results). Needs the NVIDIA driver (libcuda.so.1) and NVRTC (libnvrtc.so.*), which burn-cuda
# loads at run time to compile its kernels; see docs/gpu.md.
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-results}
mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

log "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$OUT/summary.txt"
log "CUDA libraries the loader sees"
ldconfig -p | grep -E "libcuda\.so|libnvrtc|libcublas" | tee -a "$OUT/summary.txt"
if ! ldconfig -p | grep -q libnvrtc; then
  # A PyTorch install ships NVRTC in its nvidia-* wheels; point the loader at it.
  NVRTC=$(python3 -c "import nvidia.cuda_nvrtc, os; print(os.path.join(os.path.dirname(nvidia.cuda_nvrtc.__file__), 'lib'))" 2>/dev/null \
    || find / -name 'libnvrtc.so*' -printf '%h\n' 2>/dev/null | head -1)
  [ -n "$NVRTC" ] && export LD_LIBRARY_PATH=$NVRTC:${LD_LIBRARY_PATH:-} && log "NVRTC from $NVRTC"
fi

log "confu check --device cuda"
./confu check --device cuda --fixtures fixtures 2>&1 | tee "$OUT/check-cuda.txt"
log "confu check --device cpu (the same checks on this machine's CPU)"
./confu check --device cpu --fixtures fixtures 2>&1 | tee "$OUT/check-cpu.txt"

log "vanilla decode, --synthetic large"
./confu bench decode --device cuda --synthetic large 2>&1 | tee "$OUT/bench-decode-large.txt"
log "verify cost against rows, --synthetic large"
./confu bench spec --device cuda --synthetic large --tree-sizes 1,2,4,8,16,32,64,128 2>&1 | tee "$OUT/bench-spec-large.txt"
log "eval, embedded testbed, T = 0"
./confu eval --device cuda --prompts prompts-dev.jsonl --max-new-tokens 128 \
  --json "$OUT/eval-cuda.json" 2>&1 | tee "$OUT/eval-cuda.txt"
./confu eval --device cpu --prompts prompts-dev.jsonl --max-new-tokens 128 \
  --json "$OUT/eval-cpu.json" 2>&1 | tee "$OUT/eval-cpu.txt"
log "done"
