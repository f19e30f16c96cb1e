#!/usr/bin/env bash
# Provides the actionlint binary the tests lint the docs' workflows with.
#
# Prints, on its last stdout line, the absolute path of an executable
# actionlint; progress goes to stderr.
#   1. the cache ${XDG_CACHE_HOME:-$HOME/.cache}/kuberollouttrigger/tools/<version>/actionlint,
#      keyed by the version pinned in go.mod next to this script;
#   2. else builds it from the module pinned in go.mod/go.sum (checksums
#      verified by the Go toolchain), then caches it.
# Exit 3: not cached and no Go toolchain to build it.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf 'ensure_actionlint.sh: %s\n' "$*" >&2; }

# The version comes from go.mod, so the cache key cannot drift from what is built.
version="$(awk '$1 == "require" && $2 == "github.com/rhysd/actionlint" { print $3; exit }
  $1 == "github.com/rhysd/actionlint" && $2 ~ /^v/ { print $2; exit }' "$script_dir/go.mod")"
if [[ -z "$version" ]]; then
  log "cannot read the github.com/rhysd/actionlint version from $script_dir/go.mod"
  exit 1
fi

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/kuberollouttrigger/tools"
dir="$cache_root/$version"
if [[ -x "$dir/actionlint" ]]; then
  printf '%s\n' "$dir/actionlint"
  exit 0
fi

go_bin="$(command -v go || true)"
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
  go_bin=/usr/local/go/bin/go
fi
if [[ -z "$go_bin" ]]; then
  log "actionlint $version is not built: install Go >= 1.25 (https://go.dev/dl/; Debian: apt-get install golang-go) to build it"
  exit 3
fi

mkdir -p "$cache_root"
# Serialise concurrent runs (test files sharing one cache).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_root/.lock"
  flock 9
  if [[ -x "$dir/actionlint" ]]; then
    printf '%s\n' "$dir/actionlint"
    exit 0
  fi
fi

export GOFLAGS="-buildvcs=false -mod=readonly"
export CGO_ENABLED=0
export GOWORK=off

tmp_dir="$(mktemp -d "$cache_root/.build.XXXXXX")"
trap 'rm -rf "$tmp_dir"' EXIT

log "building actionlint $version with $("$go_bin" version) (first run only; about a minute)"
cd "$script_dir"
"$go_bin" build -trimpath -ldflags "-s -w" -o "$tmp_dir/actionlint" github.com/rhysd/actionlint/cmd/actionlint
mkdir -p "$dir"
# Move within one filesystem, so the binary appears whole or not at all.
mv -f "$tmp_dir/actionlint" "$dir/actionlint"
log "cached in $dir"
printf '%s\n' "$dir/actionlint"
