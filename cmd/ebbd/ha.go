package main

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/autoscaler"
	"github.com/ebbrun/ebb/controlplane"
	"github.com/ebbrun/ebb/controlplane/nodeloss"
	"github.com/ebbrun/ebb/internal/leader"
	"github.com/ebbrun/ebb/internal/liveness"
	"github.com/ebbrun/ebb/nodeagent"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/redis"
)

// leaseBackend holds the node leases and the leader lease: Redis, beside
// the store's keys, or this process's memory with the embedded store.
type leaseBackend interface {
	liveness.Source
	nodeagent.NodeLease
	leader.Leases
}

// haState is what ebbd keeps for node loss and leadership.
type haState struct {
	leases leaseBackend
	live   *liveness.Watcher
	// term is the store of the leader-only loops: it writes only while
	// this process leads, fenced at its leadership record. With the
	// embedded store it is nil and they write d.store.
	term *leader.TermStore
}

func (d *daemon) leaseBackend() leaseBackend {
	if d.ha.leases == nil {
		if rs, ok := d.store.(*redis.Store); ok {
			d.ha.leases = rs
		} else {
			d.ha.leases = liveness.NewMemory(nil)
		}
	}
	return d.ha.leases
}

// elects says whether this process's control plane must win an election
// to lead: with Redis, several may run; with the embedded store, the one
// process is the cluster and always leads.
func (d *daemon) elects() bool {
	_, ok := d.store.(*redis.Store)
	return ok
}

// liveness returns the process's watcher of the live node set, started
// on first use; the router, activator, autoscaler, clean-up and API
// share it.
func (d *daemon) liveness(ctx context.Context, g *errgroup.Group) (*liveness.Watcher, error) {
	if d.ha.live != nil {
		return d.ha.live, nil
	}
	w, err := liveness.NewWatcher(d.leaseBackend(), liveness.Config{Grace: d.cfg.NodeLeaseTTL}, d.log.With("component", "liveness"))
	if err != nil {
		return nil, err
	}
	g.Go(func() error { return w.Run(ctx) })
	d.ha.live = w
	return w, nil
}

// leaderStore is the store the leader-only loops write through.
func (d *daemon) leaderStore() store.Store {
	if !d.elects() {
		return d.store
	}
	if d.ha.term == nil {
		d.ha.term = leader.NewTermStore(d.store)
	}
	return d.ha.term
}

// leaderLoop is one loop that only the leading control plane runs.
type leaderLoop func(ctx context.Context) error

// runLeaderLoops runs the leader-only loops: at once with the embedded
// store; otherwise in every term this process leads, with the leader's
// store fenced for the term and the autoscaler deciding, all stopped when
// the term ends.
func (d *daemon) runLeaderLoops(ctx context.Context, g *errgroup.Group, runner *autoscaler.Runner, loops ...leaderLoop) error {
	if !d.elects() {
		for _, loop := range loops {
			g.Go(func() error { return loop(ctx) })
		}
		return nil
	}
	el, err := leader.New(leader.Config{
		// The node name, so that a control plane restarted within the
		// lease's TTL leads again at once instead of waiting out its own
		// predecessor's lease; node names are unique among control planes.
		Holder: d.cfg.NodeName,
		Addr:   d.cfg.APIAddr,
		TTL:    d.cfg.LeaderLeaseTTL,
	}, d.leaseBackend(), d.store, d.log.With("component", "leader"))
	if err != nil {
		return err
	}
	term := d.leaderStore().(*leader.TermStore)
	g.Go(func() error {
		return el.Run(ctx, func(lctx context.Context, fenced store.Store) error {
			term.Begin(fenced)
			defer term.End()
			lg, lgctx := errgroup.WithContext(lctx)
			lg.Go(func() error { return runner.Lead(lgctx, fenced) })
			for _, loop := range loops {
				lg.Go(func() error { return loop(lgctx) })
			}
			return lg.Wait()
		})
	})
	return nil
}

// cleanupLoop is the leader's clean-up after dead nodes.
func (d *daemon) cleanupLoop(live *liveness.Watcher) leaderLoop {
	eps := d.caches.Endpoints()
	list := func(context.Context) ([]store.Versioned[store.Endpoint], error) {
		var out []store.Versioned[store.Endpoint]
		for v := range eps.Snapshot().All() {
			out = append(out, v)
		}
		return out, nil
	}
	return func(ctx context.Context) error {
		select {
		case <-eps.Ready():
		case <-ctx.Done():
			return nil
		}
		return nodeloss.Run(ctx, d.leaderStore(), live, list, 0, d.log.With("component", "nodeloss"))
	}
}

// revisionGCLoop is the leader's revision garbage collection. Its deletes
// go through the API's own write path, which re-checks each revision in a
// compare-and-swap transaction, so it needs no fencing to stay safe.
func (d *daemon) revisionGCLoop(api *controlplane.Server) leaderLoop {
	return func(ctx context.Context) error {
		return api.RunRevisionGC(ctx, controlplane.RevisionGCConfig{
			History: d.cfg.RevisionHistory, MinAge: d.cfg.RevisionMinAge, Every: d.cfg.RevisionGCInterval,
		})
	}
}
