#!/usr/bin/env bash
# Provides the actionlint binary the tests lint the workflows and action.yml
# with, built from the module pinned in go.mod next to this script (see
# go_tool.sh for the cache and the build).
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOL=actionlint
MODULE=github.com/rhysd/actionlint
MODULE_DIR="$script_dir"
CMD_PKG=github.com/rhysd/actionlint/cmd/actionlint
CACHE_NAME() { printf '%s' "$1"; }
# shellcheck source=go_tool.sh
source "$script_dir/go_tool.sh"
