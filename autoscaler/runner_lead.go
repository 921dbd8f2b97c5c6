package autoscaler

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/internal/liveness"
	"github.com/ebbrun/ebb/store"
)

// Liveness is the live node set, from the node leases
// (internal/liveness.Watcher).
type Liveness interface {
	Set() *liveness.Set
	Subscribe() (<-chan struct{}, func())
}

// leadState is the runner's part in leadership and liveness.
type leadState struct {
	// store is what a standby runner writes through while it leads: the
	// store fenced at its leadership record. Nil while it does not lead.
	store atomic.Pointer[store.Store]
	// wake makes the tick loop tick at once: on taking the lead and when
	// a node's lease lapses.
	wake chan struct{}

	// nodes are r.nodes as placement sees them under the live set set, as
	// of nodesGen (bumped by onNodes) and at.
	nodes    []store.Node
	set      *liveness.Set
	nodesGen int
	builtGen int
	at       time.Time
}

// writer is the store decisions are written to; nil for a standby runner
// that does not lead.
func (r *Runner) writer() store.Store {
	if !r.deps.Standby {
		return r.deps.Store
	}
	if p := r.lead.store.Load(); p != nil {
		return *p
	}
	return nil
}

// Lead makes a standby runner decide and write through s until ctx ends;
// s is the store fenced at this control plane's leadership record. It
// ticks at once rather than a tick later. When it returns, no decision of
// this runner is being written.
func (r *Runner) Lead(ctx context.Context, s store.Store) error {
	r.lead.store.Store(&s)
	r.wakeTick()
	<-ctx.Done()
	r.lead.store.Store(nil)
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	return nil
}

func (r *Runner) wakeTick() {
	select {
	case r.lead.wake <- struct{}{}:
	default:
	}
}

// followLiveness ticks at once whenever the live set changes, so that a
// dead node's replicas are placed elsewhere within a poll of its lease
// lapsing, not a tick later.
func (r *Runner) followLiveness(ctx context.Context, g *errgroup.Group) {
	if r.deps.Liveness == nil {
		return
	}
	changes, stop := r.deps.Liveness.Subscribe()
	g.Go(func() error {
		defer stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-changes:
				r.wakeTick()
			}
		}
	})
}

// placementNodesLocked is r.nodes as placement must see them: with a live
// set, a node is up exactly while its lease holds, whatever its record's
// age (records are written when they change, not as heartbeats). The
// heartbeat placement reads is stamped from the lease: now for a live
// node, never for a dead one. The view is rebuilt when the set or the
// records change, and every second, so the stamp never ages past
// NodeDownAfter.
func (r *Runner) placementNodesLocked(now time.Time) []store.Node {
	if r.deps.Liveness == nil {
		return r.nodes
	}
	set := r.deps.Liveness.Set()
	l := &r.lead
	if l.nodes != nil && l.set == set && l.builtGen == l.nodesGen && now.Sub(l.at) < time.Second {
		return l.nodes
	}
	nodes := make([]store.Node, len(r.nodes))
	for i, n := range r.nodes {
		n.Heartbeat, n.HeartbeatInterval.Duration = time.Time{}, 0
		if set.Live(n.Name) {
			n.Heartbeat = now
		}
		nodes[i] = n
	}
	l.nodes, l.set, l.builtGen, l.at = nodes, set, l.nodesGen, now
	return nodes
}
