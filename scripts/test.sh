#!/usr/bin/env bash
# The test command: installs the software Vulkan driver if needed, then runs every test of the
# workspace (HF parity, ConFu readiness, bad input, WGPU smoke test, CUDA probe) with their
# per-fixture report lines visible.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace "$@" -- --nocapture
