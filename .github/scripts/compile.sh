#!/usr/bin/env bash
# Release binaries: `deno compile` with the "compiled" permission set from
# deno.json (the flags are not repeated here) for each Linux target, and their
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

for target in "${targets[@]}"; do
  cmd=(deno compile -P=compiled --frozen --target "$target"
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
