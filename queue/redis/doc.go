// Package redis is the multi-node queue.Queue: workers on every ebbd share
// one Redis (go-redis v9, connected as store/redis is), so an invocation
// enqueued by any router is delivered by whichever worker claims it first,
// and one whose worker died is claimed again by another when its claim
// lapses.
//
// # Key layout
//
// With Prefix P (default "ebb:queue:", beside the store's "ebb:" keys):
//
//   - P + "i:" + id — a hash per invocation: rec (the record's JSON), fn,
//     idem (its idempotency key's name), and the fields a claim changes,
//     kept outside the JSON so a Lua script can change them without
//     decoding it: status, attempts, by, until, updated. Reads lay them
//     over rec.
//   - P + "due" — a sorted set of live (Queued or Running) invocation IDs
//     scored by when each is due: NextAttemptAt (CreatedAt if unset) for a
//     Queued one, just after ClaimedUntil for a Running one. This is the
//     line: Claim takes its head if the score is not after now.
//   - P + "due:" + function — the same line per function, for a Claim
//     limited to some functions (the earliest of their heads) and for Depth
//     (ZCARD).
//   - P + "fn:" + function — the function's IDs scored by CreatedAt: List
//     (newest first) and DeleteFunction.
//   - P + "done" — final IDs scored by CompletedAt: Expire.
//   - P + "idem:" + function + NUL + key — the ID holding an idempotency
//     key, SET with a TTL of Options.Retention and renewed on every
//     Finish, so a key outlives its invocation's last change by the
//     retention even if nobody calls Expire; Expire and DeleteFunction
//     delete it with its invocation.
//
// Scores are microseconds, which a double holds exactly. A due time rounds
// up and now rounds down, so nothing is claimed early (at worst 1µs late),
// and nothing is expired early either.
//
// # Atomicity
//
// Enqueue, Claim, Finish, Update, and each batch of Expire and
// DeleteFunction are one Lua script (EVALSHA, falling back to EVAL), which
// Redis runs alone: the idempotency check and the write cannot be split by
// another Enqueue, two workers cannot both take the head of the line, and
// Finish's check that the claim is still this attempt's (status Running,
// same worker, same attempt count) is atomic with the outcome's write.
// Every script checks before its first write, since Redis does not undo a
// script that fails halfway. Commands are never retried by the client, as
// in store/redis: a retried Claim whose reply was lost would take a second
// invocation.
//
// # Why sorted sets and not Streams with a consumer group
//
// The issue names Redis Streams with consumer groups, and the plan
// XAUTOCLAIM for the visibility timeout. The queue.Queue contract rules
// them out as the line:
//
//   - Time is an argument. Claim(now, visibility) makes an invocation
//     claimable again when ClaimedUntil is before the caller's now, so
//     workers, cron and the tests drive time. XAUTOCLAIM measures idleness
//     on the Redis server's clock since the last delivery, with one
//     min-idle-time per call rather than the visibility each claim asked
//     for.
//   - Retries wait. A retry is Queued with NextAttemptAt seconds or minutes
//     ahead (exponential backoff). A stream delivers an entry as soon as it
//     is added, so retries would need a delay set beside it, moved into the
//     stream when due, and that set is already the line.
//   - Claims can be limited to functions (a worker at a function's async
//     concurrency limit skips it), and must take the oldest due of any of
//     them. A consumer group reads one stream in order; a stream per
//     function would make "any function" a read over every stream, each
//     delivering its own head.
//   - A lost claim must be detected exactly: Finish compares the attempt
//     count the claim wrote, which the pending-entries list does not hold.
//
// A sorted set scored by due time expresses all four directly, and the
// scripts keep it atomic with the records; XAUTOCLAIM's redelivery of a
// dead worker's message is here the lapsed claim's score coming due.
//
// # Durability
//
// An acknowledged call is durable only if Redis is: run it with appendonly
// yes and appendfsync always (as internal/testenv does). A script's writes
// reach the AOF as one MULTI/EXEC block, so a crash keeps all of a step or
// none of it.
//
// # What it must not do
//
// It needs a single Redis primary: the scripts build the keys they touch,
// which Redis Cluster forbids, and a failover to an asynchronous replica
// can lose acknowledged invocations. It keeps no state of its own beyond
// connections, returns errors and never logs.
package redis
