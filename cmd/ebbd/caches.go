package main

import (
	"context"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/store"
)

// caches are this process's store caches, one per prefix, shared by every
// component that reads the prefix: the store serves one List and one Watch
// per prefix whatever the role runs. A cache is opened, and run in g, the
// first time a component asks for it.
type caches struct {
	// ctx and g are the daemon's: the caches run as long as the roles do.
	ctx context.Context
	g   *errgroup.Group
	st  store.Store
	log *slog.Logger
	// assignmentsPrefix is what the process reads of assignments/: every
	// node's where the autoscaler runs, which places them all, else this
	// node's only. The node agent picks its own out of either.
	assignmentsPrefix string
	// jobPodsPrefix is what the process reads of jobpods/, alike: every
	// node's where the autoscaler runs (they hold namespace quotas), else
	// this node's only.
	jobPodsPrefix string

	functions   *store.Cache[store.Function]
	revisions   *store.Cache[store.Revision]
	endpoints   *store.Cache[store.Endpoint]
	revStatus   *store.Cache[store.RevisionNodeStatus]
	nodes       *store.Cache[store.Node]
	assignments *store.Cache[store.Assignment]
	scales      *store.Cache[store.Scale]
	keepAlive   *store.Cache[store.KeepAlive]
	namespaces  *store.Cache[store.Namespace]
	vips        *store.Cache[store.VIP]
	ports       *store.Cache[string]
	rollouts    *store.Cache[store.Rollout]
	jobPods     *store.Cache[store.JobPod]
	domains     *store.Cache[store.Domain]
}

func newCaches(ctx context.Context, g *errgroup.Group, st store.Store, log *slog.Logger, assignmentsPrefix, jobPodsPrefix string) *caches {
	return &caches{ctx: ctx, g: g, st: st, log: log.With("component", "store-cache"),
		assignmentsPrefix: assignmentsPrefix, jobPodsPrefix: jobPodsPrefix}
}

// openCache returns *slot, opening and running a cache of prefix there
// first if it is nil.
func openCache[T any](c *caches, slot **store.Cache[T], prefix string) *store.Cache[T] {
	if *slot == nil {
		cache := store.NewCache(c.st, prefix, store.CacheConfig[T]{
			OnUndecodable: func(key string, err error) { c.log.Warn("skipping undecodable record", "key", key, "err", err) },
		})
		c.g.Go(func() error { return cache.Run(c.ctx) })
		*slot = cache
	}
	return *slot
}

func (c *caches) Domains() *store.Cache[store.Domain] {
	return openCache(c, &c.domains, store.PrefixDomains)
}

func (c *caches) Functions() *store.Cache[store.Function] {
	return openCache(c, &c.functions, store.PrefixFunctions)
}

func (c *caches) Revisions() *store.Cache[store.Revision] {
	return openCache(c, &c.revisions, store.PrefixRevisions)
}

func (c *caches) Endpoints() *store.Cache[store.Endpoint] {
	return openCache(c, &c.endpoints, store.PrefixEndpoints)
}

func (c *caches) RevStatus() *store.Cache[store.RevisionNodeStatus] {
	return openCache(c, &c.revStatus, store.PrefixRevStatus)
}

func (c *caches) Nodes() *store.Cache[store.Node] {
	return openCache(c, &c.nodes, store.PrefixNodes)
}

func (c *caches) Assignments() *store.Cache[store.Assignment] {
	return openCache(c, &c.assignments, c.assignmentsPrefix)
}

func (c *caches) Scales() *store.Cache[store.Scale] {
	return openCache(c, &c.scales, store.PrefixScales)
}

func (c *caches) KeepAlive() *store.Cache[store.KeepAlive] {
	return openCache(c, &c.keepAlive, store.PrefixKeepAlive)
}

func (c *caches) Namespaces() *store.Cache[store.Namespace] {
	return openCache(c, &c.namespaces, store.PrefixNamespaces)
}

func (c *caches) VIPs() *store.Cache[store.VIP] {
	return openCache(c, &c.vips, store.PrefixVIPs)
}

// Ports holds this node's port claims (ports/{node}/ → replica id), the
// only ones a process reads.
func (c *caches) Ports(node string) *store.Cache[string] {
	return openCache(c, &c.ports, store.PrefixPorts+node+"/")
}

func (c *caches) Rollouts() *store.Cache[store.Rollout] {
	return openCache(c, &c.rollouts, store.PrefixRollouts)
}

// JobPods holds the job pods of jobPodsPrefix: the node agent runs its
// own, the autoscaler counts every node's against their quotas.
func (c *caches) JobPods() *store.Cache[store.JobPod] {
	return openCache(c, &c.jobPods, c.jobPodsPrefix)
}
