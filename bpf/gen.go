package bpf

// Regenerate with `make generate` (or `go generate ./bpf/`). The flags here are
// the single source of truth: TestGeneratedObjectsMatchSources re-runs this
// line into a temporary directory and compares the output with the committed
// files.
//
//go:generate go tool bpf2go -target bpfel -type stat -type wake_event -type sock_key -type addr4 -type fallback_conn -type port_load -type fallback_slot ebb ebb.c -- -I./headers -Wall -Werror
