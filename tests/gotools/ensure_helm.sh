#!/usr/bin/env bash
# Provides the helm binary the tests render and lint the chart with
# (k8s/helm/kuberollouttrigger), built from the module pinned in helm/go.mod
# next to this script (see go_tool.sh for the cache and the build).
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOL=helm
MODULE=helm.sh/helm/v3
MODULE_DIR="$script_dir/helm"
CMD_PKG=helm.sh/helm/v3/cmd/helm
CACHE_NAME() { printf 'helm-%s' "$1"; }
# As Helm's Makefile does: its version, and the Kubernetes version it assumes
# without a cluster (the one after its client-go's, e.g. v0.35 -> 1.35), which
# `helm template` and `helm lint` check the chart's kubeVersion against.
tool_ldflags() {
  local client_go minor flags
  client_go="$("$go_bin" list -f '{{.Version}}' -m k8s.io/client-go)"
  minor="$(printf '%s' "$client_go" | cut -d. -f2)"
  flags="-X helm.sh/helm/v3/internal/version.version=$version"
  for pkg in pkg/lint/rules pkg/chartutil; do
    flags="$flags -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$minor"
  done
  printf '%s' "$flags"
}
# shellcheck source=go_tool.sh
source "$script_dir/go_tool.sh"
