// Package replicaset tracks the ready replicas of each revision and how many
// requests each one is serving, so that the router's direct path and the
// activator's release path share one capacity tracker per replica and a
// replica's hard concurrency limit holds across both.
//
// A Set is one revision's replicas. TryAcquire claims a slot with
// power-of-two-choices least-in-flight balancing, lock-free; it refuses while
// requests are queued, so newcomers never overtake them. Waiters queue in
// FIFO order and every Release or new replica hands freed capacity straight
// to the head of the queue. A Registry keeps the Sets current from the
// store's endpoints.
//
// It must not make routing, queueing-policy or HTTP decisions: how long to
// wait, how many may wait and what to answer belong to its callers.
package replicaset
