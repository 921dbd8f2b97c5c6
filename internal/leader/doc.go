// Package leader elects one leader among the control planes and fences
// the loose ones.
//
// Leadership is a lease (AcquireLease: in Redis a key with SET PX, in
// memory for the single-process cluster). Whoever takes it writes the
// leadership record, leader/{name}, in the store, and runs the leader-only
// loops (autoscaler decisions and placement, rollouts, revision garbage
// collection, cron, jobs, the dead-node clean-up) over store.Fenced at the
// version it wrote: once a later leader rewrites the record, every write
// of the earlier one is refused by the store's compare-and-swap, even if
// it has not yet noticed that it lost the lease. Losing the lease, or not
// renewing it before its TTL runs out, cancels the loops' context.
//
// It must not decide anything else: which loops are leader-only is the
// caller's choice.
package leader
