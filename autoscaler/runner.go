package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/quota"
	"github.com/ebbrun/ebb/store"
)

// ErrUnknownRevision means Activate named a revision that does not exist.
var ErrUnknownRevision = errors.New("unknown revision")

// RunnerConfig configures a Runner. Zero fields take the defaults listed.
type RunnerConfig struct {
	// Tick is how often every revision gets a decision. Default 2s.
	Tick time.Duration
	// StatusRefresh is how often a scale record is rewritten when only its
	// figures (observed load, keep-warm deadline) changed; a changed count,
	// panic flag or pre-warm request is written at once. A keep-alive
	// record is rewritten at most this often too. Default 10s.
	StatusRefresh time.Duration
	// WriteTimeout bounds one store transaction. Default 5s.
	WriteTimeout time.Duration
	// KeepAlive tunes the hybrid histogram keep-alive policy.
	KeepAlive HybridConfig
	// Placement tunes where replicas go.
	Placement PlacementConfig
}

// Runner defaults.
const (
	DefaultTick          = 2 * time.Second
	DefaultStatusRefresh = 10 * time.Second
	DefaultWriteTimeout  = 5 * time.Second
)

// WithDefaults returns c with zero fields set to their defaults.
func (c RunnerConfig) WithDefaults() RunnerConfig {
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	if c.StatusRefresh == 0 {
		c.StatusRefresh = DefaultStatusRefresh
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	c.KeepAlive = c.KeepAlive.WithDefaults()
	c.Placement = c.Placement.WithDefaults()
	return c
}

// Validate checks a defaulted config.
func (c RunnerConfig) Validate() error {
	if c.Tick <= 0 || c.StatusRefresh <= 0 || c.WriteTimeout <= 0 {
		return errors.New("autoscaler runner: tick, statusRefresh and writeTimeout must be positive")
	}
	if err := c.KeepAlive.Validate(); err != nil {
		return fmt.Errorf("autoscaler runner: keep-alive: %w", err)
	}
	if err := c.Placement.Validate(); err != nil {
		return fmt.Errorf("autoscaler runner: %w", err)
	}
	return nil
}

// RunnerDeps are the Runner's collaborators.
type RunnerDeps struct {
	// Store holds revisions, endpoints and nodes, and receives scales and
	// assignments. Required.
	Store store.Store
	// Caches are the store caches the runner reads (watch.go); it opens
	// its own over Store for each that is nil.
	Caches RunnerCaches
	// Logger; optional.
	Logger *slog.Logger
	// Registerer gets the runner's metrics; optional.
	Registerer prometheus.Registerer
	// Clock is the time every decision is made at; optional, time.Now.
	// Run's ticker runs on the time package's clock: tests either run it
	// in a testing/synctest bubble or call Tick themselves.
	Clock func() time.Time
	// Policy replaces the hybrid histogram keep-alive policy; optional.
	Policy KeepAlivePolicy
	// Queue gives each function's queued asynchronous invocations, read
	// once per tick and counted as demand (runner_queue.go); optional:
	// nil means no queue signal.
	Queue QueueDepths
	// Liveness is the live node set (node leases, runner_lead.go); nil
	// means the node records' heartbeats decide.
	Liveness Liveness
	// Standby makes the runner decide and write only while Lead runs, for
	// a control plane that may not lead; it still follows the store and
	// takes reports, so that it leads warm.
	Standby bool
}

// Runner is the thin shell around the pure autoscaler: it receives stats
// from every router and activator, keeps a Scaler per revision, decides for
// every revision each tick (and for one revision at once when an activator
// pokes it), places the replicas, and writes scales/{rev} and
// assignments/{node}/{rev} in one compare-and-swap transaction, with
// keepalive/{rev} when the keep-alive state changed. It reads functions
// (for their traffic), revisions, ready endpoints, nodes, assignments,
// scales and keep-alive records through store caches (watch.go).
type Runner struct {
	cfg    RunnerConfig
	deps   RunnerDeps
	log    *slog.Logger
	now    func() time.Time
	policy KeepAlivePolicy
	m      *runnerMetrics

	// writeMu serializes decide-and-write cycles, so that two of them never
	// race on the same keys' versions; mu guards the state below and is
	// never held across a store call.
	writeMu sync.Mutex
	mu      sync.Mutex
	watches []watch         // the caches the runner follows (watch.go)
	synced  map[string]bool // prefixes whose cache has listed
	ready   chan struct{}   // closed once every cache has listed
	revs    map[string]*revState
	fns     map[string]*IdleTracker
	records map[string]store.Versioned[store.Revision] // revision name -> record
	// loaded are revisions Activate read ahead of the cache, by the
	// version read: an update without one is only believed once its
	// revision has reached that version.
	loaded  map[string]int64
	readyN  map[string]int                               // revision name -> ready endpoints
	readyOf map[string]string                            // endpoint key -> its revision, counted in readyN
	nodes   []store.Node                                 // by name, from nodeRecs
	assigns map[string]store.Versioned[store.Assignment] // assignment key -> record
	scales  map[string]store.Versioned[store.Scale]      // revision name -> record
	alloc   map[string]Allocation                        // node -> allocation of every assignment
	// nodeRecs are the node records by node name.
	nodeRecs map[string]store.Versioned[store.Node]

	// functions are the function records, for their traffic; routed are
	// the revisions a route reaches (routedRevisions of functions).
	functions map[string]store.Versioned[store.Function]
	routed    map[string]bool
	// shares are the traffic percents of each function's revisions
	// (trafficShares); depths are each function's queued asynchronous
	// invocations as the last tick read them (runner_queue.go).
	shares map[string]map[string]int
	depths map[string]int
	// kept are the keep-alive records (runner_keepalive.go), by revision;
	// keptByFunction indexes the newest per function once, for restoring.
	kept           map[string]store.Versioned[store.KeepAlive]
	keptByFunction map[string]string

	// nsRecs are the namespace records (runner_quota.go); limits are the
	// quotas among them that cap replicas, by namespace. byNamespace
	// indexes the revisions by namespace, nil until needed after a change.
	nsRecs      map[string]store.Versioned[store.Namespace]
	limits      map[string]quota.Limits
	byNamespace map[string][]string

	lead leadState // runner_lead.go
}

// revState is one revision's autoscaling state.
type revState struct {
	name, function string
	namespace      string
	spec           api.FunctionSpec
	demand         Demand
	scaler         *Scaler
	// last is the Scaler's last Result, before the quota; scaled says
	// there is one.
	last          Result
	scaled        bool
	lastPlacement PlacementResult
	written       store.Scale
	writtenAt     time.Time
	// tracker is the function's IdleTracker, shared with its Scaler;
	// keptMark is what the keep-alive record was last written (or
	// restored) from, at keptAt.
	tracker  *IdleTracker
	keptMark keptMark
	keptAt   time.Time
}

// NewRunner returns a Runner; Run starts it.
func NewRunner(cfg RunnerConfig, deps RunnerDeps) (*Runner, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("autoscaler runner: a store is required")
	}
	r := &Runner{
		cfg: cfg, deps: deps, log: deps.Logger, now: deps.Clock, policy: deps.Policy,
		synced:  map[string]bool{},
		ready:   make(chan struct{}),
		revs:    map[string]*revState{},
		fns:     map[string]*IdleTracker{},
		records: map[string]store.Versioned[store.Revision]{},
		loaded:  map[string]int64{},
		readyN:  map[string]int{},
		readyOf: map[string]string{},
		assigns: map[string]store.Versioned[store.Assignment]{},
		scales:  map[string]store.Versioned[store.Scale]{},
		alloc:   map[string]Allocation{},

		nodeRecs:  map[string]store.Versioned[store.Node]{},
		functions: map[string]store.Versioned[store.Function]{},
		routed:    map[string]bool{},
		shares:    map[string]map[string]int{},
		depths:    map[string]int{},
		kept:      map[string]store.Versioned[store.KeepAlive]{},
		nsRecs:    map[string]store.Versioned[store.Namespace]{},
		limits:    map[string]quota.Limits{},
		lead:      leadState{wake: make(chan struct{}, 1)},
	}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.policy == nil {
		p, err := NewHybridHistogram(cfg.KeepAlive)
		if err != nil {
			return nil, err
		}
		r.policy = p
	}
	m, err := newRunnerMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	r.m = m
	if err := r.openWatches(deps.Caches); err != nil {
		return nil, err
	}
	return r, nil
}

// Run follows the store caches and, once every cache has listed, calls
// Tick every cfg.Tick until ctx ends. It returns nil when ctx is cancelled
// and an error if a cache fails for good (the store closed).
func (r *Runner) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	r.follow(gctx, g)
	r.followLiveness(gctx, g)
	g.Go(func() error { return r.tickEvery(gctx) })
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("autoscaler runner: %w", err)
}

// tickEvery waits for the caches, then ticks at once and every cfg.Tick.
// Tick logs its own failures, so its error is not looked at again here.
func (r *Runner) tickEvery(ctx context.Context) error {
	select {
	case <-r.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	t := time.NewTicker(r.cfg.Tick)
	defer t.Stop()
	for {
		_ = r.Tick(ctx)
		select {
		case <-t.C:
		case <-r.lead.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Report receives stats from a router or an activator. Each stat is
// re-stamped with the runner's clock, so that reporters' clocks need not
// agree with it or with each other: windows are one clock's windows. Stats
// for revisions the runner does not know yet are dropped.
func (r *Runner) Report(stats []api.RevisionStat) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range stats {
		rs := r.stateLocked(st.Revision)
		if rs == nil {
			r.m.stats.WithLabelValues("dropped").Inc()
			continue
		}
		st.Time = now
		rs.scaler.Record(st)
		r.m.stats.WithLabelValues("recorded").Inc()
	}
}

// Activate asks for capacity for a revision now: it decides at once, as if a
// request were buffered, and returns when the decision is in the store.
func (r *Runner) Activate(ctx context.Context, revision string) error {
	started := time.Now()
	r.mu.Lock()
	known := r.stateLocked(revision) != nil
	r.mu.Unlock()
	if !known {
		if err := r.loadRevision(ctx, revision); err != nil {
			return err
		}
	}
	err := r.step(ctx, revision, true)
	r.m.activation.Observe(time.Since(started).Seconds())
	return err
}

// Status returns the last scaling step of a revision, for status and debugging.
func (r *Runner) Status(revision string) (Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := r.revs[revision]
	if rs == nil {
		return Result{}, false
	}
	return rs.last, true
}

// loadRevision reads a revision the cache has not delivered yet: the first
// request to a brand-new revision can beat the watch.
func (r *Runner) loadRevision(ctx context.Context, revision string) error {
	fn, ok := functionOf(revision)
	if !ok {
		return fmt.Errorf("activate %q: %w", revision, ErrUnknownRevision)
	}
	rec, version, err := store.GetJSON[store.Revision](ctx, r.deps.Store, store.RevisionKey(fn, revision))
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("activate %q: %w", revision, ErrUnknownRevision)
	}
	if err != nil {
		return fmt.Errorf("activate %q: read revision: %w", revision, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.records[revision]; !ok {
		r.records[revision] = store.Versioned[store.Revision]{Value: rec, Key: store.RevisionKey(fn, revision), Version: version}
		r.loaded[revision] = version
		r.byNamespace = nil
	}
	if r.stateLocked(revision) == nil {
		return fmt.Errorf("activate %q: the runner has not synced with the store yet", revision)
	}
	return nil
}

// functionOf splits "{function}-{generation}" (api.RevisionName).
func functionOf(revision string) (string, bool) {
	i := strings.LastIndexByte(revision, '-')
	if i <= 0 || i == len(revision)-1 {
		return "", false
	}
	for _, c := range revision[i+1:] {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return revision[:i], true
}

// stateLocked returns the revision's state, creating it from the cached
// record on first use. It needs every cache listed: whether a scale was
// already recorded decides whether the initial scale applies.
func (r *Runner) stateLocked(name string) *revState {
	if rs := r.revs[name]; rs != nil {
		return rs
	}
	rec, ok := r.records[name]
	if !ok || !r.allSyncedLocked() {
		return nil
	}
	spec := rec.Value.Spec.WithDefaults()
	fn := rec.Value.Function
	tracker := r.trackerLocked(fn)
	prev, resumed := r.scales[name]
	mem, kept := r.keptMemoryLocked(name, fn)
	now := r.now()
	rs := &revState{
		name: name, function: fn, namespace: namespaceOf(fn), spec: spec, tracker: tracker,
		demand: demandOf(rec.Value, spec),
		scaler: NewScaler(spec, tracker, r.policy, Start{
			At: now, Ready: r.readyN[name], Desired: prev.Value.Desired, Resumed: resumed, Memory: mem,
		}),
	}
	if sc, ok := r.scales[name]; ok {
		rs.written = sc.Value
	}
	if kept {
		rs.keptMark, rs.keptAt = r.keptMarkLocked(rs), now
	}
	r.revs[name] = rs
	return rs
}

func demandOf(rec store.Revision, spec api.FunctionSpec) Demand {
	mem, err := api.ParseBytes(spec.Resources.Memory)
	if err != nil {
		mem = 0 // validated on the way in; a bad one must not stop scaling
	}
	return Demand{
		Function: rec.Function, Revision: rec.Name, Image: spec.Image,
		CPU: spec.Resources.CPU, Memory: mem,
	}
}

func (r *Runner) demandLocked(revision string) (Demand, bool) {
	if rs := r.revs[revision]; rs != nil {
		return rs.demand, true
	}
	rec, ok := r.records[revision]
	if !ok {
		return Demand{}, false
	}
	return demandOf(rec.Value, rec.Value.Spec.WithDefaults()), true
}

func (r *Runner) dropLocked(name string) {
	rs := r.revs[name]
	delete(r.revs, name)
	if rs == nil {
		return
	}
	r.m.forget(rs.function, name)
	for other, o := range r.revs {
		if o.function == rs.function && other != name {
			return
		}
	}
	delete(r.fns, rs.function)
}

// Tick is one pass of the control loop: it reads each function's queue
// depth (Deps.Queue, once), then decides for every known revision, in name
// order, and writes what changed. Run calls it every
// cfg.Tick; tests call it directly. Before the caches have listed it
// decides nothing. A revision whose step fails is logged and skipped; the
// failures are returned joined.
func (r *Runner) Tick(ctx context.Context) error {
	if r.writer() == nil {
		return nil
	}
	r.readDepths(ctx)
	r.mu.Lock()
	names := make([]string, 0, len(r.records))
	for name := range r.records {
		names = append(names, name)
	}
	r.mu.Unlock()
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		if ctx.Err() != nil {
			return errors.Join(append(errs, ctx.Err())...)
		}
		err := r.step(ctx, name, false)
		if err == nil || errors.Is(err, ErrUnknownRevision) || ctx.Err() != nil {
			continue
		}
		r.log.Warn("autoscaling step failed", "revision", name, "err", err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// step decides for one revision and writes the outcome. When its
// namespace's quota holds it below its share because other revisions of
// the namespace hold more than theirs, those come down at once, on the
// decisions they last made, and it takes its share in the same step rather
// than a tick later.
func (r *Runner) step(ctx context.Context, name string, poked bool) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	if r.writer() == nil {
		return nil // the leader decides
	}
	over, err := r.stepLocked(ctx, name, poked, false)
	if err != nil || len(over) == 0 {
		return err
	}
	var errs []error
	for _, other := range over {
		if _, err := r.stepLocked(ctx, other, false, true); err != nil && !errors.Is(err, ErrUnknownRevision) {
			errs = append(errs, err)
		}
	}
	if _, err := r.stepLocked(ctx, name, false, true); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stepLocked is one decision and its write, under writeMu; reuse decides
// on the revision's last Scaler result instead of running its Scaler
// again (a re-clip). A write conflict refreshes the keys from the store
// and tries once more. It returns the revisions the quota says must scale
// down first (clip.over).
func (r *Runner) stepLocked(ctx context.Context, name string, poked, reuse bool) ([]string, error) {
	trigger := "tick"
	switch {
	case poked:
		trigger = "activate"
	case reuse:
		trigger = "quota"
	}
	for attempt := 0; ; attempt++ {
		ops, commit, over, err := r.decide(name, poked && attempt == 0, reuse)
		if err != nil {
			return nil, err
		}
		if len(ops) == 0 {
			r.m.decisions.WithLabelValues(trigger, "unchanged").Inc()
			return over, nil
		}
		w := r.writer()
		if w == nil {
			return nil, nil
		}
		wctx, cancel := context.WithTimeout(ctx, r.cfg.WriteTimeout)
		rev, err := w.Txn(wctx, ops...)
		cancel()
		switch {
		case err == nil:
			r.m.decisions.WithLabelValues(trigger, "written").Inc()
			commit(rev)
			return over, nil
		case errors.Is(err, store.ErrConflict) && attempt == 0:
			r.m.decisions.WithLabelValues(trigger, "conflict").Inc()
			if err := r.refresh(ctx, name); err != nil {
				return nil, err
			}
		default:
			r.m.decisions.WithLabelValues(trigger, "error").Inc()
			return nil, fmt.Errorf("write scale of %s: %w", name, err)
		}
	}
}

// decide runs the revision's Scaler (or, with reuse, takes its last
// result), clips the count to the namespace's quota, places the replicas
// and returns the store ops that record the outcome, with a commit func
// that updates the cached versions once they are written, and the
// revisions the quota says must scale down first. No ops means nothing
// changed.
func (r *Runner) decide(name string, poked, reuse bool) ([]store.Op, func(rev int64), []string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := r.stateLocked(name)
	if rs == nil {
		return nil, nil, nil, fmt.Errorf("decide %q: %w", name, ErrUnknownRevision)
	}
	now := r.now()
	res := rs.last
	if !reuse || !rs.scaled {
		res = r.scaleLocked(rs, now, poked)
	}
	c := r.clipLocked(rs, res.Decision.Desired)
	wanted := res.Decision.Desired
	if c.granted < wanted {
		res.Decision.Desired, res.Decision.Reason = c.granted, ReasonQuota
		if !reuse {
			r.m.quotaClipped.WithLabelValues(rs.namespace).Inc()
		}
	}
	pl, current := r.placeLocked(rs, res, now)
	r.m.observe(rs, res, r.readyN[name], pl)

	w := writes{name: name, at: now}
	w.assignments(pl, current)
	r.scaleWriteLocked(&w, rs, res, wanted, c.reason, now)
	r.keepAliveWriteLocked(&w, rs, now)
	if len(w.ops) == 0 {
		return nil, nil, c.over, nil
	}
	rec := r.records[name]
	ops := append([]store.Op{store.Check(rec.Key, rec.Version)}, w.ops...)
	return ops, func(rev int64) { r.commit(w, rev) }, c.over, nil
}

// scaleLocked is decide's first phase: the revision's Scaler sizes it.
func (r *Runner) scaleLocked(rs *revState, now time.Time, poked bool) Result {
	if poked {
		rs.scaler.Poke(now)
	}
	rs.scaler.SetRouted(r.routedLocked(rs))
	rs.scaler.SetQueued(r.queuedLocked(rs))
	res := rs.scaler.Scale(now, r.readyN[rs.name])
	rs.last, rs.scaled = res, true
	return res
}

// placeLocked is decide's second phase: where the revision's replicas and
// pre-created tasks go, given everyone else's allocation. It also returns
// the revision's current assignments by node.
func (r *Runner) placeLocked(rs *revState, res Result, now time.Time) (PlacementResult, map[string]store.Versioned[store.Assignment]) {
	current := map[string]store.Assignment{}
	currentVer := map[string]store.Versioned[store.Assignment]{}
	others := map[string]Allocation{}
	// r.alloc has a key for every node that holds an assignment, so this
	// revision's are found by key, not by walking every assignment.
	for node, al := range r.alloc {
		others[node] = al
		a, ok := r.assigns[store.AssignmentKey(node, rs.name)]
		if !ok {
			continue
		}
		current[node] = a.Value
		currentVer[node] = a
		others[node] = others[node].Add(rs.demand, -a.Value.Replicas, -a.Value.PreCreated)
	}
	d := rs.demand
	d.Replicas, d.PreCreated = res.Decision.Desired, res.PreCreated
	pl := Place(r.cfg.Placement, now, r.placementNodesLocked(now), others, current, d)
	rs.lastPlacement = pl
	return pl, currentVer
}

// writes is what one decision puts in the store (ops) and what the runner
// caches once the transaction has landed.
type writes struct {
	name    string
	at      time.Time
	ops     []store.Op
	assigns []assignWrite
	scale   *store.Scale // nil: the scale record is not written
	// kept is the keep-alive record, when it is written, from keptMark.
	kept     *store.KeepAlive
	keptMark keptMark
}

// assignWrite is one assignment put or deleted.
type assignWrite struct {
	key string
	a   store.Assignment
	del bool
}

// assignments is decide's third phase: the ops that turn the current
// assignments into the placement's, by compare-and-swap on each.
func (w *writes) assignments(pl PlacementResult, current map[string]store.Versioned[store.Assignment]) {
	for _, node := range slices.Sorted(maps.Keys(pl.Assignments)) {
		a := pl.Assignments[node]
		cur, exists := current[node]
		key := store.AssignmentKey(node, w.name)
		switch {
		case a.Replicas == 0 && a.PreCreated == 0:
			if exists {
				w.ops = append(w.ops, store.Delete(key, cur.Version))
				w.assigns = append(w.assigns, assignWrite{key: key, del: true})
			}
		case !exists || cur.Value != a:
			version := store.MustNotExist
			if exists {
				version = cur.Version
			}
			w.ops = append(w.ops, store.PutJSON(key, a, version))
			w.assigns = append(w.assigns, assignWrite{key: key, a: a})
		}
	}
}

// scaleWriteLocked is decide's last phase: the scale record, written at
// once when the count, panic flag, pre-warm request or quota clip changed,
// and at most every StatusRefresh when only its figures did. wanted and
// clipped are the decider's count and why the quota cut it to res's;
// clipped is "" when it did not.
func (r *Runner) scaleWriteLocked(w *writes, rs *revState, res Result, wanted int, clipped string, now time.Time) {
	scale := store.Scale{
		Revision: rs.name, Function: rs.function, Desired: res.Decision.Desired, Panic: res.Decision.Panic,
		Observed: res.Observation.Stable, KeepWarmUntil: res.KeepWarmUntil, PreWarm: res.PreCreated > 0,
		UpdatedAt: now,
	}
	if clipped != "" {
		scale.Wanted, scale.Clipped = wanted, clipped
	}
	prev, hadScale := r.scales[rs.name]
	changed := !hadScale || prev.Value.Desired != scale.Desired || prev.Value.Panic != scale.Panic || prev.Value.PreWarm != scale.PreWarm ||
		prev.Value.Wanted != scale.Wanted || prev.Value.Clipped != scale.Clipped
	refresh := now.Sub(rs.writtenAt) >= r.cfg.StatusRefresh &&
		(prev.Value.Observed != scale.Observed || !prev.Value.KeepWarmUntil.Equal(scale.KeepWarmUntil))
	if !changed && !refresh {
		return
	}
	version := store.MustNotExist
	if hadScale {
		version = prev.Version
	}
	w.ops = append(w.ops, store.PutJSON(store.ScaleKey(rs.name), scale, version))
	w.scale = &scale
}

// commit caches what a decision wrote, at the store revision rev.
func (r *Runner) commit(w writes, rev int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range w.assigns {
		if p.del {
			delete(r.assigns, p.key)
		} else {
			r.assigns[p.key] = store.Versioned[store.Assignment]{Value: p.a, Key: p.key, Version: rev}
		}
	}
	r.recomputeAllocLocked()
	cur := r.revs[w.name]
	if w.scale != nil {
		r.scales[w.name] = store.Versioned[store.Scale]{Value: *w.scale, Key: store.ScaleKey(w.name), Version: rev}
		if cur != nil {
			cur.written, cur.writtenAt = *w.scale, w.at
		}
	}
	if w.kept != nil {
		r.kept[w.name] = store.Versioned[store.KeepAlive]{Value: *w.kept, Key: store.KeepAliveKey(w.name), Version: rev}
		if cur != nil {
			cur.keptMark, cur.keptAt = w.keptMark, w.at
		}
	}
}

// refresh re-reads a revision's keys after a write conflict: the revision
// itself (deleted means stop), its scale, keep-alive record and assignments.
func (r *Runner) refresh(ctx context.Context, name string) error {
	r.mu.Lock()
	rec, ok := r.records[name]
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("refresh %q: %w", name, ErrUnknownRevision)
	}
	kv, err := r.deps.Store.Get(ctx, rec.Key)
	if errors.Is(err, store.ErrNotFound) {
		r.mu.Lock()
		delete(r.records, name)
		r.byNamespace = nil
		r.dropLocked(name)
		r.mu.Unlock()
		return fmt.Errorf("refresh %q: %w", name, ErrUnknownRevision)
	}
	if err != nil {
		return fmt.Errorf("refresh %q: %w", name, err)
	}
	scale, scaleVer, scaleErr := store.GetJSON[store.Scale](ctx, r.deps.Store, store.ScaleKey(name))
	if scaleErr != nil && !errors.Is(scaleErr, store.ErrNotFound) {
		return fmt.Errorf("refresh %q: %w", name, scaleErr)
	}
	kept, keptVer, keptErr := store.GetJSON[store.KeepAlive](ctx, r.deps.Store, store.KeepAliveKey(name))
	if keptErr != nil && !errors.Is(keptErr, store.ErrNotFound) {
		return fmt.Errorf("refresh %q: %w", name, keptErr)
	}
	all, _, err := store.ListJSON[store.Assignment](ctx, r.deps.Store, store.PrefixAssignments)
	if err != nil {
		return fmt.Errorf("refresh %q: %w", name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec.Version = kv.Version
	r.records[name] = rec
	if scaleErr == nil {
		r.scales[name] = store.Versioned[store.Scale]{Value: scale, Key: store.ScaleKey(name), Version: scaleVer}
	} else {
		delete(r.scales, name)
	}
	if keptErr == nil {
		r.kept[name] = store.Versioned[store.KeepAlive]{Value: kept, Key: store.KeepAliveKey(name), Version: keptVer}
	} else {
		delete(r.kept, name)
	}
	for key, a := range r.assigns {
		if a.Value.Revision == name {
			delete(r.assigns, key)
		}
	}
	for _, a := range all {
		if a.Value.Revision == name {
			r.assigns[a.Key] = store.Versioned[store.Assignment]{Value: a.Value, Key: a.Key, Version: a.Version}
		}
	}
	r.recomputeAllocLocked()
	return nil
}
