package bpfsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/bpf"
	"github.com/ebbrun/ebb/store"
)

// Loader is the part of *bpf.Loader the Syncer drives.
type Loader interface {
	AllowPort(port uint16) error
	DisallowPort(port uint16) error
	SetVIP(v bpf.VIP) error
	DeleteVIP(addr netip.AddrPort) error
	RunWakeEvents(ctx context.Context, handle func(bpf.WakeEvent)) error
	TrackPort(port uint16) error
	UntrackPort(port uint16) error
	PortLoads() (map[uint16]bpf.PortLoad, error)
}

// Activator scales a revision up at once: the autoscaler, in process or
// over HTTP.
type Activator interface {
	Activate(ctx context.Context, revision string) error
}

// Deps are the Syncer's collaborators.
type Deps struct {
	// Store is where functions, endpoints, ports and VIPs come from, and
	// where VIPs are allocated. Required.
	Store store.Store
	// Functions, Endpoints and VIPs are the process's caches of
	// store.PrefixFunctions, store.PrefixEndpoints and store.PrefixVIPs,
	// and Ports its cache of this node's port claims (ports/{node}/), all
	// run by the caller. The Syncer opens its own over Store, and runs it,
	// for each that is nil.
	Functions *store.Cache[store.Function]
	Endpoints *store.Cache[store.Endpoint]
	VIPs      *store.Cache[store.VIP]
	Ports     *store.Cache[string]
	// Loader holds the eBPF maps. Required.
	Loader Loader
	// Activator is asked to start a function's revision when a process
	// connects to its VIP while it is at zero. When nil, wake events are
	// only counted; the fallback listener's request still activates it,
	// later.
	Activator Activator
	// Stats gets the load that reaches this node's replicas through VIPs,
	// which no router sees. When nil, that load is not reported, and a
	// function called only through its VIP looks idle to the autoscaler.
	Stats StatsSink
	// Registerer gets the Syncer's metrics; optional.
	Registerer prometheus.Registerer
	// Logger; optional.
	Logger *slog.Logger
	// Now is the clock for VIP records; default time.Now.
	Now func() time.Time
}

// Syncer keeps the eBPF maps equal to the store. Create it with New and
// start it with Run.
type Syncer struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	m    *metrics

	fns       *store.Cache[store.Function]
	eps       *store.Cache[store.Endpoint]
	vips      *store.Cache[store.VIP]
	portKeys  *store.Cache[string]
	ownCaches []func(context.Context) error

	mu    sync.Mutex        // guards the state derived from the caches below
	revs  map[uint16]string // this node's ready replica ports → revision, from eps
	ports map[uint16]bool   // this node's claimed ports, from portKeys
	kick  chan struct{}

	// Owned by the reconcile goroutine.
	allowed    map[uint16]bool
	tracked    map[uint16]bool    // replica ports whose requests the programs account
	programmed map[string]bpf.VIP // by function
	refused    map[string]string  // function → VIP the loader refused, warned once

	functions atomic.Pointer[map[uint32]funcInfo] // by function id

	wakeMu  sync.Mutex
	pending map[string]bool // revisions waiting for an activation
	wake    chan struct{}
}

// funcInfo is what wake events and the fallback listener need to know
// about a function with a VIP.
type funcInfo struct {
	name    string
	targets []target
}

// New builds a Syncer; it does nothing until Run.
func New(cfg Config, deps Deps) (*Syncer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Loader == nil {
		return nil, errors.New("bpfsync: Deps.Store and Deps.Loader are required")
	}
	cfg = cfg.withDefaults()
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("bpfsync: register metrics: %w", err)
	}
	s := &Syncer{
		cfg:        cfg,
		deps:       deps,
		log:        deps.Logger,
		m:          m,
		kick:       make(chan struct{}, 1),
		allowed:    map[uint16]bool{},
		tracked:    map[uint16]bool{},
		programmed: map[string]bpf.VIP{},
		refused:    map[string]string{},
		pending:    map[string]bool{},
		wake:       make(chan struct{}, 1),
	}
	s.fns = ownCache(s, deps.Functions, store.PrefixFunctions)
	s.eps = ownCache(s, deps.Endpoints, store.PrefixEndpoints)
	s.vips = ownCache(s, deps.VIPs, store.PrefixVIPs)
	s.portKeys = ownCache(s, deps.Ports, s.portPrefix())
	empty := map[uint32]funcInfo{}
	s.functions.Store(&empty)
	return s, nil
}

// FunctionByID names the function whose VIP carries id in the eBPF maps,
// as bpf.Origin and bpf.WakeEvent report it.
func (s *Syncer) FunctionByID(id uint32) (string, bool) {
	f, ok := (*s.functions.Load())[id]
	return f.name, ok
}

// functionID is the id a VIP record's function has in the eBPF maps; 0
// means none there.
func functionID(v store.VIP) uint32 { return v.Index + 1 }

// ownCache returns c, or when it is nil a cache of prefix that the Syncer
// opens and runs itself.
func ownCache[T any](s *Syncer, c *store.Cache[T], prefix string) *store.Cache[T] {
	if c != nil {
		return c
	}
	c = store.NewCache(s.deps.Store, prefix, store.CacheConfig[T]{OnUndecodable: s.undecodable})
	s.ownCaches = append(s.ownCaches, c.Run)
	return c
}

func (s *Syncer) portPrefix() string { return store.PrefixPorts + s.cfg.Node + "/" }

// follow calls changed after each change to c until ctx ends.
func follow[T any](ctx context.Context, c *store.Cache[T], changed func()) error {
	err := c.Follow(ctx, func(store.Update[T]) { changed() })
	if store.FollowEnded(ctx, err) {
		return nil
	}
	return fmt.Errorf("bpfsync: follow %s: %w", c.Prefix(), err)
}

// Run keeps the loader in line with the store caches and turns wake
// events into activations until ctx ends. It returns nil then, or the
// first error that stops it.
func (s *Syncer) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, run := range s.ownCaches {
		g.Go(func() error { return run(ctx) })
	}
	g.Go(func() error { return follow(ctx, s.fns, s.changed) })
	g.Go(func() error { return follow(ctx, s.eps, func() { s.onEndpoints(s.eps.Snapshot()) }) })
	g.Go(func() error { return follow(ctx, s.vips, s.changed) })
	g.Go(func() error { return follow(ctx, s.portKeys, func() { s.onPorts(s.portKeys.Snapshot()) }) })
	g.Go(func() error { return s.reconcileLoop(ctx) })
	g.Go(func() error { return s.activateLoop(ctx) })
	g.Go(func() error { return s.reportLoop(ctx) })
	g.Go(func() error {
		if err := s.deps.Loader.RunWakeEvents(ctx, s.onWake); err != nil && ctx.Err() == nil {
			return fmt.Errorf("bpfsync: %w", err)
		}
		return nil
	})
	return g.Wait()
}

func (s *Syncer) onEndpoints(snap *store.Snapshot[store.Endpoint]) {
	revs := portRevisions(snap, s.cfg.Node)
	s.mu.Lock()
	s.revs = revs
	s.mu.Unlock()
	s.changed()
}

func (s *Syncer) onPorts(snap *store.Snapshot[string]) {
	ports := make(map[uint16]bool, snap.Len())
	prefix := s.portPrefix()
	for c := range snap.All() {
		rest, ok := strings.CutPrefix(c.Key, prefix)
		if !ok {
			continue // another node's, in a cache of every node's
		}
		p, err := strconv.ParseUint(rest, 10, 16)
		if err != nil || p == 0 {
			s.log.Warn("skipping malformed port key", "key", c.Key)
			continue
		}
		ports[uint16(p)] = true
	}
	s.mu.Lock()
	s.ports = ports
	s.mu.Unlock()
	s.changed()
}

func (s *Syncer) undecodable(key string, err error) {
	s.log.Warn("skipping undecodable record", "key", key, "err", err)
}

// changed wakes the reconcile loop after a cache changed, once all four
// have listed.
func (s *Syncer) changed() {
	for _, ready := range []<-chan struct{}{s.fns.Ready(), s.eps.Ready(), s.vips.Ready(), s.portKeys.Ready()} {
		select {
		case <-ready:
		default:
			return
		}
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// reconcileLoop applies the cached state after each change, and again
// after RetryInterval while a step keeps failing.
func (s *Syncer) reconcileLoop(ctx context.Context) error {
	retry := time.NewTimer(0)
	<-retry.C
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-retry.C:
		}
		if err := s.reconcile(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, store.ErrConflict) {
				s.log.Warn("ebpf sync step failed, retrying", "err", err, "in", s.cfg.RetryInterval)
			}
			retry.Reset(s.cfg.RetryInterval)
		}
	}
}

// view is one read of the cached state. Snapshots are immutable, and the
// ports map is replaced, never modified, so a view needs no lock.
type view struct {
	fns   *store.Snapshot[store.Function]
	eps   *store.Snapshot[store.Endpoint]
	vips  *store.Snapshot[store.VIP]
	ports map[uint16]bool
}

// reconcile brings the loader's allow-list and VIPs in line with the
// store, then frees and allocates VIP records; the store writes come back
// through the caches and are programmed on the next pass.
func (s *Syncer) reconcile(ctx context.Context) error {
	s.mu.Lock()
	v := view{fns: s.fns.Snapshot(), eps: s.eps.Snapshot(), vips: s.vips.Snapshot(), ports: s.ports}
	s.mu.Unlock()

	var errs []error
	errs = append(errs, s.syncPorts(v))
	errs = append(errs, s.syncVIPs(v))
	errs = append(errs, s.allocateVIPs(ctx, v))
	return errors.Join(errs...)
}

func (s *Syncer) syncPorts(v view) error {
	want := make(map[uint16]bool, len(v.ports)+1)
	for p := range v.ports {
		want[p] = true
	}
	if s.cfg.RouterPort != 0 {
		want[s.cfg.RouterPort] = true
	}
	err := syncSet(s.allowed, want, s.deps.Loader.AllowPort, s.deps.Loader.DisallowPort)
	s.m.ports.Set(float64(len(s.allowed)))
	return errors.Join(err, s.syncTracked(v.ports))
}

// syncTracked has the programs account the requests to every replica port
// of this node (not the router's: its own load it reports itself).
func (s *Syncer) syncTracked(replicaPorts map[uint16]bool) error {
	want := make(map[uint16]bool, len(replicaPorts))
	for p := range replicaPorts {
		if s.allowed[p] {
			want[p] = true
		}
	}
	return syncSet(s.tracked, want, s.deps.Loader.TrackPort, s.deps.Loader.UntrackPort)
}

// syncSet brings have, the ports the loader holds, to want: add for each
// missing one, remove for each extra. A port whose call fails keeps its
// old state, to be tried again on the next pass.
func syncSet(have, want map[uint16]bool, add, remove func(uint16) error) error {
	var errs []error
	for p := range want {
		if have[p] {
			continue
		}
		if err := add(p); err != nil {
			errs = append(errs, err)
			continue
		}
		have[p] = true
	}
	for p := range have {
		if want[p] {
			continue
		}
		if err := remove(p); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(have, p)
	}
	return errors.Join(errs...)
}

// syncVIPs programs the VIP of every function that has one, with its
// current backends, and removes the VIPs of functions that lost theirs.
func (s *Syncer) syncVIPs(v view) error {
	ready := map[string][]netip.AddrPort{}
	for c := range v.eps.All() {
		addr, err := netip.ParseAddrPort(c.Value.Addr)
		if err != nil || !addr.Addr().Unmap().Is4() {
			continue // VIPs are IPv4; such a replica is reached via the router
		}
		addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
		if c.Value.Node != s.cfg.Node && s.cfg.ReplicaCIDR.IsValid() && s.cfg.ReplicaCIDR.Contains(addr.Addr()) {
			continue // on this node that address is one of ours
		}
		if c.Value.Node == s.cfg.Node && s.cfg.ReplicaAddr != nil && addr.Addr() == s.cfg.PublishIP {
			if own := s.cfg.ReplicaAddr(int(addr.Port())); own.IsValid() {
				addr = netip.AddrPortFrom(own, addr.Port())
			}
		}
		ready[c.Value.Revision] = append(ready[c.Value.Revision], addr)
	}
	for _, addrs := range ready {
		slices.SortFunc(addrs, netip.AddrPort.Compare)
	}

	type programmed struct {
		function string
		vip      bpf.VIP
	}
	var (
		errs    []error
		changed []programmed
	)
	functions := make(map[uint32]funcInfo, v.vips.Len())
	want := make(map[string]bool, v.vips.Len())
	for c := range v.vips.All() {
		rec := c.Value
		fn, ok := v.fns.Get(store.FunctionKey(rec.Function))
		if !ok {
			continue // freed below
		}
		addr, err := netip.ParseAddrPort(rec.Addr)
		if err == nil && (!s.cfg.vipPrefix().Contains(addr.Addr()) || addr.Port() == 0) {
			err = fmt.Errorf("not in this node's VIP range %s", s.cfg.vipPrefix())
		}
		if err != nil {
			s.refuse(rec, err)
			continue
		}
		targets := routedTargets(fn.Value)
		vip := bpf.VIP{Addr: addr, FunctionID: functionID(rec), Backends: vipBackends(targets, ready)}
		functions[vip.FunctionID] = funcInfo{name: rec.Function, targets: targets}
		want[rec.Function] = true
		if old, ok := s.programmed[rec.Function]; !ok || !sameVIP(old, vip) {
			changed = append(changed, programmed{rec.Function, vip})
		}
	}
	// Names first: a connect to a VIP may reach the fallback listener or
	// raise a wake event the moment SetVIP returns.
	s.functions.Store(&functions)
	for _, c := range changed {
		if old, ok := s.programmed[c.function]; ok && old.Addr != c.vip.Addr {
			if err := s.deps.Loader.DeleteVIP(old.Addr); err != nil {
				errs = append(errs, err)
				continue
			}
			delete(s.programmed, c.function)
		}
		if err := s.deps.Loader.SetVIP(c.vip); err != nil {
			errs = append(errs, err)
			continue
		}
		s.programmed[c.function] = c.vip
	}
	for fn, old := range s.programmed {
		if want[fn] {
			continue
		}
		if err := s.deps.Loader.DeleteVIP(old.Addr); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(s.programmed, fn)
	}
	for fn := range s.refused {
		if !want[fn] {
			delete(s.refused, fn)
		}
	}
	s.m.vips.Set(float64(len(s.programmed)))
	return errors.Join(errs...)
}

// refuse warns once about a VIP record this node cannot program, typically
// because another node allocated it from a different range.
func (s *Syncer) refuse(rec store.VIP, err error) {
	if s.refused[rec.Function] == rec.Addr {
		return
	}
	s.refused[rec.Function] = rec.Addr
	s.log.Warn("cannot program the function's VIP on this node; callers here must use the router",
		"function", rec.Function, "vip", rec.Addr, "err", err)
}

func sameVIP(a, b bpf.VIP) bool {
	return a.Addr == b.Addr && a.FunctionID == b.FunctionID && slices.Equal(a.Backends, b.Backends)
}

// allocateVIPs frees the VIP records of deleted functions and allocates one
// for each function without, the lowest free indexes first. Every write is
// conditional on the function record it saw, so a function created or
// deleted meanwhile, or another node allocating the same index, makes the
// write fail with a conflict and the next pass try again.
func (s *Syncer) allocateVIPs(ctx context.Context, v view) error {
	used := make(map[uint32]bool, v.vips.Len())
	has := make(map[string]bool, v.vips.Len())
	for c := range v.vips.All() {
		rec := c.Value
		if _, ok := v.fns.Get(store.FunctionKey(rec.Function)); ok {
			used[rec.Index] = true
			has[rec.Function] = true
			continue
		}
		_, err := s.deps.Store.Txn(ctx,
			store.Delete(c.Key, c.Version),
			store.Delete(store.VIPSlotKey(rec.Index), store.AnyVersion),
			store.Check(store.FunctionKey(rec.Function), store.MustNotExist))
		if err != nil {
			return fmt.Errorf("free vip %s of %s: %w", rec.Addr, rec.Function, err)
		}
	}

	var missing []string
	for c := range v.fns.All() {
		if !has[c.Value.Name] {
			missing = append(missing, c.Value.Name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	free := lowestFree(used, len(missing), s.cfg.vipRange())
	if len(free) < len(missing) {
		s.log.Warn("the VIP range is full; some functions get no VIP", "range", s.cfg.vipPrefix(), "without", len(missing)-len(free))
		missing = missing[:len(free)]
	}
	for i, fn := range missing {
		addr, err := s.cfg.vipAddr(free[i])
		if err != nil {
			return err
		}
		rec := store.VIP{Function: fn, Index: free[i], Addr: addr.String(), CreatedAt: s.deps.Now().UTC()}
		fnKV, _ := v.fns.Get(store.FunctionKey(fn))
		_, err = s.deps.Store.Txn(ctx,
			store.PutJSON(store.VIPKey(fn), rec, store.MustNotExist),
			store.PutJSON(store.VIPSlotKey(free[i]), fn, store.MustNotExist),
			store.Check(store.FunctionKey(fn), fnKV.Version))
		if err != nil {
			return fmt.Errorf("allocate vip %s to %s: %w", addr, fn, err)
		}
	}
	return nil
}

// onWake runs on the ring-buffer reader: it only picks the revision and
// queues it, so the reader never waits on the autoscaler.
func (s *Syncer) onWake(ev bpf.WakeEvent) {
	s.m.wakes.Inc()
	f, ok := (*s.functions.Load())[ev.FunctionID]
	if !ok {
		s.m.wakesUnknown.Inc()
		return
	}
	rev := pickRevision(f.targets, rand.IntN(1<<30))
	if rev == "" {
		s.m.wakesUnknown.Inc()
		return
	}
	s.wakeMu.Lock()
	s.pending[rev] = true
	s.wakeMu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// activateLoop asks the Activator for every revision wake events queued;
// events for a revision already queued fold into its one call.
func (s *Syncer) activateLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
		s.wakeMu.Lock()
		revs := make([]string, 0, len(s.pending))
		for rev := range s.pending {
			revs = append(revs, rev)
		}
		clear(s.pending)
		s.wakeMu.Unlock()
		for _, rev := range revs {
			s.activate(ctx, rev)
		}
	}
}

func (s *Syncer) activate(ctx context.Context, rev string) {
	if s.deps.Activator == nil {
		s.m.activations.WithLabelValues("skipped").Inc()
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ActivateTimeout)
	defer cancel()
	if err := s.deps.Activator.Activate(ctx, rev); err != nil {
		// Not logged above debug: a storm of connects to a function that
		// cannot start would flood the log; the counter and the
		// activator's own 502s tell the story.
		s.m.activations.WithLabelValues("error").Inc()
		s.log.Debug("wake-on-connect activation failed", "revision", rev, "err", err)
		return
	}
	s.m.activations.WithLabelValues("ok").Inc()
}
