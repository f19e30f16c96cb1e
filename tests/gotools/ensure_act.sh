#!/usr/bin/env bash
# Provides the nektos/act binary the tests run action.yml under (a second
# runner implementation, with its host executor: no Docker), built from the
# module pinned in act/go.mod next to this script (see go_tool.sh for the
# cache and the build).
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOL=act
MODULE=github.com/nektos/act
MODULE_DIR="$script_dir/act"
CMD_PKG=github.com/nektos/act
CACHE_NAME() { printf 'act-%s' "$1"; }
# As act's Makefile does: the version `act --version` prints.
tool_ldflags() {
  printf '%s' "-X main.version=$version"
}
# shellcheck source=go_tool.sh
source "$script_dir/go_tool.sh"
