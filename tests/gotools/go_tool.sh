# shellcheck shell=bash
# Sourced by ensure_<tool>.sh: provides one Go-built test tool and prints, on
# its last stdout line, the absolute path of its executable; progress goes to
# stderr. The caller sets:
#   TOOL        the binary's name (actionlint, helm)
#   MODULE      the Go module that pins it in $MODULE_DIR/go.mod (with go.sum)
#   MODULE_DIR  the folder of that go.mod
#   CMD_PKG     the package to build, e.g. $MODULE/cmd/$TOOL
#   CACHE_NAME  the cache folder, given the version (e.g. "helm-$version")
# and may define tool_ldflags (run in $MODULE_DIR with $go_bin and $version
# set) to print extra -ldflags.
#   1. the cache ${XDG_CACHE_HOME:-$HOME/.cache}/kuberollouttrigger/tools/<CACHE_NAME>/<TOOL>,
#      keyed by the version pinned in go.mod;
#   2. else builds it from the pinned module (checksums verified by the Go
#      toolchain), then caches it.
# Exit 3: not cached and no Go toolchain to build it.
set -euo pipefail

log() { printf 'ensure_%s.sh: %s\n' "$TOOL" "$*" >&2; }

# The version comes from go.mod, so the cache key cannot drift from what is built.
version="$(awk -v m="$MODULE" '$1 == "require" && $2 == m { print $3; exit }
  $1 == m && $2 ~ /^v/ { print $2; exit }' "$MODULE_DIR/go.mod")"
if [[ -z "$version" ]]; then
  log "cannot read the $MODULE version from $MODULE_DIR/go.mod"
  exit 1
fi

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/kuberollouttrigger/tools"
dir="$cache_root/$(CACHE_NAME "$version")"
if [[ -x "$dir/$TOOL" ]]; then
  printf '%s\n' "$dir/$TOOL"
  exit 0
fi

go_bin="$(command -v go || true)"
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
  go_bin=/usr/local/go/bin/go
fi
if [[ -z "$go_bin" ]]; then
  log "$TOOL $version is not built: install Go >= 1.25 (https://go.dev/dl/; Debian: apt-get install golang-go) to build it"
  exit 3
fi

mkdir -p "$cache_root"
# Serialise concurrent runs of one tool (test files sharing one cache); each
# tool has its own lock, so one never waits on another's build.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_root/.lock-$TOOL"
  flock 9
  if [[ -x "$dir/$TOOL" ]]; then
    printf '%s\n' "$dir/$TOOL"
    exit 0
  fi
fi

export GOFLAGS="-buildvcs=false -mod=readonly"
export CGO_ENABLED=0
export GOWORK=off

tmp_dir="$(mktemp -d "$cache_root/.build.XXXXXX")"
trap 'rm -rf "$tmp_dir"' EXIT

log "building $TOOL $version with $("$go_bin" version) (first run only; a minute or a few)"
cd "$MODULE_DIR"
ldflags="-s -w"
if declare -F tool_ldflags >/dev/null; then ldflags="$ldflags $(tool_ldflags)"; fi
"$go_bin" build -trimpath -ldflags "$ldflags" -o "$tmp_dir/$TOOL" "$CMD_PKG"
mkdir -p "$dir"
# Move within one filesystem, so the binary appears whole or not at all.
mv -f "$tmp_dir/$TOOL" "$dir/$TOOL"
log "cached in $dir"
printf '%s\n' "$dir/$TOOL"
