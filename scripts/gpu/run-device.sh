#!/usr/bin/env bash
# The whole GPU-host session in one command (docs/gpu.md), from the repository root with the pack
# carried (.device): prepare the host, show what it has, check the model on webgpu against the
# PyTorch reference fixtures, then run bench:model through webgpu against PyTorch CUDA.
#
# Writes into $OUT (default /tmp/rmt-gpu-out): diag.log, check.log, check-webgpu.json, bench.log,
# model-gpu.json, model-gpu.md. Environment:
#   CHECK_ARGS   extra arguments of scripts/gpu/check-webgpu.ts (e.g. --allow-software)
#   BENCH_ARGS   extra arguments of bench/model.ts (default: --machine gpu --torch-device cuda)
#   RMT_GPU_NO_SYSTEM_INSTALL=1  never fall back to installing the .debs into / (for tests)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/rmt-gpu-out}
mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "[run-device +$(($(date +%s) - T0))s] $*"; }

{
  stamp "prepare"
  # shellcheck source=prepare-host.sh
  source scripts/gpu/prepare-host.sh .device || exit 1
  stamp "host"
  uname -a
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  ls -la /usr/local/nvidia/share/vulkan/icd.d /usr/local/nvidia/share/glvnd/egl_vendor.d 2>&1
  [ -n "${VK_DRIVER_FILES:-}" ] && cat "$VK_DRIVER_FILES"
  ldconfig -p | grep -E 'libvulkan|libEGL|libGLX_nvidia|libnvidia-glcore' | head -12
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())' 2>&1
} 2>&1 | tee "$OUT/diag.log"
# the sourced environment does not survive the pipeline's subshell: source again (already unpacked)
source scripts/gpu/prepare-host.sh .device >/dev/null || exit 1

check() {
  stamp "check-webgpu $*"
  node node_modules/tsx/dist/cli.mjs scripts/gpu/check-webgpu.ts --out "$OUT/check-webgpu.json" ${CHECK_ARGS:-} "$@"
}
check 2>&1 | tee "$OUT/check.log"
rc=${PIPESTATUS[0]}
if [ "$rc" = 2 ] && [ "${RMT_GPU_NO_SYSTEM_INSTALL:-0}" != 1 ] && command -v nvidia-smi >/dev/null; then
  # no hardware adapter from the prefix: the device README's recipe, loaders installed into /
  stamp "no adapter from the prefix: installing the .debs into / (RMT_GPU_SYSTEM_INSTALL=1)" | tee -a "$OUT/check.log"
  RMT_GPU_SYSTEM_INSTALL=1 source scripts/gpu/prepare-host.sh .device >>"$OUT/diag.log" 2>&1
  check 2>&1 | tee -a "$OUT/check.log"
  rc=${PIPESTATUS[0]}
fi
if [ "$rc" = 2 ]; then
  # still none: what the Vulkan loader sees, for the record
  VK_LOADER_DEBUG=error,warn,driver node node_modules/tsx/dist/cli.mjs scripts/gpu/check-webgpu.ts \
    2>&1 | head -150 >>"$OUT/diag.log"
fi
stamp "check exit status $rc" | tee -a "$OUT/check.log"

if [ "$rc" = 2 ]; then
  stamp "no hardware WebGPU adapter: bench skipped" | tee "$OUT/bench.log"
  exit 2
fi
stamp "bench:model" | tee "$OUT/bench.log"
# shellcheck disable=SC2086
node node_modules/tsx/dist/cli.mjs bench/model.ts --backend webgpu --out "$OUT" \
  ${BENCH_ARGS:---machine gpu --torch-device cuda} 2>&1 | tee -a "$OUT/bench.log"
brc=${PIPESTATUS[0]}
stamp "bench exit status $brc" | tee -a "$OUT/bench.log"
[ "$rc" = 0 ] && [ "$brc" = 0 ]
