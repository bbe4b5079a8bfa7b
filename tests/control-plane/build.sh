#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager from this Go module into a cache
# outside the clone, once per content of go.mod, go.sum, cmd/ and this script.
#
#   tests/control-plane/build.sh            # progress on stderr; last stdout line = bin dir
#
# Cache: ${KITSYNC_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kitsync/control-plane}/<key>/bin
# A fresh clone on the same machine finds the binaries there and skips the build.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

kube_version=v1.36.3
etcd_version=v3.6.8
binaries=(etcd kube-apiserver kube-controller-manager)

if ! command -v go >/dev/null; then
    echo "control plane: go is not installed; it is needed once to build etcd and kube-apiserver" >&2
    exit 1
fi

key=$( { cat go.mod go.sum build.sh; find cmd -type f -name '*.go' | sort | xargs cat; go env GOVERSION GOOS GOARCH; } \
    | sha256sum | cut -c1-16)
cache_root=${KITSYNC_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kitsync/control-plane}
bin="$cache_root/$key/bin"

complete() {
    for b in "${binaries[@]}"; do [[ -x "$1/$b" ]] || return 1; done
}

# One build per key at a time: a second caller (CI starts a build early, tests/run asks again)
# waits for the first and then finds the binaries.
mkdir -p "$cache_root"
exec 9>"$cache_root/$key.lock"
if ! flock -n 9; then
    echo "control plane: another build of $key is running; waiting for it" >&2
    flock 9
fi

if complete "$bin"; then
    echo "control plane: cached in $bin" >&2
    echo "$bin"
    exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
mkdir -p "$cache_root/$key"
# Build into a private directory, then rename: an interrupted build never looks complete.
tmp=$(mktemp -d "$cache_root/$key/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$kube_version \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 \
-X k8s.io/component-base/version.gitTreeState=clean"
etcd_ldflags="-s -w"

start=$(date +%s)
echo "control plane: downloading modules (go.sum pins every hash)" >&2
go mod download >&2
echo "control plane: building etcd $etcd_version, kube-apiserver and kube-controller-manager $kube_version (several minutes the first time)" >&2
go build -trimpath -ldflags "$etcd_ldflags" -o "$tmp/etcd" ./cmd/etcd >&2
go build -trimpath -ldflags "$kube_ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
go build -trimpath -ldflags "$kube_ldflags" -o "$tmp/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager >&2
complete "$tmp"

# Another build may have finished first; either result is the same.
if ! mv -T "$tmp" "$bin" 2>/dev/null; then
    complete "$bin" || { echo "control plane: could not install into $bin" >&2; exit 1; }
fi
trap - EXIT
echo "control plane: built in $(( $(date +%s) - start )) s into $bin" >&2
echo "$bin"
