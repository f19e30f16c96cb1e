#!/usr/bin/env bash
# Provides the kube-apiserver, etcd, kube-controller-manager and kubectl
# binaries for the integration tests (the controller-manager runs the real
# Deployment and ReplicaSet controllers; kubectl applies k8s/ with its built-in
# kustomize and runs `rollout restart`, as users do).
#
# Prints, on its last stdout line, the absolute path of a folder holding all
# four as executables; progress goes to stderr.
#   1. KUBEBUILDER_ASSETS, when it names a folder with all four (envtest's
#      assets lack kube-controller-manager, so they rarely qualify);
#   2. else the cache ${XDG_CACHE_HOME:-$HOME/.cache}/kuberollouttrigger/controlplane/<k8s>-<etcd>/;
#   3. else builds the missing ones from the modules pinned in go.mod/go.sum
#      next to this script (checksums verified by the Go toolchain), then
#      caches them.
# Exit 3: no assets and no Go toolchain to build them.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf 'ensure.sh: %s\n' "$*" >&2; }

binaries=(etcd kube-apiserver kube-controller-manager kubectl)

missing_in() { # folder: prints the binaries it lacks, space-separated
  local name missing=()
  for name in "${binaries[@]}"; do
    [[ -x "$1/$name" ]] || missing+=("$name")
  done
  printf '%s' "${missing[*]}"
}

has_assets() {
  [[ -z "$(missing_in "$1")" ]]
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if has_assets "$KUBEBUILDER_ASSETS"; then
    (cd "$KUBEBUILDER_ASSETS" && pwd -P)
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=\"$KUBEBUILDER_ASSETS\" lacks an executable $(missing_in "$KUBEBUILDER_ASSETS"); using the pinned build instead"
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
  echo "ensure.sh: missing $(missing_in "$assets_dir"): install Go >= 1.24 (https://go.dev/dl/) to build $k8s_version/$etcd_version, or set KUBEBUILDER_ASSETS to a folder containing ${binaries[*]}" >&2
  exit 3
fi

mkdir -p "$cache_root"
# Serialise concurrent runs (parallel CI jobs sharing one cache).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_root/.lock"
  if ! flock -n 9; then
    log "another ensure.sh is building into $cache_root; waiting for its lock"
    flock 9
  fi
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
log "building $(missing_in "$assets_dir") ($k8s_version, etcd $etcd_version) with $("$go_bin" version); cached binaries are reused (first run only; several minutes each)"
cd "$script_dir"
mkdir -p "$assets_dir"
build() { # name, ldflags, package
  [[ -x "$assets_dir/$1" ]] && return 0
  log "building $1"
  "$go_bin" build -trimpath -ldflags "$2" -o "$tmp_dir/$1" "$3"
  # Move within one filesystem, so each binary appears whole or not at all.
  mv -f "$tmp_dir/$1" "$assets_dir/$1"
  log "$1 built after $((SECONDS - start))s"
}
build etcd "-s -w" go.etcd.io/etcd/server/v3
build kube-apiserver "$k8s_ldflags" k8s.io/kubernetes/cmd/kube-apiserver
build kubectl "$k8s_ldflags" k8s.io/kubernetes/cmd/kubectl
build kube-controller-manager "$k8s_ldflags" k8s.io/kubernetes/cmd/kube-controller-manager
log "cached in $assets_dir"
printf '%s\n' "$assets_dir"
