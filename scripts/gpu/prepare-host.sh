# Prepares a GPU host (no Node.js, no network) to run rmt from the folder scripts/gpu/pack.sh built.
# Source it from the repository root, in bash:
#
#   source scripts/gpu/prepare-host.sh [PACK_DIR]      # default .device
#
# It unpacks node into $RMT_GPU_PREFIX/bin (default /tmp/rmt-gpu), the packed packages into
# ./node_modules (ES modules resolve through node_modules folders, never NODE_PATH), asm/build if
# packed, and the Vulkan/EGL loader .debs into $RMT_GPU_PREFIX/sys with dpkg -x (nothing under / is
# touched). Then it exports PATH, LD_LIBRARY_PATH, VK_DRIVER_FILES (the NVIDIA Vulkan ICD) and
# __EGL_VENDOR_LIBRARY_FILENAMES (the NVIDIA glvnd EGL vendor file).
#
# RMT_GPU_SYSTEM_INSTALL=1 instead installs the .debs into / and runs ldconfig, as the device
# README's recipe does (a fallback if the loaders are not found from the prefix).

_rmt_pack=${1:-.device}
RMT_GPU_PREFIX=${RMT_GPU_PREFIX:-/tmp/rmt-gpu}
export RMT_GPU_PREFIX

_rmt_prepare() {
  local pack=$1 prefix=$RMT_GPU_PREFIX
  if [ ! -f "$pack/node.xz" ]; then
    echo "prepare-host: $pack/node.xz missing: run scripts/gpu/pack.sh here and carry $pack" >&2
    return 1
  fi
  mkdir -p "$prefix/bin" "$prefix/sys" || return 1
  if [ ! -x "$prefix/bin/node" ]; then
    xz -dc "$pack/node.xz" >"$prefix/bin/node.tmp" && chmod +x "$prefix/bin/node.tmp" &&
      mv "$prefix/bin/node.tmp" "$prefix/bin/node" || return 1
  fi
  if [ ! -e node_modules/tsx/dist/cli.mjs ]; then
    xz -dc "$pack/node_modules.tar.xz" | tar -xf - || return 1
  fi
  if [ -f "$pack/asm-build.tar.xz" ] && [ ! -d asm/build ]; then
    xz -dc "$pack/asm-build.tar.xz" | tar -xf - || return 1
  fi
  local deb
  for deb in "$pack"/debs/*.deb; do
    [ -e "$deb" ] || continue
    if [ "${RMT_GPU_SYSTEM_INSTALL:-0}" = 1 ]; then
      dpkg -x "$deb" / || return 1
    else
      dpkg -x "$deb" "$prefix/sys" || return 1
    fi
  done
  if [ "${RMT_GPU_SYSTEM_INSTALL:-0}" = 1 ]; then ldconfig; fi
  return 0
}

_rmt_first() {
  local f
  for f in "$@"; do
    if [ -e "$f" ]; then
      echo "$f"
      return 0
    fi
  done
  return 1
}

if _rmt_prepare "$_rmt_pack"; then
  export PATH="$RMT_GPU_PREFIX/bin:$PATH"
  _rmt_ld="$RMT_GPU_PREFIX/sys/usr/lib/x86_64-linux-gnu"
  for _rmt_d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [ -d "$_rmt_d" ] && _rmt_ld="$_rmt_ld:$_rmt_d"
  done
  case ":${LD_LIBRARY_PATH:-}:" in
  *":$_rmt_ld:"*) ;; # sourced again: already there
  *) export LD_LIBRARY_PATH="$_rmt_ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
  esac
  if _rmt_icd=$(_rmt_first /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json \
    /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json); then
    export VK_DRIVER_FILES="$_rmt_icd"
  else
    echo "prepare-host: no NVIDIA Vulkan ICD file found (nvidia_icd.json)" >&2
  fi
  if _rmt_egl=$(_rmt_first /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json \
    /usr/share/glvnd/egl_vendor.d/10_nvidia.json /etc/glvnd/egl_vendor.d/10_nvidia.json); then
    export __EGL_VENDOR_LIBRARY_FILENAMES="$_rmt_egl"
  else
    echo "prepare-host: no NVIDIA EGL vendor file found (10_nvidia.json)" >&2
  fi
  echo "prepare-host: node $(node --version) at $(command -v node)"
  echo "prepare-host: LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "prepare-host: VK_DRIVER_FILES=${VK_DRIVER_FILES:-} __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-}"
  unset _rmt_ld _rmt_d _rmt_icd _rmt_egl
else
  echo "prepare-host: failed" >&2
  false
fi
unset _rmt_pack
