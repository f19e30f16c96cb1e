#!/usr/bin/env bash
# Provides the helm binary the tests render and lint the chart with
# (k8s/helm/kuberollouttrigger).
#
# Prints, on its last stdout line, the absolute path of an executable helm;
# progress goes to stderr.
#   1. the cache ${XDG_CACHE_HOME:-$HOME/.cache}/kuberollouttrigger/tools/helm-<version>/helm,
#      keyed by the version pinned in helm/go.mod next to this script;
#   2. else builds it from the module pinned in helm/go.mod and helm/go.sum
#      (checksums verified by the Go toolchain), then caches it.
# Exit 3: not cached and no Go toolchain to build it.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module_dir="$script_dir/helm"

log() { printf 'ensure_helm.sh: %s\n' "$*" >&2; }

# The version comes from go.mod, so the cache key cannot drift from what is built.
version="$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" { print $3; exit }
  $1 == "helm.sh/helm/v3" && $2 ~ /^v/ { print $2; exit }' "$module_dir/go.mod")"
if [[ -z "$version" ]]; then
  log "cannot read the helm.sh/helm/v3 version from $module_dir/go.mod"
  exit 1
fi

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/kuberollouttrigger/tools"
dir="$cache_root/helm-$version"
if [[ -x "$dir/helm" ]]; then
  printf '%s\n' "$dir/helm"
  exit 0
fi

go_bin="$(command -v go || true)"
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
  go_bin=/usr/local/go/bin/go
fi
if [[ -z "$go_bin" ]]; then
  log "helm $version is not built: install Go >= 1.25 (https://go.dev/dl/; Debian: apt-get install golang-go) to build it"
  exit 3
fi

mkdir -p "$cache_root"
# Serialise concurrent runs (test files sharing one cache); the lock is the
# helm build's own, so it never waits on an actionlint build.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_root/.lock-helm"
  flock 9
  if [[ -x "$dir/helm" ]]; then
    printf '%s\n' "$dir/helm"
    exit 0
  fi
fi

export GOFLAGS="-buildvcs=false -mod=readonly"
export CGO_ENABLED=0
export GOWORK=off

tmp_dir="$(mktemp -d "$cache_root/.build.XXXXXX")"
trap 'rm -rf "$tmp_dir"' EXIT

log "building helm $version with $("$go_bin" version) (first run only; a few minutes)"
cd "$module_dir"
# As Helm's Makefile does: its version, and the Kubernetes version it assumes
# without a cluster (the one after its client-go's, e.g. v0.35 -> 1.35), which
# `helm template` and `helm lint` check the chart's kubeVersion against.
client_go="$("$go_bin" list -f '{{.Version}}' -m k8s.io/client-go)"
minor="$(printf '%s' "$client_go" | cut -d. -f2)"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags="$ldflags -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$minor"
done
"$go_bin" build -trimpath -ldflags "$ldflags" -o "$tmp_dir/helm" helm.sh/helm/v3/cmd/helm
mkdir -p "$dir"
# Move within one filesystem, so the binary appears whole or not at all.
mv -f "$tmp_dir/helm" "$dir/helm"
log "cached in $dir"
printf '%s\n' "$dir/helm"
