// Package store is ebb's state store: a small versioned key-value interface
// (Store) with compare-and-swap transactions and ordered, resumable watches,
// plus the key layout and record types that the components share through it.
//
// Two implementations live in subpackages: store/embedded (bbolt, the
// default) and store/redis (multi-node). store/storetest is the conformance
// suite both must pass. Like every library here, store returns errors and
// never logs.
package store
