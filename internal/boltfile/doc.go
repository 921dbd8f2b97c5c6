// Package boltfile holds what ebb's two bbolt files (the embedded store
// and the embedded invocation queue) do alike: checking a file's format
// when it opens, and group commit, which batches the writes waiting for
// the one writer into a single fsynced transaction.
package boltfile
