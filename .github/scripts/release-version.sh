#!/usr/bin/env bash
# The release's version, from the one place it is written: deno.json's
# "version". A tag vX.Y.Z releases exactly that version; the image tag, the
# chart's version and appVersion, the tag in k8s/'s manifests, and for the
# Action the same tag names (action.yml's user agent, the `uses:` lines of
# README.md and docs/) must all be it, or the release stops here before
# anything is built or pushed. tests/release/version_test.ts checks every
# other mention (images, binaries) before a tag is made.
#
# Usage: release-version.sh TAG   (e.g. v0.2.0; in the workflow: github.ref_name)
# Prints version=X.Y.Z (GITHUB_OUTPUT lines) on stdout; errors on stderr, exit 1.
set -euo pipefail
cd "$(dirname "$0")/../.."

tag="${1:-}"
version="$(jq -r '.version // empty' deno.json)"
problems=()
if [[ ! "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  problems+=("deno.json's version \"$version\" is not X.Y.Z")
fi
if [[ "$tag" != "v$version" ]]; then
  problems+=("tag \"$tag\" is not v$version (deno.json's version): tag the commit that sets it")
fi
chart=k8s/helm/kuberollouttrigger/Chart.yaml
chart_version="$(sed -nE 's/^version: *"?([^"]*)"?$/\1/p' "$chart")"
app_version="$(sed -nE 's/^appVersion: *"?([^"]*)"?$/\1/p' "$chart")"
[[ "$chart_version" == "$version" ]] || problems+=("$chart version is \"$chart_version\", not $version")
[[ "$app_version" == "$version" ]] || problems+=("$chart appVersion is \"$app_version\", not $version")
# Every image reference to our image in k8s/ carries the release's tag.
while IFS= read -r line; do
  problems+=("${line%%:*} names $(sed -E 's/.*(ghcr\.io\/kuberollouttrigger\/kuberollouttrigger[^" ]*).*/\1/' <<<"${line#*:}"), not :$version")
done < <(grep -rnE 'ghcr\.io/kuberollouttrigger/kuberollouttrigger:' k8s/base k8s/overlays \
  | grep -vE "kuberollouttrigger:$version([\"@ ]|$)" || true)
# The Action is released by the same tag: what it calls itself, and what users copy.
agent="$(sed -nE 's/.*USER_AGENT="kuberollouttrigger-action\/([^"]*)".*/\1/p' action.yml)"
[[ "$agent" == "$version" ]] || problems+=("action.yml's user agent names version \"$agent\", not $version")
semver='[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?'
while IFS= read -r line; do
  file="${line%%:*}" rest="${line#*:}"
  problems+=("$file:${rest%%:*} names ${rest#*:}, not v$version")
done < <(grep -rnoE "kuberollouttrigger/kuberollouttrigger@(v$semver|[0-9a-f]{40} # v$semver)" README.md docs \
  | grep -vE "(@| # )v${version//./\\.}\$" || true)

if ((${#problems[@]} > 0)); then
  printf 'release-version.sh: %s\n' "${problems[@]}" >&2
  exit 1
fi
printf 'version=%s\n' "$version"
