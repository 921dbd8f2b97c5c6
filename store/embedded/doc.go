// Package embedded is the default store.Store of ebbd: one bbolt file, no
// server, durable across restarts, with watches fanned out in process.
//
// # Layout
//
// The file has three buckets:
//
//   - kv: key → version (8 bytes, big endian) ‖ value. The version is the
//     revision of the transaction that last wrote the key.
//   - log: revision (8 bytes, big endian) → the events of that revision, in
//     op order. This is the event log watches read.
//   - meta: the newest revision, the newest revision dropped from the log
//     ("compacted"), the number of events in the log, and a format version.
//
// # Transactions and durability
//
// One goroutine, the committer, owns all writes. Txn hands it a request and
// waits. The committer takes every request already waiting and applies them
// in one bbolt write transaction, in order, each checking its versions
// against the state the previous ones left and, if it writes anything,
// taking the next revision and appending its events to the log. A request
// whose check fails writes nothing; the others are unaffected. The bbolt
// commit fsyncs (NoSync stays false) before any Txn in the group returns, so
// an acknowledged Txn survives a crash, and concurrent writers share one
// fsync (group commit). A transaction that changes nothing (only checks, or
// deletes of missing keys) takes no revision and returns the current one.
//
// # Watches and compaction
//
// Each Watch is a goroutine that reads the log from its own position in
// short read transactions, a bounded batch at a time, and sends the events
// matching its prefix on a small buffered channel. Commits only wake
// watchers (a channel closed per commit), so a watcher that does not keep up
// never slows writers and never buffers more than one batch. Because
// watchers read the durable log rather than an in-memory queue, order and
// resumption from any retained revision are exact.
//
// After each commit the oldest revisions are dropped from the log while at
// least Options.History events remain. A watch asking for, or falling
// behind to, a revision no longer in the log ends with store.ErrCompacted;
// the caller lists again and watches from the listing's revision, as
// store.Cache does.
//
// # What it must not do
//
// It serves one process: bbolt locks the file, and watches are in-process.
// Several nodes share state through store/redis instead. Like every
// library here it returns errors and never logs.
package embedded
