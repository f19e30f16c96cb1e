#!/usr/bin/env bash
# Release binaries: `deno compile` with the "compiled" permission set and the
# V8 flags from deno.json (neither is repeated here) for each Linux target, and their
# SHA-256 checksums.
#
# Usage: compile.sh VERSION OUTDIR      builds OUTDIR/kuberollouttrigger-VERSION-<target>
#        compile.sh --print VERSION OUTDIR   prints the command lines instead
set -euo pipefail
cd "$(dirname "$0")/../.."

print=""
if [[ "${1:-}" == "--print" ]]; then print=1; shift; fi
version="${1:?usage: compile.sh [--print] VERSION OUTDIR}"
out_dir="${2:?usage: compile.sh [--print] VERSION OUTDIR}"
targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu)
# The V8 flags of deno.json's "compile" task (the one the Dockerfile runs), so a
# release binary and the image's binary run with the same heap settings.
v8_flags=$(sed -nE 's/^ *"compile": "[^"]*(--v8-flags=[^ "]+).*/\1/p' deno.json)
[[ -n "$v8_flags" ]] || { echo "compile.sh: deno.json's compile task has no --v8-flags" >&2; exit 1; }

for target in "${targets[@]}"; do
  cmd=(deno compile -P=compiled --frozen "$v8_flags" --target "$target"
    --output "$out_dir/kuberollouttrigger-$version-$target" main.ts)
  if [[ -n "$print" ]]; then
    printf '%s\n' "${cmd[*]}"
  else
    mkdir -p "$out_dir"
    "${cmd[@]}"
  fi
done
if [[ -z "$print" ]]; then
  (cd "$out_dir" && sha256sum "kuberollouttrigger-$version-"* >SHA256SUMS)
fi
