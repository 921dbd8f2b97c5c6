package activator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/exchange"
	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/internal/replicaset"
	"github.com/ebbrun/ebb/internal/revstats"
	"github.com/ebbrun/ebb/internal/tracing"
	"github.com/ebbrun/ebb/store"
)

// ScaleUpper asks the autoscaler to bring a revision up now, without
// waiting for its next tick. The autoscaler implements it in process and
// over HTTP.
type ScaleUpper interface {
	Activate(ctx context.Context, revision string) error
}

// StatsSink receives per-revision load reports, buffered requests included.
type StatsSink interface {
	Report(stats []api.RevisionStat)
}

// Deps are the Activator's collaborators.
type Deps struct {
	// Store is where revision failures (and, with its own registry,
	// endpoints) come from. Required.
	Store store.Store
	// RevStatus is the process's cache of store.PrefixRevStatus, which the
	// caller runs; when nil the activator opens its own over Store and
	// runs it.
	RevStatus *store.Cache[store.RevisionNodeStatus]
	// Replicas tracks replica capacity; share the router's in process so
	// hard limits hold across both. When nil the activator makes its own.
	Replicas *replicaset.Registry
	// ScaleUpper is poked on the first buffered request. Required.
	ScaleUpper ScaleUpper
	// Stats receives load reports; optional.
	Stats StatsSink
	// Registerer gets the activator's metrics; optional.
	Registerer prometheus.Registerer
	// Logger; optional.
	Logger *slog.Logger
}

// Activator buffers requests that find no capacity. Create it with New and
// start it with Run; Serve works only while Run runs.
type Activator struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	reps     *replicaset.Registry
	ownReps  bool
	statuses *store.Cache[store.RevisionNodeStatus]
	ownStats bool // Run runs statuses
	recorder *revstats.Recorder
	metrics  *metrics
	hangups  atomic.Pointer[hangups]
	retry    exchange.Policy

	runCtx   atomic.Pointer[context.Context]
	stopping chan struct{}
	pokes    sync.WaitGroup
	// waiters pools queue places. It is the activator's own, not the
	// package's, because a Waiter holds a channel: one made inside a
	// testing/synctest bubble must not be used outside it.
	waiters sync.Pool

	mu       sync.Mutex // guards states creation and removal, and failures
	states   sync.Map   // revision → *revState
	failures map[string]*failure
}

// revState is one revision's queue bookkeeping and counters.
type revState struct {
	name, function string
	set            *replicaset.Set
	stats          *revstats.Counter
	codes          revstats.Codes
	// acct is the above as the shared exchange accounts to it.
	acct exchange.Revision

	queued   atomic.Int32
	active   atomic.Int32 // calls inside Serve; guards forgetting
	dead     atomic.Bool
	lastUsed atomic.Int64
	lastPoke atomic.Int64
	poking   atomic.Bool
	fstate   atomic.Pointer[failState]
	// poked is the latest activation: waiters learn from it that the
	// autoscaler could not be reached or could not write, and give up.
	poked atomic.Pointer[activation]
}

// activation is one poke of the autoscaler; done closes when it has
// answered, and err says how.
type activation struct {
	done chan struct{}
	err  error
}

// unstartableError ends a wait for a revision at zero whose activation
// failed: without the autoscaler's write no replica will start, so the
// request is refused at once rather than at its deadline.
type unstartableError struct{ err error }

func (e unstartableError) Error() string { return "activation failed: " + e.err.Error() }

// New builds an Activator; it does nothing until Run.
func New(cfg Config, deps Deps) (*Activator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.ScaleUpper == nil {
		return nil, errors.New("activator: Deps.Store and Deps.ScaleUpper are required")
	}
	cfg = cfg.withDefaults()
	a := &Activator{
		cfg:      cfg,
		deps:     deps,
		log:      deps.Logger,
		reps:     deps.Replicas,
		statuses: deps.RevStatus,
		stopping: make(chan struct{}),
		failures: map[string]*failure{},
	}
	a.waiters.New = func() any { return replicaset.NewWaiter() }
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.statuses == nil {
		a.statuses = store.NewCache(deps.Store, store.PrefixRevStatus, store.CacheConfig[store.RevisionNodeStatus]{
			OnUndecodable: func(key string, err error) {
				a.log.Warn("skipping undecodable revision status", "key", key, "err", err)
			},
		})
		a.ownStats = true
	}
	if a.reps == nil {
		reps, err := replicaset.Open(deps.Store, cfg.Proxy, a.log)
		if err != nil {
			return nil, fmt.Errorf("activator: %w", err)
		}
		a.reps = reps
		a.ownReps = true
	}
	var err error
	if a.recorder, err = revstats.NewRecorder(revstats.Config{
		Reporter: cfg.Reporter, SampleInterval: cfg.SampleInterval, ReportInterval: cfg.StatsInterval,
	}); err != nil {
		return nil, fmt.Errorf("activator: %w", err)
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if a.metrics, err = newMetrics(reg, a); err != nil {
		return nil, fmt.Errorf("activator: register metrics: %w", err)
	}
	a.retry = exchange.Policy{MaxRetries: cfg.MaxRetries, Retried: a.metrics.retries}
	return a, nil
}

// Run watches revision failures (and endpoints, with its own registry),
// reports stats and returns when ctx ends. Requests still waiting then get
// a 503.
func (a *Activator) Run(ctx context.Context) error {
	h, err := newHangups()
	if err != nil {
		return fmt.Errorf("activator: hang-up watcher: %w", err)
	}
	a.hangups.Store(h)
	defer h.Close()
	a.runCtx.Store(&ctx)

	g, gctx := errgroup.WithContext(ctx)
	if a.ownStats {
		g.Go(func() error { return a.statuses.Run(gctx) })
	}
	g.Go(func() error { return a.watchStatus(gctx) })
	g.Go(func() error { return a.recorder.Run(gctx, sinkOrNil(a.deps.Stats)) })
	g.Go(func() error {
		t := time.NewTicker(a.cfg.StatsInterval)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case now := <-t.C:
				a.forgetIdle(now)
			}
		}
	})
	g.Go(func() error {
		<-gctx.Done()
		close(a.stopping)
		return nil
	})
	if a.ownReps {
		// Last, so that once its registry is ready every goroutine of Run
		// exists: leak checks that snapshot "everything running now" see
		// them all.
		g.Go(func() error { return a.reps.Run(gctx) })
	}
	err = g.Wait()
	a.pokes.Wait()
	return err
}

func sinkOrNil(s StatsSink) revstats.Sink {
	if s == nil {
		return nil
	}
	return s
}

// state returns the live state of revision, counted as active; the caller
// must call rs.active.Add(-1) when done.
func (a *Activator) state(function, revision string) *revState {
	for {
		v, ok := a.states.Load(revision)
		if !ok {
			a.mu.Lock()
			if v, ok = a.states.Load(revision); !ok {
				rs := &revState{
					name:     revision,
					function: function,
					set:      a.reps.Retain(revision),
					stats:    revstats.NewCounter(revision),
				}
				rs.acct = exchange.Revision{Set: rs.set, Stats: rs.stats, Codes: &rs.codes}
				rs.fstate.Store(&failState{fail: a.failures[revision], wake: make(chan struct{})})
				a.recorder.Track(rs.stats)
				a.states.Store(revision, rs)
				v = rs
			}
			a.mu.Unlock()
		}
		rs := v.(*revState)
		rs.active.Add(1)
		if !rs.dead.Load() {
			return rs
		}
		rs.active.Add(-1)
	}
}

// forgetIdle drops revisions nobody used for IdleForget, so a fleet of
// functions at zero costs nothing here.
func (a *Activator) forgetIdle(now time.Time) {
	cutoff := now.Add(-a.cfg.IdleForget).UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.states.Range(func(k, v any) bool {
		rs := v.(*revState)
		if rs.active.Load() != 0 || rs.lastUsed.Load() > cutoff || rs.stats.InFlight() != 0 {
			return true
		}
		rs.dead.Store(true)
		if rs.active.Load() != 0 {
			rs.dead.Store(false)
			return true
		}
		a.states.Delete(k)
		a.recorder.Untrack(rs.stats)
		a.reps.Drop(rs.set)
		a.metrics.forget(rs)
		return true
	})
}

// Serve implements the router's Activator: it waits for capacity for the
// request in ctx and proxies it, or answers with the reason it could not.
func (a *Activator) Serve(ctx *fasthttp.RequestCtx, function, revision string, deadline time.Time) {
	rs := a.state(function, revision)
	defer rs.active.Add(-1)
	arrived := ctx.Time()
	rs.lastUsed.Store(arrived.UnixNano())
	rs.stats.Start()
	cold := rs.set.Len() == 0
	if h, ok := ctx.UserValue(tracing.HandoffKey).(*tracing.Handoff); ok {
		h.Used, h.Cold = true, cold
	}

	if fs := rs.fstate.Load(); fs.fail != nil && rs.set.Len() == 0 {
		a.reject(ctx, rs, "failed", fasthttp.StatusBadGateway, failedBody(rs, fs.fail))
		return
	}
	rep, ok := a.acquire(ctx, rs, deadline, cold)
	if !ok {
		return
	}
	for {
		err := a.forward(ctx, rs, rep, deadline)
		if err == nil {
			return
		}
		// No byte of the request reached a replica, so it can wait for one
		// that answers: exchanges finishing free descriptors, and a
		// replica that just crashed leaves the store within milliseconds,
		// after which acquire waits for its restart.
		pause := min(retryPause, time.Until(deadline))
		if pause <= 0 {
			if errors.Is(err, proxy.ErrOutOfDescriptors) {
				ctx.Response.Header.Set("Retry-After", "1")
				a.reject(ctx, rs, "out_of_descriptors", fasthttp.StatusServiceUnavailable, "ebb: out of file descriptors; retry later\n")
			} else {
				a.reject(ctx, rs, "unreachable", fasthttp.StatusBadGateway, "ebb: function "+rs.function+" failed to answer\n")
			}
			return
		}
		time.Sleep(pause)
		if rep, ok = a.acquire(ctx, rs, deadline, false); !ok {
			return
		}
	}
}

var (
	errDeadline   = errors.New("deadline passed while waiting for a replica")
	errClientGone = errors.New("client went away")
	errShutdown   = errors.New("activator shutting down")
)

// retryPause is how long a request that reached no replica waits before
// taking one again: ebbd had no file descriptor left, or every replica it
// tried refused the connection.
const retryPause = 20 * time.Millisecond

// acquire takes a replica with capacity for the request, queueing it when
// there is none. It reports false when the request has been answered
// instead: queue full, deadline, hang-up, a failed revision or shutdown.
func (a *Activator) acquire(ctx *fasthttp.RequestCtx, rs *revState, deadline time.Time, cold bool) (*replicaset.Replica, bool) {
	if rep := rs.set.TryAcquire(); rep != nil {
		noteAcquired(ctx, rep, time.Time{})
		return rep, true
	}
	if int(rs.queued.Add(1)) > a.cfg.MaxQueue {
		rs.queued.Add(-1)
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(a.retryAfter()))
		a.reject(ctx, rs, "queue_full", fasthttp.StatusServiceUnavailable,
			"ebb: too many requests are waiting for "+rs.function+"; retry later\n")
		return nil, false
	}
	// From now, not from the request's arrival: a request retried after
	// running out of descriptors queues again, and each wait counts once.
	queuedAt := time.Now()
	rs.stats.Buffer(1)
	rep, err := a.wait(ctx, rs, deadline)
	rs.stats.Buffer(-1)
	rs.queued.Add(-1)
	waited := time.Since(queuedAt).Seconds()
	a.metrics.queueWait.WithLabelValues(namespaceOf(rs.function), rs.function).Observe(waited)
	if err != nil {
		a.fail(ctx, rs, err, deadline)
		return nil, false
	}
	if cold {
		a.metrics.coldStart.WithLabelValues(namespaceOf(rs.function), rs.function).Observe(waited)
	}
	noteAcquired(ctx, rep, queuedAt)
	return rep, true
}

// wait queues the request and blocks until it is handed a replica, or until
// its deadline, a hang-up, a revision failure or shutdown.
func (a *Activator) wait(ctx *fasthttp.RequestCtx, rs *revState, deadline time.Time) (*replicaset.Replica, error) {
	watch := a.hangups.Load().Watch(ctx.Conn())
	defer watch.Stop()
	return a.waitGone(rs, deadline, watch.Gone())
}

// waitGone is wait for a request whose client's leaving closes gone.
func (a *Activator) waitGone(rs *revState, deadline time.Time, gone <-chan struct{}) (*replicaset.Replica, error) {
	w := a.waiters.Get().(*replicaset.Waiter)
	defer a.waiters.Put(w)
	n := rs.set.Enqueue(w)
	now := time.Now()
	if n == 1 || (rs.set.Len() == 0 && now.UnixNano()-rs.lastPoke.Load() > a.cfg.ReactivateAfter.Nanoseconds()) {
		a.poke(rs, now)
	}
	timer := time.NewTimer(deadline.Sub(now))
	defer timer.Stop()
	fs := rs.fstate.Load()
	var activated <-chan struct{}
	act := rs.poked.Load()
	if act != nil {
		activated = act.done
	}
	leave := func(err error) (*replicaset.Replica, error) {
		if r := rs.set.Cancel(w); r != nil {
			rs.set.Release(r)
		}
		return nil, err
	}
	for {
		if fs.fail != nil && rs.set.Len() == 0 {
			return leave(failedError{fs.fail})
		}
		select {
		case r := <-w.C:
			return r, nil
		case <-timer.C:
			return leave(errDeadline)
		case <-gone:
			return leave(errClientGone)
		case <-fs.wake:
			fs = rs.fstate.Load()
		case <-activated:
			activated = nil
			if act.err != nil && rs.set.Len() == 0 {
				return leave(unstartableError{act.err})
			}
		case <-a.stopping:
			return leave(errShutdown)
		}
	}
}

// poke asks the autoscaler for capacity without holding up the request.
func (a *Activator) poke(rs *revState, now time.Time) {
	if !rs.poking.CompareAndSwap(false, true) {
		return
	}
	rs.lastPoke.Store(now.UnixNano())
	act := &activation{done: make(chan struct{})}
	rs.poked.Store(act)
	parent := context.Background()
	if p := a.runCtx.Load(); p != nil {
		parent = *p
	}
	a.pokes.Add(1)
	go func() {
		defer a.pokes.Done()
		defer rs.poking.Store(false)
		ctx, cancel := context.WithTimeout(parent, a.cfg.ActivateTimeout)
		defer cancel()
		err := a.deps.ScaleUpper.Activate(ctx, rs.name)
		act.err = err
		close(act.done)
		result := "ok"
		if err != nil {
			result = "error"
			a.log.Warn("activation failed", "revision", rs.name, "err", err)
		}
		a.metrics.activations.WithLabelValues(namespaceOf(rs.function), rs.function, rs.name, result).Inc()
	}()
}

func (a *Activator) fail(ctx *fasthttp.RequestCtx, rs *revState, err error, deadline time.Time) {
	r := a.refusal(rs, err, deadline.Sub(ctx.Time()))
	if r.Reason == "client_gone" {
		// Nobody is listening; close rather than write into the void.
		ctx.SetConnectionClose()
	}
	if r.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(r.RetryAfter))
	}
	a.reject(ctx, rs, r.Reason, r.Status, r.Msg)
}

// refusal says how to answer a request whose wait for a replica ended in
// err, after waiting for timeout: the one mapping for HTTP/1.1 requests
// (fail) and HTTP/2 streams (Acquire).
func (a *Activator) refusal(rs *revState, err error, timeout time.Duration) *Refusal {
	var fe failedError
	switch {
	case errors.As(err, &fe):
		return &Refusal{Status: fasthttp.StatusBadGateway, Reason: "failed", Msg: failedBody(rs, fe.f)}
	case errors.Is(err, errDeadline):
		return &Refusal{Status: fasthttp.StatusGatewayTimeout, Reason: "deadline",
			Msg: "ebb: no replica of " + rs.function + " became ready within " + timeout.Round(time.Millisecond).String() + "\n"}
	case errors.As(err, new(unstartableError)):
		return &Refusal{Status: fasthttp.StatusServiceUnavailable, Reason: "unstartable", RetryAfter: a.retryAfter(),
			Msg: "ebb: function " + rs.function + " cannot be started now (the control plane or its store is unreachable); retry later\n"}
	case errors.Is(err, errClientGone):
		return &Refusal{Status: 499, Reason: "client_gone"}
	default:
		return &Refusal{Status: fasthttp.StatusServiceUnavailable, Reason: "shutdown", RetryAfter: 1,
			Msg: "ebb: activator is shutting down\n"}
	}
}

// retryAfter is Config.RetryAfter in whole seconds, rounded up.
func (a *Activator) retryAfter() int {
	return int((a.cfg.RetryAfter + time.Second - 1) / time.Second)
}

func (a *Activator) reject(ctx *fasthttp.RequestCtx, rs *revState, reason string, status int, body string) {
	rs.stats.End()
	rs.codes.Inc(status)
	a.metrics.rejected.WithLabelValues(reason).Inc()
	exchange.WriteError(ctx, status, body)
}

// forward sends the request to rep under the shared retry policy and
// answers the client, or, when no byte of the request reached a replica,
// returns why with the client not yet answered and the replica released:
// proxy.ErrOutOfDescriptors (ebbd had no file descriptor left) or
// proxy.ErrUnavailable (every replica tried refused it). The caller may
// try again.
func (a *Activator) forward(ctx *fasthttp.RequestCtx, rs *revState, rep *replicaset.Replica, deadline time.Time) error {
	err := exchange.Forward(ctx, &rs.acct, rep, deadline, &a.retry, ctx.Time())
	switch {
	case err == nil:
		return nil
	case errors.Is(err, proxy.ErrOutOfDescriptors):
		a.metrics.outOfDescriptors.Inc()
		return err
	case errors.Is(err, proxy.ErrUnavailable):
		a.metrics.unreachable.Inc()
		return err
	}
	status := proxy.StatusFor(err)
	a.log.Debug("proxy failed", "revision", rs.name, "status", status, "err", err)
	body := "ebb: function " + rs.function + " failed to answer\n"
	if status == fasthttp.StatusGatewayTimeout {
		body = "ebb: function " + rs.function + " did not answer in time\n"
	}
	a.reject(ctx, rs, "upstream", status, body)
	return nil
}
