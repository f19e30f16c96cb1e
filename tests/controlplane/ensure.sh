#!/usr/bin/env bash
# Provides the kube-apiserver, etcd and kubectl binaries for the integration
# tests (kubectl applies k8s/ with its built-in kustomize, as users do).
#
# Prints, on its last stdout line, the absolute path of a folder holding
# executable `kube-apiserver`, `etcd` and `kubectl`; progress goes to stderr.
#   1. KUBEBUILDER_ASSETS, when it names a folder with all three (envtest's
#      assets include kubectl);
#   2. else the cache ${XDG_CACHE_HOME:-$HOME/.cache}/kuberollouttrigger/controlplane/<k8s>-<etcd>/;
#   3. else builds the missing ones from the modules pinned in go.mod/go.sum
#      next to this script (checksums verified by the Go toolchain), then
#      caches them.
# Exit 3: no assets and no Go toolchain to build them.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf 'ensure.sh: %s\n' "$*" >&2; }

has_assets() {
  [[ -x "$1/kube-apiserver" && -x "$1/etcd" && -x "$1/kubectl" ]]
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if has_assets "$KUBEBUILDER_ASSETS"; then
    (cd "$KUBEBUILDER_ASSETS" && pwd -P)
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=\"$KUBEBUILDER_ASSETS\" lacks an executable kube-apiserver, etcd or kubectl; using the pinned build instead"
fi

# The versions come from go.mod, so the cache key cannot drift from what is built.
module_version() {
  awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$script_dir/go.mod"
}
k8s_version="$(module_version k8s.io/kubernetes)"
etcd_version="$(module_version go.etcd.io/etcd/server/v3)"
if [[ -z "$k8s_version" || -z "$etcd_version" ]]; then
  log "cannot read the k8s.io/kubernetes and go.etcd.io/etcd/server/v3 versions from $script_dir/go.mod"
  exit 1
fi

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/kuberollouttrigger/controlplane"
assets_dir="$cache_root/$k8s_version-$etcd_version"
if has_assets "$assets_dir"; then
  printf '%s\n' "$assets_dir"
  exit 0
fi

go_bin="$(command -v go || true)"
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
  go_bin=/usr/local/go/bin/go
fi
if [[ -z "$go_bin" ]]; then
  echo "ensure.sh: missing kube-apiserver, etcd and kubectl: install Go >= 1.24 (https://go.dev/dl/) to build $k8s_version/$etcd_version, or set KUBEBUILDER_ASSETS to a folder containing kube-apiserver, etcd and kubectl" >&2
  exit 3
fi

mkdir -p "$cache_root"
# Serialise concurrent runs (parallel CI jobs sharing one cache).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_root/.lock"
  flock 9
  if has_assets "$assets_dir"; then
    printf '%s\n' "$assets_dir"
    exit 0
  fi
fi

export GOFLAGS=-buildvcs=false
export CGO_ENABLED=0
export GOWORK=off

tmp_dir="$(mktemp -d "$cache_root/.build.XXXXXX")"
trap 'rm -rf "$tmp_dir"' EXIT

# Without these the binary reports v0.0.0-master in /version.
k8s_minor="${k8s_version#v1.}"
k8s_minor="${k8s_minor%%.*}"
version_pkg=k8s.io/component-base/version
k8s_ldflags="-s -w -X $version_pkg.gitVersion=$k8s_version -X $version_pkg.gitMajor=1"
k8s_ldflags+=" -X $version_pkg.gitMinor=$k8s_minor -X $version_pkg.gitTreeState=clean"

start=$SECONDS
log "building the missing control-plane binaries ($k8s_version, etcd $etcd_version) with $("$go_bin" version) (first run only; several minutes)"
cd "$script_dir"
mkdir -p "$assets_dir"
build() { # name, ldflags, package
  [[ -x "$assets_dir/$1" ]] && return 0
  "$go_bin" build -trimpath -ldflags "$2" -o "$tmp_dir/$1" "$3"
  # Move within one filesystem, so each binary appears whole or not at all.
  mv -f "$tmp_dir/$1" "$assets_dir/$1"
  log "$1 built after $((SECONDS - start))s"
}
build etcd "-s -w" go.etcd.io/etcd/server/v3
build kube-apiserver "$k8s_ldflags" k8s.io/kubernetes/cmd/kube-apiserver
build kubectl "$k8s_ldflags" k8s.io/kubernetes/cmd/kubectl
log "cached in $assets_dir"
printf '%s\n' "$assets_dir"
