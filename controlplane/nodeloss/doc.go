// Package nodeloss is the leader's one write path for what a dead node
// leaves in the store. A node is dead when its lease has lapsed
// (internal/liveness). Routers and activators stop using its endpoints on
// their own the moment they see the lapse, and the autoscaler places its
// replicas elsewhere; this package then deletes the dead node's endpoint
// records, so that every reader of the store (the autoscaler's count of
// ready replicas, status, a router that does not follow leases) agrees.
//
// Plan is pure; Run is the thin shell that applies it, under the leader,
// through the fenced store. Each delete is at the version read, so a
// record the node rewrote on its return is never removed.
//
// It must not touch assignments (the autoscaler's placement owns them and
// moves them off dead nodes) or replica records (the node's own; a node
// that comes back reads them to stop what is no longer wanted).
package nodeloss
