package nodeagent

import (
	"context"
	"reflect"
	"time"

	"github.com/ebbrun/ebb/store"
)

// NodeLease is the node's liveness lease: store/redis's Store or
// internal/liveness.Memory. A node is alive exactly while its lease
// holds; the node record says what it has, not whether it lives.
type NodeLease interface {
	RenewNodeLease(ctx context.Context, node string, ttl time.Duration) error
}

// leaseLoop renews the node's lease every LeaseRenewEvery until ctx ends.
// It does not give the lease up
// on the way out: a restart within the TTL keeps the node in the routers,
// and one that takes longer is a node loss like any other.
func (a *Agent) leaseLoop(ctx context.Context) error {
	if a.deps.Lease == nil {
		return nil
	}
	t := time.NewTicker(a.cfg.LeaseRenewEvery)
	defer t.Stop()
	failing := false
	for {
		rctx, cancel := context.WithTimeout(ctx, a.cfg.LeaseRenewEvery)
		err := a.deps.Lease.RenewNodeLease(rctx, a.cfg.Node, a.cfg.LeaseTTL)
		cancel()
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			a.log.Warn("cannot renew the node lease; the node serves on, but the cluster will count it dead", "err", err)
			failing = true
		case err == nil && failing:
			a.log.Info("renewed the node lease again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// writeNodeRecord writes the node record when it differs from the one
// last written, heartbeat aside: the lease says the node lives, so a
// thousand nodes do not write a thousand records every few seconds into
// the event stream every watcher reads. The heartbeat is when it was
// written.
func (a *Agent) writeNodeRecord(ctx context.Context, n store.Node) {
	if a.written != nil && reflect.DeepEqual(*a.written, n) {
		return
	}
	rec := n
	rec.Heartbeat = time.Now()
	if err := a.txn(ctx, "write node record", store.PutJSON(store.NodeKey(a.cfg.Node), rec, store.AnyVersion)); err != nil {
		return
	}
	a.written = &n
}

// keepLeftover decides, for a container an earlier agent left with a
// replica record, whether it is adopted: only if its revision still exists
// and this node is still assigned the revision. A node that was away (its
// lease lapsed, its replicas placed elsewhere) stops what nobody wants any
// more, and never serves a revision deleted while it was away.
func keepLeftover(revisionExists, assigned bool) (keep bool, why string) {
	switch {
	case !revisionExists:
		return false, "its revision was deleted"
	case !assigned:
		return false, "the node is no longer assigned its revision"
	}
	return true, ""
}
