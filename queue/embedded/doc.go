// Package embedded is the one-machine queue.Queue: a bbolt file of its own
// (ebbd opens <data-dir>/queue.db beside the store's file), so queue traffic
// neither grows the store's event log nor wakes its watchers.
//
// # Layout
//
// The bucket inv maps an invocation ID to its JSON record, the only copy of
// the data. Four indexes, each derived from the record alone (so rewriting
// a record removes exactly the entries it had), make every method a range
// scan:
//
//   - due: due time + ID → function, for live (Queued or Running)
//     invocations. A Queued one is due at NextAttemptAt (CreatedAt if
//     unset); a Running one one nanosecond after ClaimedUntil, which is how
//     a lapsed claim rejoins the line without a sweeper. Claim takes the
//     first key if it is not after now: the oldest due first, ties by ID.
//   - fndue: function + NUL + due time + ID: the same line per function,
//     for Claim limited to some functions (the head of each) and Depth (a
//     count of the prefix).
//   - fn: function + NUL + created time + ID: List walks it backwards,
//     DeleteFunction forwards.
//   - done: completed time + ID, for final invocations: Expire walks it
//     from the start.
//
// idem maps function + NUL + idempotency key to the ID holding it; Expire
// and DeleteFunction delete the key with its invocation.
// Times are nanoseconds, big-endian with the sign bit flipped, so byte
// order is time order.
//
// # Transactions and durability
//
// Every write is one bbolt read-write transaction holding its checks and
// its writes (a claim's pick and its update; Finish's check of the claim
// and the outcome), so bbolt's single writer makes them atomic, and none
// returns before its commit is fsynced. As in store/embedded, one committer
// goroutine commits concurrent writes in one transaction, in order, so they
// share an fsync; a lone write commits at once, waiting for no company.
// Claim first looks in a read transaction, so idle workers polling an empty
// line cost no commit.
//
// # What it must not do
//
// Only one process may open the file (bbolt's lock): workers on other
// machines need queue/redis. It keeps no state outside the file, returns
// errors and never logs.
package embedded
