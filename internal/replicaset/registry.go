package replicaset

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/internal/tracing"
	"github.com/ebbrun/ebb/store"
)

// endpoint is the part of a store.Endpoint a Set needs.
type endpoint struct {
	id, addr string
	limit    int
	node     string
	start    tracing.StartPhases
}

// startOf converts an endpoint's start phases to Unix nanoseconds, which
// compare as values.
func startOf(p *store.StartPhases) tracing.StartPhases {
	if p == nil {
		return tracing.StartPhases{}
	}
	ns := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixNano()
	}
	return tracing.StartPhases{Decided: ns(p.Decided), Created: ns(p.Created), Started: ns(p.Started), Ready: ns(p.Ready)}
}

// Registry owns the Sets of the revisions its users retain and keeps their
// replicas in step with the store's endpoints. One Registry per process is
// shared by the router and the activator.
type Registry struct {
	endpoints *store.Cache[store.Endpoint]
	transport *proxy.Transport
	log       *slog.Logger

	mu    sync.Mutex
	sets  map[string]*Set
	eps   map[string][]endpoint // every revision's endpoints on live nodes, retained or not
	all   map[string][]endpoint // every revision's endpoints, live or not (live.go)
	live  LiveSet               // nil: every node counts as live
	ready chan struct{}
	// ownsTransport and ownsCache say Run also runs the transport and the
	// endpoints cache (see Open).
	ownsTransport, ownsCache bool
}

// New returns a Registry that follows endpoints, a cache of
// store.PrefixEndpoints that the caller runs, and reaches replicas through
// transport. endpoints may be nil when the caller feeds Update itself.
func New(endpoints *store.Cache[store.Endpoint], transport *proxy.Transport, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{
		endpoints: endpoints,
		transport: transport,
		log:       log,
		sets:      make(map[string]*Set),
		eps:       make(map[string][]endpoint),
		ready:     make(chan struct{}),
	}
}

// Open returns a Registry with a transport of its own, built from cfg, and
// a cache of st's endpoints of its own, for a router or activator that
// shares its replicas with nobody. Its Run runs both, so the caller has
// one thing to run.
func Open(st store.Store, cfg proxy.Config, log *slog.Logger) (*Registry, error) {
	tr, err := proxy.NewTransport(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	eps := store.NewCache(st, store.PrefixEndpoints, store.CacheConfig[store.Endpoint]{
		OnUndecodable: func(key string, err error) { log.Warn("skipping undecodable endpoint", "key", key, "err", err) },
	})
	g := New(eps, tr, log)
	g.ownsTransport, g.ownsCache = true, true
	return g, nil
}

// Transport is the transport replicas are reached through.
func (g *Registry) Transport() *proxy.Transport { return g.transport }

// Ready is closed once the first listing of endpoints has been applied.
func (g *Registry) Ready() <-chan struct{} { return g.ready }

// Run keeps the Sets in step with the endpoints cache until ctx ends.
func (g *Registry) Run(ctx context.Context) error {
	if g.endpoints == nil {
		return errors.New("replicaset: Run needs an endpoints cache")
	}
	if g.ownsTransport {
		done := make(chan error, 1)
		go func() { done <- g.transport.Run(ctx) }()
		defer func() { <-done }()
	}
	if g.ownsCache {
		done := make(chan error, 1)
		go func() { done <- g.endpoints.Run(ctx) }()
		defer func() { <-done }()
	}
	stopLive := g.followLive(ctx)
	defer stopLive()
	err := g.endpoints.Follow(ctx, func(store.Update[store.Endpoint]) { g.apply(g.endpoints.Snapshot()) })
	if store.FollowEnded(ctx, err) {
		return nil
	}
	return err
}

// Retain returns the Set for revision, creating it if needed. Every Retain
// must be matched by one Drop.
func (g *Registry) Retain(revision string) *Set {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.sets[revision]
	if !ok {
		s = newSet(revision)
		g.sets[revision] = s
		g.closeGone(s.update(g.eps[revision], g.transport.Upstream))
	}
	s.refs++
	return s
}

// Drop releases a Set from Retain. The last Drop forgets it and closes its
// connection pools; requests still running on it finish normally.
func (g *Registry) Drop(s *Set) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s.refs--
	if s.refs > 0 || g.sets[s.name] != s {
		return
	}
	delete(g.sets, s.name)
	g.closeGone(s.update(nil, g.transport.Upstream))
}

// Update replaces every revision's endpoints. Run calls it; tests may too.
func (g *Registry) Update(endpoints []store.Endpoint) {
	byRev := make(map[string][]endpoint)
	for _, ep := range endpoints {
		byRev[ep.Revision] = append(byRev[ep.Revision], endpoint{id: ep.Replica, addr: ep.Addr, limit: ep.Limit, node: ep.Node, start: startOf(ep.Start)})
	}
	g.set(byRev)
}

// apply rebuilds every revision's endpoints from a snapshot. An endpoint
// without an address is not ready; one without a revision or replica name
// takes them from its key.
func (g *Registry) apply(snap *store.Snapshot[store.Endpoint]) {
	byRev := make(map[string][]endpoint)
	for v := range snap.All() {
		ep := v.Value
		if ep.Addr == "" {
			continue
		}
		rev := ep.Revision
		if rev == "" {
			rev, _, _ = strings.Cut(strings.TrimPrefix(v.Key, store.PrefixEndpoints), "/")
		}
		id := ep.Replica
		if id == "" {
			id = v.Key
		}
		byRev[rev] = append(byRev[rev], endpoint{id: id, addr: ep.Addr, limit: ep.Limit, node: ep.Node, start: startOf(ep.Start)})
	}
	g.set(byRev)
}

func (g *Registry) set(byRev map[string][]endpoint) {
	for _, eps := range byRev {
		// A stable order keeps the replica slices comparable across updates.
		sort.Slice(eps, func(i, j int) bool { return eps[i].id < eps[j].id })
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.all = byRev
	g.applyLocked()
}

// applyLocked makes every Set hold its revision's endpoints on live nodes.
func (g *Registry) applyLocked() {
	byRev := g.liveOnly(g.all)
	prev := g.eps
	g.eps = byRev
	for name, s := range g.sets {
		if !sameEndpoints(prev[name], byRev[name]) {
			g.closeGone(s.update(byRev[name], g.transport.Upstream))
		}
	}
	select {
	case <-g.ready:
	default:
		close(g.ready)
	}
}

func sameEndpoints(a, b []endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (g *Registry) closeGone(gone []*Replica) {
	for _, r := range gone {
		r.Upstream.Close()
	}
}
