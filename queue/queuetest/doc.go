// Package queuetest holds every queue.Queue backend to one contract: Run is
// the conformance suite (ordering, idempotency keys, claims that lapse and
// are taken again, ErrClaimLost, concurrent claimers, Depth, List,
// Expire, DeleteFunction and, for backends that persist, reopening), and
// Bench the throughput benchmarks.
//
// It also provides Memory, an in-memory queue.Queue that passes the suite:
// a test double for the unit tests of the packages that use a queue. It is
// not a backend: nothing in it survives the process, and it scans every
// invocation on each call.
package queuetest
