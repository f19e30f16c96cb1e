#!/usr/bin/env bash
# Packages the chart for a release and, with a registry, pushes it as an OCI
# artifact. The chart's version and appVersion are deno.json's version
# (release-version.sh checked that before this runs); the package is exactly
# the chart directory of the tagged commit, nothing rewritten.
#
# Usage: package-chart.sh VERSION OUT_DIR [oci://REGISTRY/PATH]
# Prints chart=<package file> and, after a push, digest=sha256:… and
# ref=REGISTRY/PATH/kuberollouttrigger (GITHUB_OUTPUT lines) on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."

version="${1:?usage: package-chart.sh VERSION OUT_DIR [oci://REGISTRY/PATH]}"
out="${2:?usage: package-chart.sh VERSION OUT_DIR [oci://REGISTRY/PATH]}"
registry="${3:-}"
chart=k8s/helm/kuberollouttrigger

mkdir -p "$out"
helm lint --strict "$chart" >&2
helm package "$chart" --destination "$out" >&2
package="$out/kuberollouttrigger-$version.tgz"
if [[ ! -f "$package" ]]; then
  echo "package-chart.sh: helm packaged no $package: is Chart.yaml's version $version?" >&2
  exit 1
fi
printf 'chart=%s\n' "$package"
[[ -n "$registry" ]] || exit 0

# helm push prints "Digest: sha256:…"; the signature goes on that digest, never on a tag.
pushed="$(helm push "$package" "$registry" 2>&1 | tee /dev/stderr)"
digest="$(sed -nE 's/^Digest: (sha256:[0-9a-f]{64})$/\1/p' <<<"$pushed")"
if [[ -z "$digest" ]]; then
  echo "package-chart.sh: helm push reported no digest" >&2
  exit 1
fi
printf 'digest=%s\nref=%s/kuberollouttrigger\n' "$digest" "${registry#oci://}"
