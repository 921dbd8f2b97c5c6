// Package backup is ebb's backup file: what a backup holds, its format,
// and the pure steps of taking one from a store and loading one into an
// empty store.
//
// A backup is the cluster's desired state at one store revision (one
// store.Store.List, which both stores answer atomically): namespaces,
// functions, revisions, traffic, rollouts, cron triggers, jobs, secrets
// (still sealed: the records are copied, never opened), tokens (hashes
// only) and image references, and optionally the images themselves as
// OCI archives. Runtime state (endpoints, replicas, ports, assignments,
// scales, nodes, revision status, VIPs, credentials of processes, ...)
// is not in it: the cluster rebuilds it, and functions start from zero on
// their first request. Prefixes (classify.go) is the one list that says
// which store prefix is which; a prefix it does not name is left out and
// counted, and a test fails for any prefix of store/records.go it misses.
//
// The file (format.go) starts with a magic and a format version, holds a
// self-describing header (revision, creation time, the secrets' key ids)
// and ends with a SHA-256 of every byte before it. Read verifies all of it
// before returning anything, so a corrupt, truncated, foreign or newer
// file is refused before the cluster is touched.
//
// The package does no HTTP and reads no flags: the control plane serves it
// (controlplane/backup.go), ebbd schedules it (Scheduler) and the CLI
// fetches and sends it.
package backup
