#!/usr/bin/env bash
# Build what a GPU machine without a Rust toolchain needs to check and measure confu on CUDA:
#   target/gpu/confu              the CLI built with --features cuda (release, stripped)
#   target/gpu/fixtures/          the reference fixtures (hf/, eagle3/, confu/)
#   target/gpu/prompts-dev.jsonl  the testbed's held-out prompts
#   target/gpu/run.sh             what to run there (see docs/gpu.md)
#
#   bash scripts/gpu-bundle.sh    then copy target/gpu to the GPU machine and run `bash run.sh`
set -euo pipefail
cd "$(dirname "$0")/.."
FIXTURES=${CONFU_FIXTURES:-$PWD/../shared/fixtures}
CORPUS=${CORPUS:-$PWD/../shared/corpus}
OUT=target/gpu
cargo build --release -p cli --features cuda --target-dir target/cuda
mkdir -p "$OUT"
strip -o "$OUT/confu.tmp" target/cuda/release/confu && mv "$OUT/confu.tmp" "$OUT/confu"
rm -rf "$OUT/fixtures" && cp -r "$FIXTURES" "$OUT/fixtures"
cp "$CORPUS/prompts-dev.jsonl" "$OUT/prompts-dev.jsonl"
cp scripts/gpu-run.sh "$OUT/run.sh"
du -sh "$OUT"
