package replicaset

import (
	"context"

	"github.com/ebbrun/ebb/internal/liveness"
)

// LiveSet is the live node set, from the node leases
// (internal/liveness.Watcher).
type LiveSet interface {
	Set() *liveness.Set
	Subscribe() (<-chan struct{}, func())
}

// FollowLiveness makes the Registry serve only endpoints on nodes whose
// lease holds: when a lease lapses, that node's replicas leave every Set
// at once, without waiting for anyone to delete their endpoint records,
// and come back if the lease does. Call it before Run.
func (g *Registry) FollowLiveness(l LiveSet) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.live = l
}

// followLive re-applies the endpoints on every change of the live set
// until ctx ends or the returned stop is called.
func (g *Registry) followLive(ctx context.Context) (stop func()) {
	g.mu.Lock()
	l := g.live
	g.mu.Unlock()
	if l == nil {
		return func() {}
	}
	changes, unsubscribe := l.Subscribe()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-changes:
				g.mu.Lock()
				if g.all != nil { // not before the first listing
					g.applyLocked()
				}
				g.mu.Unlock()
			}
		}
	}()
	return func() {
		cancel()
		<-done
		unsubscribe()
	}
}

// liveOnly is byRev without the endpoints on nodes whose lease lapsed; it
// is byRev itself when nothing is filtered.
func (g *Registry) liveOnly(byRev map[string][]endpoint) map[string][]endpoint {
	if g.live == nil {
		return byRev
	}
	set := g.live.Set()
	dead := false
	for _, eps := range byRev {
		for _, ep := range eps {
			if !set.Live(ep.node) {
				dead = true
			}
		}
	}
	if !dead {
		return byRev
	}
	out := make(map[string][]endpoint, len(byRev))
	for rev, eps := range byRev {
		kept := make([]endpoint, 0, len(eps))
		for _, ep := range eps {
			if set.Live(ep.node) {
				kept = append(kept, ep)
			}
		}
		if len(kept) > 0 {
			out[rev] = kept
		}
	}
	return out
}
