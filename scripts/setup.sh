#!/usr/bin/env bash
# Installs what the project needs beyond the Rust toolchain: Mesa's software Vulkan driver
# (lavapipe), on which the WGPU smoke test runs when no GPU is present. Idempotent.
set -euo pipefail
need=()
for pkg in mesa-vulkan-drivers libvulkan1; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
