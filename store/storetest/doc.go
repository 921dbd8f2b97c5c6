// Package storetest is the conformance suite every store.Store must pass,
// plus the crash-test harness and benchmark bodies the implementations
// share. store/embedded and store/redis run it against real bbolt files and
// a real redis-server.
//
// It is imported only by tests. It asserts the documented contract of
// store.Store (versions, atomicity, ordered resumable watches, compaction,
// close, durability) and nothing about how an implementation meets it.
package storetest
