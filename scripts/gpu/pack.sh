#!/usr/bin/env bash
# Builds the carry folder for a GPU host that has no Node.js and no network (docs/gpu.md):
#
#   .device/node.xz               this machine's node binary, xz -9
#   .device/node_modules.tar.xz   only the packages the GPU run imports (list below), xz -9; the
#                                 webgpu package keeps only dist/linux-x64/dawn.node
#   .device/asm-build.tar.xz      asm/build (the WebAssembly kernels, an ignored build output), if built
#   .device/debs/*.deb            the Vulkan loader and glvnd/EGL libraries Dawn needs on a headless
#                                 NVIDIA host (Debian: libvulkan1 libegl1 libglvnd0 libopengl0 libgl1
#                                 libglx0 libgles2)
#
# Usage: scripts/gpu/pack.sh [DIR]   (default .device, which .gitignore lists)
# Then on the host (the device tool: carry [".device"]): source scripts/gpu/prepare-host.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
DIR=${1:-.device}
LIMIT_MIB=64

# What the GPU run imports (bench/model.ts, scripts/gpu/check-webgpu.ts and the shared/ code they
# load), checked by running both with only these packages (scripts/gpu/test-pack.sh).
PACKAGES=(
  gpu.js acorn gpu-mock.js          # gpu.js and its runtime dependencies
  webgpu @webgpu/types debug ms     # Dawn for Node (index.js + dawn.node) and its dependencies
  tsx esbuild @esbuild/linux-x64    # runs the TypeScript sources
  yaml                              # config parsing in shared/
)
DEBS=(libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)

[ "$(uname -m)" = x86_64 ] || { echo "pack.sh: the GPU host is x86-64; pack on an x86-64 machine" >&2; exit 1; }
[ -d node_modules ] || { echo "pack.sh: run npm ci first" >&2; exit 1; }

rm -rf "$DIR"
mkdir -p "$DIR/debs"
THREADS=$(nproc)

NODE_BIN=$(readlink -f "$(command -v node)")
echo "node $(node --version) from $NODE_BIN"
xz -9 -T"$THREADS" -c "$NODE_BIN" >"$DIR/node.xz"

LIST=()
for p in "${PACKAGES[@]}"; do
  [ -e "node_modules/$p" ] || { echo "pack.sh: node_modules/$p missing" >&2; exit 1; }
  LIST+=("node_modules/$p")
done
# webgpu ships Dawn for five platforms; the host needs linux-x64 only
tar --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' \
  -cf - "${LIST[@]}" | xz -9 -T"$THREADS" >"$DIR/node_modules.tar.xz"

if [ -d asm/build ]; then
  tar -cf - asm/build | xz -9 >"$DIR/asm-build.tar.xz"
fi

# The .debs, for amd64 whatever this machine's architecture (device README's recipe)
LISTS=/tmp/rmt-apt-amd64
mkdir -p "$LISTS/partial"
APT_OPTS=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists="$LISTS")
if ! (cd "$DIR/debs" && apt-get "${APT_OPTS[@]}" download "${DEBS[@]}" >/dev/null 2>&1); then
  apt-get "${APT_OPTS[@]}" update >/dev/null
  (cd "$DIR/debs" && apt-get "${APT_OPTS[@]}" download "${DEBS[@]}" >/dev/null)
fi

ls -la "$DIR" "$DIR/debs"
TOTAL=$(du -sb "$DIR" | cut -f1)
TRACKED=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "carry folder $DIR: $((TOTAL / 1024 / 1024)) MiB; working tree that travels: $((TRACKED / 1024 / 1024)) MiB; limit $LIMIT_MIB MiB together"
if [ $((TOTAL + TRACKED)) -gt $((LIMIT_MIB * 1024 * 1024)) ]; then
  echo "pack.sh: over the $LIMIT_MIB MiB carry limit" >&2
  exit 1
fi
