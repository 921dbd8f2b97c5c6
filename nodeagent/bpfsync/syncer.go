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

	mu    sync.Mutex // guards the mirrored state below
	fns   map[string]store.Versioned[store.Function]
	eps   map[string]store.Versioned[store.Endpoint]
	revs  map[uint16]string // this node's ready replica ports → revision, from eps
	vips  map[string]store.Versioned[store.VIP]
	ports map[uint16]bool
	have  int // how many of the four mirrors have delivered
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

// Run mirrors the store into the loader and turns wake events into
// activations until ctx ends. It returns nil then, or the first error that
// stops it.
func (s *Syncer) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	mirror := func(prefix string, on func(map[string]store.KV)) {
		g.Go(func() error {
			err := store.Mirror(ctx, s.deps.Store, prefix, on)
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("bpfsync: watch %s: %w", prefix, err)
		})
	}
	mirror(store.PrefixFunctions, s.onFunctions)
	mirror(store.PrefixEndpoints, s.onEndpoints)
	mirror(store.PrefixVIPs, s.onVIPs)
	mirror(store.PrefixPorts+s.cfg.Node+"/", s.onPorts)
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

func (s *Syncer) onFunctions(snap map[string]store.KV) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivered(s.fns == nil)
	s.fns = store.DecodeSnapshot(snap, s.fns, s.undecodable)
}

func (s *Syncer) onEndpoints(snap map[string]store.KV) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivered(s.eps == nil)
	s.eps = store.DecodeSnapshot(snap, s.eps, s.undecodable)
	s.revs = portRevisions(s.eps, s.cfg.Node)
}

func (s *Syncer) onVIPs(snap map[string]store.KV) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivered(s.vips == nil)
	s.vips = store.DecodeSnapshot(snap, s.vips, s.undecodable)
}

func (s *Syncer) onPorts(snap map[string]store.KV) {
	ports := make(map[uint16]bool, len(snap))
	prefix := store.PrefixPorts + s.cfg.Node + "/"
	for key := range snap {
		p, err := strconv.ParseUint(strings.TrimPrefix(key, prefix), 10, 16)
		if err != nil || p == 0 {
			s.log.Warn("skipping malformed port key", "key", key)
			continue
		}
		ports[uint16(p)] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivered(s.ports == nil)
	s.ports = ports
}

func (s *Syncer) undecodable(key string, err error) {
	s.log.Warn("skipping undecodable record", "key", key, "err", err)
}

// delivered notes a mirror's callback (first says whether it is that
// mirror's first) and wakes the reconcile loop once all four have listed.
func (s *Syncer) delivered(first bool) {
	if first {
		s.have++
	}
	if s.have < 4 {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// reconcileLoop applies the mirrored state after each change, and again
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

// view is one consistent read of the mirrored state.
type view struct {
	fns   map[string]store.Versioned[store.Function]
	eps   map[string]store.Versioned[store.Endpoint]
	vips  map[string]store.Versioned[store.VIP]
	ports map[uint16]bool
}

// reconcile brings the loader's allow-list and VIPs in line with the
// store, then frees and allocates VIP records; the store writes come back
// through the mirrors and are programmed on the next pass.
func (s *Syncer) reconcile(ctx context.Context) error {
	s.mu.Lock()
	v := view{fns: s.fns, eps: s.eps, vips: s.vips, ports: s.ports}
	s.mu.Unlock()
	// The maps are replaced, never modified, by the mirrors, so v can be
	// read without the lock.

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
	for _, c := range v.eps {
		addr, err := netip.ParseAddrPort(c.Value.Addr)
		if err != nil || !addr.Addr().Unmap().Is4() {
			continue // VIPs are IPv4; such a replica is reached via the router
		}
		addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
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
	functions := make(map[uint32]funcInfo, len(v.vips))
	want := make(map[string]bool, len(v.vips))
	for _, c := range v.vips {
		rec := c.Value
		fn, ok := v.fns[store.FunctionKey(rec.Function)]
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
	used := make(map[uint32]bool, len(v.vips))
	has := make(map[string]bool, len(v.vips))
	for key, c := range v.vips {
		rec := c.Value
		if _, ok := v.fns[store.FunctionKey(rec.Function)]; ok {
			used[rec.Index] = true
			has[rec.Function] = true
			continue
		}
		_, err := s.deps.Store.Txn(ctx,
			store.Delete(key, c.Version),
			store.Delete(store.VIPSlotKey(rec.Index), store.AnyVersion),
			store.Check(store.FunctionKey(rec.Function), store.MustNotExist))
		if err != nil {
			return fmt.Errorf("free vip %s of %s: %w", rec.Addr, rec.Function, err)
		}
	}

	var missing []string
	for _, c := range v.fns {
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
		fnKV := v.fns[store.FunctionKey(fn)]
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
