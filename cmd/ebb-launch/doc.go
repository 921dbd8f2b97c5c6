// Command ebb-launch starts a replica's program with its secret environment
// variables, which must not travel in the OCI spec: containerd persists
// that spec in its metadata database and in the bundle's config.json,
// both of which may be on disk.
//
// The node agent bind-mounts this binary (static, so that it runs in any
// image) and the revision's secret env file, which lives on a tmpfs,
// read-only into the container, and makes the container's command
//
//	ebb-launch ENV_FILE PROGRAM [ARG...]
//
// It reads ENV_FILE (KEY=VALUE entries, each ended by a NUL byte), adds the
// variables to its own environment (the spec's), looks PROGRAM up in the
// resulting PATH as runc would, and execs it: the program is the
// container's init from then on, with the pid, signals and exit status
// runc would have given it. ebb-launch never prints a value, even when the
// file is malformed.
package main
