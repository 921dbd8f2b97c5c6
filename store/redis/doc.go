// Package redis is the multi-node store.Store: every ebbd shares one Redis
// (go-redis v9), and watches work across processes.
//
// # Key layout
//
// With Prefix P (default "ebb:"), so several clusters can share a database:
//
//   - P + "values"   — a hash: key → value.
//   - P + "versions" — a hash: key → version, the revision that last wrote it.
//   - P + "keys"     — a sorted set of every key, all at score 0, so
//     ZRANGEBYLEX lists a prefix in byte order.
//   - P + "rev"      — the newest revision.
//   - P + "events"   — the event stream. The entry for the i-th event
//     (from 0) of revision R has the ID "R-i" and the fields t (p or d),
//     k (key), v (value, puts only) and n (events in revision R).
//   - P + "shard:" + "assignments/{node}/" (and "jobpods/{node}/") — a node
//     stream: a copy of the events of that node's keys, with the same IDs
//     and b, the ID of the node stream's previous entry, kept in the hash
//     P + "shardlast" (shard.go). A watch of a prefix within one node's
//     keys reads it instead of the cluster stream, so a node agent reads
//     its own events, not every event of the cluster.
//
// Leases (lease.go) live beside these keys but outside the store: node
// liveness leases in one sorted set (P + "nodeleases", with a generation
// so a poll of the live set is one integer when nothing changed) and
// named leases such as the control plane's leadership (P + "lease:" +
// name, SET PX). They carry deadlines on Redis's clock, not versions, and
// never reach the event stream.
//
// Objects live in two shared hashes rather than a hash per key so that List
// costs one HMGET per thousand keys instead of a command per key: Redis
// serves nobody else while a script runs, so a long List delays every
// other client.
//
// # Transactions
//
// Txn is one Lua script (EVALSHA, falling back to EVAL): it checks every
// op's version in the versions hash, and only if all hold does it XADD one
// entry per event (MAXLEN ~ History), write both hashes and the index, and
// advance the revision. The first XADD is its first write, because Redis does
// not undo a script that fails halfway. Redis runs a script alone, so transactions are
// serializable; a script that changes nothing takes no revision. List is a
// script too, reading the range and the revision in one atomic step, and
// so is Get, reading value and version together.
// Commands are never retried by the client: a retry after a lost reply
// could apply a transaction twice.
//
// # Watches and compaction
//
// Each Watch owns one connection and reads the stream with XREAD BLOCK from
// the last entry it delivered. It closes that connection to stop at once on
// ctx cancel or Close. When the connection fails it reconnects with backoff
// and reads on from the same entry, so a Redis restart causes neither gaps
// nor repeats. Every entry must be the exact successor of the one before
// (n tells when a revision ends); anything else means MAXLEN trimmed the
// stream past the watch, which then ends with store.ErrCompacted, as it does
// when the revision counter has gone backwards (Redis lost its data).
//
// # Durability
//
// An acknowledged Txn is durable only if Redis is: run it with
// appendonly yes and appendfsync always (as internal/testenv does). A
// script's writes reach the AOF as one MULTI/EXEC block, so a crash keeps
// all of a transaction or none of it.
//
// # What it must not do
//
// It needs a single Redis primary. Redis Cluster is not supported: a
// store's keys span hash slots, and every script touches several of them. A failover to an asynchronous replica can lose acknowledged
// writes. Redis must not be flushed under a running cluster (a watch notices
// only if the revision went backwards). The package keeps no state of its
// own beyond connections, returns errors and never logs.
package redis
