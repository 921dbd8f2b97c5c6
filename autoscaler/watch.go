package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/store"
)

// This file is the runner's side of the store caches: which it follows,
// and how each update folds into the runner's state. The state is the
// runner's own, not the caches' snapshots, because decide reads it under
// r.mu and commit writes its own transactions into it before their watch
// events arrive.

// RunnerCaches are the store caches a Runner reads, each of every record
// under its prefix. A process opens each once and hands it to every
// component that reads it (ebbd does), and runs it; the Runner opens its
// own over RunnerDeps.Store, and runs it, for each that is nil.
type RunnerCaches struct {
	// Functions are store.PrefixFunctions, for their traffic.
	Functions *store.Cache[store.Function]
	// Revisions are store.PrefixRevisions.
	Revisions *store.Cache[store.Revision]
	// Endpoints are store.PrefixEndpoints: the ready replicas.
	Endpoints *store.Cache[store.Endpoint]
	// Nodes are store.PrefixNodes, for placement.
	Nodes *store.Cache[store.Node]
	// Assignments are store.PrefixAssignments: every node's, which
	// placement accounts.
	Assignments *store.Cache[store.Assignment]
	// Scales are store.PrefixScales.
	Scales *store.Cache[store.Scale]
	// KeepAlive are store.PrefixKeepAlive (runner_keepalive.go).
	KeepAlive *store.Cache[store.KeepAlive]
	// Namespaces are store.PrefixNamespaces, for their quotas
	// (runner_quota.go).
	Namespaces *store.Cache[store.Namespace]
}

// watch is one cache the runner follows.
type watch struct {
	prefix string
	// run runs the cache when the runner opened it itself; nil otherwise.
	run func(context.Context) error
	// follow folds the cache's updates into the runner until ctx ends.
	follow func(context.Context) error
}

// openWatches sets up the watches of the caches given, opening the missing
// ones over the store.
func (r *Runner) openWatches(c RunnerCaches) error {
	var errs []error
	add := func(w watch, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		r.watches = append(r.watches, w)
	}
	add(watchOf(r, c.Functions, store.PrefixFunctions, r.onFunctions))
	add(watchOf(r, c.Revisions, store.PrefixRevisions, r.onRevisions))
	add(watchOf(r, c.Endpoints, store.PrefixEndpoints, r.onEndpoints))
	add(watchOf(r, c.Nodes, store.PrefixNodes, r.onNodes))
	add(watchOf(r, c.Assignments, store.PrefixAssignments, r.onAssignments))
	add(watchOf(r, c.Scales, store.PrefixScales, r.onScales))
	add(watchOf(r, c.KeepAlive, store.PrefixKeepAlive, r.onKeepAlive))
	add(watchOf(r, c.Namespaces, store.PrefixNamespaces, r.onNamespaces))
	return errors.Join(errs...)
}

// watchOf follows c, which must hold prefix, with apply under r.mu; a nil
// c is a cache of the runner's own.
func watchOf[T any](r *Runner, c *store.Cache[T], prefix string, apply func(store.Update[T])) (watch, error) {
	w := watch{prefix: prefix}
	if c == nil {
		c = store.NewCache(r.deps.Store, prefix, store.CacheConfig[T]{
			OnUndecodable: func(key string, err error) { r.log.Warn("skipping undecodable record", "key", key, "err", err) },
		})
		w.run = c.Run
	} else if c.Prefix() != prefix {
		return watch{}, fmt.Errorf("autoscaler runner: the cache of %s must hold all of %s", c.Prefix(), prefix)
	}
	w.follow = func(ctx context.Context) error {
		err := c.Follow(ctx, func(u store.Update[T]) {
			r.mu.Lock()
			defer r.mu.Unlock()
			apply(u)
			r.listedLocked(prefix)
		})
		return fmt.Errorf("follow %s: %w", prefix, err)
	}
	return w, nil
}

// follow runs the runner's own caches and follows every cache, in g.
func (r *Runner) follow(ctx context.Context, g *errgroup.Group) {
	for _, w := range r.watches {
		if w.run != nil {
			g.Go(func() error { return w.run(ctx) })
		}
		g.Go(func() error { return w.follow(ctx) })
	}
}

// listedLocked notes that prefix's cache has listed, and opens the tick
// loop once every cache has.
func (r *Runner) listedLocked(prefix string) {
	if r.synced[prefix] {
		return
	}
	r.synced[prefix] = true
	if r.allSyncedLocked() {
		close(r.ready)
	}
}

func (r *Runner) allSyncedLocked() bool { return len(r.synced) == len(r.watches) }

func (r *Runner) onFunctions(u store.Update[store.Function]) {
	r.functions = fold(r.functions, u, lastSegment, nil)
	r.routed = routedRevisions(r.functions)
	r.shares = trafficShares(r.functions)
}

// onRevisions keeps a revision Activate read ahead of the watch until the
// watch has caught up with the version read; from then on the cache is the
// truth, also when it says the revision is gone.
func (r *Runner) onRevisions(u store.Update[store.Revision]) {
	r.byNamespace = nil
	r.records = fold(r.records, u, lastSegment, func(name string) bool {
		version, ok := r.loaded[name]
		return ok && u.Revision < version
	})
	var passed []string
	if len(r.loaded) > 0 {
		// A read-ahead revision was not in the cache when it was read, so
		// the cache holds it now only if this update put it.
		put := map[string]bool{}
		for _, c := range u.Changed {
			put[c.Key] = !c.Deleted
		}
		for name, version := range r.loaded {
			rec, ok := r.records[name]
			switch {
			case ok && put[rec.Key]:
				delete(r.loaded, name)
			case u.Revision >= version:
				delete(r.loaded, name)
				if ok {
					delete(r.records, name)
				}
				passed = append(passed, name)
			}
		}
	}
	gone := func(name string) {
		if _, ok := r.records[name]; !ok {
			if _, has := r.revs[name]; has {
				r.dropLocked(name)
			}
		}
	}
	if u.Full {
		for name := range r.revs {
			gone(name)
		}
	}
	for _, c := range u.Changed {
		gone(lastSegment(c.Key))
	}
	for _, name := range passed {
		gone(name)
	}
}

// onEndpoints counts each revision's ready endpoints (endpoints/{rev}/…),
// folding in only what changed.
func (r *Runner) onEndpoints(u store.Update[store.Endpoint]) {
	if u.Full {
		clear(r.readyN)
		clear(r.readyOf)
	}
	for _, c := range u.Changed {
		if rev, ok := r.readyOf[c.Key]; ok {
			delete(r.readyOf, c.Key)
			if r.readyN[rev]--; r.readyN[rev] <= 0 {
				delete(r.readyN, rev)
			}
		}
		if c.Deleted {
			continue
		}
		rest := strings.TrimPrefix(c.Key, store.PrefixEndpoints)
		if i := strings.IndexByte(rest, '/'); i > 0 {
			r.readyOf[c.Key] = rest[:i]
			r.readyN[rest[:i]]++
		}
	}
}

func (r *Runner) onNodes(u store.Update[store.Node]) {
	r.nodeRecs = fold(r.nodeRecs, u, lastSegment, nil)
	r.nodes = r.nodes[:0]
	for _, n := range r.nodeRecs {
		r.nodes = append(r.nodes, n.Value)
	}
	slices.SortFunc(r.nodes, func(a, b store.Node) int { return strings.Compare(a.Name, b.Name) })
	r.lead.nodesGen++
}

// onAssignments folds in every node's assignments. An update from just
// before one of the runner's own writes sets a version back; the next
// write then conflicts, refreshes and lands.
func (r *Runner) onAssignments(u store.Update[store.Assignment]) {
	r.assigns = fold(r.assigns, u, func(key string) string { return key }, nil)
	r.recomputeAllocLocked()
}

func (r *Runner) onScales(u store.Update[store.Scale]) {
	r.scales = fold(r.scales, u, lastSegment, nil)
}

func (r *Runner) onKeepAlive(u store.Update[store.KeepAlive]) {
	r.kept = fold(r.kept, u, lastSegment, nil)
}

// lastSegment names a record by its key's last path segment: the revision
// of revisions/{fn}/{rev} and scales/{rev}, the node of nodes/{node}.
func lastSegment(key string) string { return key[strings.LastIndexByte(key, '/')+1:] }

// fold brings m, keyed by nameOf(store key), in line with a cache update,
// in place, and returns it (a new map if m is nil). It walks only the
// changed keys, or every record after a listing: with thousands of
// revisions, rebuilding the runner's state from the whole prefix on every
// change would cost more than all the rest it does. A name whose key left
// the cache is dropped unless keep (when set) says to keep it.
func fold[T any](m map[string]store.Versioned[T], u store.Update[T], nameOf func(key string) string, keep func(name string) bool) map[string]store.Versioned[T] {
	if m == nil {
		m = make(map[string]store.Versioned[T], len(u.Changed))
	}
	drop := func(name string) {
		if keep == nil || !keep(name) {
			delete(m, name)
		}
	}
	if u.Full {
		listed := make(map[string]bool, len(u.Changed))
		for _, c := range u.Changed {
			listed[c.Key] = true
		}
		for name, v := range m {
			if !listed[v.Key] {
				drop(name)
			}
		}
	}
	for _, c := range u.Changed {
		name := nameOf(c.Key)
		if !c.Deleted {
			m[name] = c.Versioned
		} else if v, ok := m[name]; ok && v.Key == c.Key {
			drop(name)
		}
	}
	return m
}

func (r *Runner) recomputeAllocLocked() {
	alloc := map[string]Allocation{}
	for key, a := range r.assigns {
		node := nodeOfAssignment(key)
		d, ok := r.demandLocked(a.Value.Revision)
		if !ok {
			alloc[node] = alloc[node].Add(Demand{}, 0, a.Value.PreCreated)
			continue
		}
		alloc[node] = alloc[node].Add(d, a.Value.Replicas, a.Value.PreCreated)
	}
	r.alloc = alloc
}

func nodeOfAssignment(key string) string {
	rest := strings.TrimPrefix(key, store.PrefixAssignments)
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[:i]
	}
	return rest
}
