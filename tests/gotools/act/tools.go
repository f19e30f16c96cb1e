//go:build tools

// Package tools only records the main package that ensure_act.sh builds, so
// that `go mod tidy` keeps it in go.mod and go.sum.
package tools

import (
	_ "github.com/nektos/act"
)
