// Package e2e holds ebb's end-to-end tests: they build the real ebbd, ebb
// and examples/hello binaries, start ebbd as a user would (with a private
// containerd when none runs), and drive it with the CLI, curl-like HTTP
// clients and load generators. They need root and containerd; see
// internal/testenv for how CI turns their skips into failures.
//
// It holds tests only; nothing imports it.
package e2e
