#!/bin/sh
# Builds rmt-go-client offline from Debian's Go packages: generates the Go stubs of proto/rmt/v1
# into a GOPATH under the build folder (nothing generated is checked in) and compiles against
# /usr/share/gocode in GOPATH mode, which never downloads a module.
#
#   examples/go/build.sh [BUILD_DIR]     # default: examples/go/build; the binary is BUILD_DIR/rmt-go-client
#
# Needs: golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev
# golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev golang-google-genproto-dev
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${1:-$here/build}
mkdir -p "$build"
build=$(cd "$build" && pwd)

for tool in go protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (see examples/go/README.md)" >&2; exit 1; }
done

# grpc-go 1.33 marshals through github.com/golang/protobuf. Debian's v1.3 of it (the first
# alternative golang-google-grpc-dev depends on, so apt picks it when neither is installed) builds
# this program but panics at the first response ("protobuf tag not enough fields"): it cannot
# handle the messages protoc-gen-go 1.28 generates. v1.5 (golang-github-golang-protobuf-1-5-dev)
# is the one that wraps google.golang.org/protobuf; its go.mod requires it.
legacy=/usr/share/gocode/src/github.com/golang/protobuf/go.mod
if [ -f "$legacy" ] && ! grep -q 'google.golang.org/protobuf' "$legacy"; then
  echo "build.sh: /usr/share/gocode has github.com/golang/protobuf v1.3, which panics on the generated messages;" \
    "apt-get install golang-github-golang-protobuf-1-5-dev (it replaces golang-github-golang-protobuf-1-3-dev)" >&2
  exit 1
fi

# The stubs' import path comes from the protos' go_package (rmt/gen/go/rmt/v1), so under
# $build/gopath/src it is importable in GOPATH mode. Regenerated every time: they follow proto/.
gen=$build/gopath/src
rm -rf "$gen/rmt/gen"
mkdir -p "$gen"
protoc -I"$repo/proto" --go_out="$gen" --go-grpc_out="$gen" "$repo"/proto/rmt/v1/*.proto

# GOPATH mode (GO111MODULE=off) resolves imports from GOPATH only: the generated stubs, then
# Debian's sources. GOPROXY=off and GOFLAGS= keep any environment from asking the network.
# go needs a build cache; without HOME (some CI runners) it has no default, so keep one here.
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
  export GOCACHE="$build/cache"
fi
cd "$here"
GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$build/gopath:/usr/share/gocode" \
  go build -o "$build/rmt-go-client" .
echo "$build/rmt-go-client"
