// Package store is ebb's state store: a small versioned key-value interface
// (Store) with compare-and-swap transactions and ordered, resumable watches,
// plus the key layout and record types that the components share through it.
//
// Cache is how components read a prefix: a process opens one Cache per
// prefix, runs it, and hands it to every component that reads the prefix,
// so each prefix costs the store one List and one Watch per process. A
// Cache decodes each record once, hands its followers typed changes, and
// gives readers an immutable snapshot without a lock.
//
// Two implementations live in subpackages: store/embedded (bbolt, the
// default) and store/redis (multi-node). store/storetest is the conformance
// suite both must pass. Like every library here, store returns errors and
// never logs.
package store
