package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/exchange"
	"github.com/ebbrun/ebb/internal/fastconn"
	"github.com/ebbrun/ebb/internal/h2listen"
	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/internal/replicaset"
	"github.com/ebbrun/ebb/internal/revstats"
	"github.com/ebbrun/ebb/store"
)

// Activator serves a request for which no replica had free capacity. It
// returns once it has put the response (or the error) in ctx. The activator
// package implements it, in the same process.
type Activator interface {
	Serve(ctx *fasthttp.RequestCtx, function, revision string, deadline time.Time)
}

// StatsSink receives per-revision load reports; the autoscaler implements
// it in process and over HTTP.
type StatsSink interface {
	Report(stats []api.RevisionStat)
}

// Deps are the Router's collaborators.
type Deps struct {
	// Store is where routes and endpoints come from. Required.
	Store store.Store
	// Functions and Revisions are the process's caches of
	// store.PrefixFunctions and store.PrefixRevisions, which the caller
	// runs; when nil the router opens its own over Store and runs it.
	Functions *store.Cache[store.Function]
	Revisions *store.Cache[store.Revision]
	// Replicas tracks replica capacity. Share one with an in-process
	// activator so hard limits hold across both; when nil the router makes
	// its own (with a transport from Config.Proxy) and runs it.
	Replicas *replicaset.Registry
	// Activator takes requests that find no free replica; when nil they get
	// a 503.
	Activator Activator
	// Stats receives the router's load reports; optional.
	Stats StatsSink
	// Registerer gets the router's metrics; optional.
	Registerer prometheus.Registerer
	// Logger; optional.
	Logger *slog.Logger
	// Listener, when set, is served instead of listening on Config.Addr.
	Listener net.Listener
	// Async queues requests that ask for asynchronous invocation
	// (Ebb-Invoke: async); when nil they get a 501.
	Async Enqueuer
	// Domains is the process's cache of store.PrefixDomains, the custom
	// domain mappings; when nil the router opens its own.
	Domains *store.Cache[store.Domain]
	// TLS, when set, has the router terminate TLS too (see tls.go).
	TLS *TLS
	// AccessLog, when set, gets one record per routed request; Tracer,
	// when set, its spans (see access.go). With neither, requests are
	// neither timed nor traced.
	AccessLog AccessLogger
	Tracer    SpanExporter
}

// Router is the data-plane ingress. Create it with New and start it with Run.
type Router struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	reps     *replicaset.Registry
	ownReps  bool
	recorder *revstats.Recorder
	metrics  *metrics
	server   *fasthttp.Server
	retry    exchange.Policy
	h2       *h2 // the HTTP/2 side, http2.go

	table atomic.Pointer[table]
	ready chan struct{}
	dirty chan struct{} // one slot: a rebuild is wanted

	// fns and revs are the routes' sources; ownCaches run those the router
	// opened itself.
	fns       *store.Cache[store.Function]
	revs      *store.Cache[store.Revision]
	doms      *store.Cache[store.Domain]
	ownCaches []func(context.Context) error

	// edge terminates TLS; nil when the router does not.
	edge *edge

	// mu guards the rebuild state below.
	mu     sync.Mutex
	states map[string]*revState
}

// revState is the live state of one routed revision. It outlives table
// snapshots: a new table reuses it, so counts survive route changes.
type revState struct {
	name     string
	function string
	timeout  time.Duration
	h2c      bool // replicas speak HTTP/2 without TLS only
	set      *replicaset.Set
	stats    *revstats.Counter
	codes    revstats.Codes
	latency  *lazyObserver
	cookie   string
	// acct is the above as the shared exchange accounts to it.
	acct exchange.Revision
}

// New builds a Router; it does nothing until Run.
func New(cfg Config, deps Deps) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("router: Deps.Store is required")
	}
	cfg = cfg.withDefaults()
	nofile := openFileLimit()
	if conns := maxConns(cfg.MaxConns, nofile); conns != cfg.MaxConns {
		if cfg.MaxConns != 0 && deps.Logger != nil {
			deps.Logger.Warn("lowering the router's connection cap to what the open-file limit allows",
				"configured", cfg.MaxConns, "cap", conns, "open_file_limit", nofile)
		}
		cfg.MaxConns = conns
	}
	r := &Router{
		cfg:    cfg,
		deps:   deps,
		log:    deps.Logger,
		reps:   deps.Replicas,
		ready:  make(chan struct{}),
		dirty:  make(chan struct{}, 1),
		fns:    deps.Functions,
		revs:   deps.Revisions,
		doms:   deps.Domains,
		states: map[string]*revState{},
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.fns == nil {
		r.fns = store.NewCache(deps.Store, store.PrefixFunctions, store.CacheConfig[store.Function]{OnUndecodable: r.undecodable})
		r.ownCaches = append(r.ownCaches, r.fns.Run)
	}
	if r.revs == nil {
		r.revs = store.NewCache(deps.Store, store.PrefixRevisions, store.CacheConfig[store.Revision]{OnUndecodable: r.undecodable})
		r.ownCaches = append(r.ownCaches, r.revs.Run)
	}
	if r.doms == nil {
		r.doms = store.NewCache(deps.Store, store.PrefixDomains, store.CacheConfig[store.Domain]{OnUndecodable: r.undecodable})
		r.ownCaches = append(r.ownCaches, r.doms.Run)
	}
	if deps.TLS != nil {
		var err error
		if r.edge, err = newEdge(cfg, deps.TLS, r.ServeHTTP2); err != nil {
			return nil, err
		}
	}
	if r.reps == nil {
		reps, err := replicaset.Open(deps.Store, cfg.Proxy, r.log)
		if err != nil {
			return nil, fmt.Errorf("router: %w", err)
		}
		r.reps = reps
		r.ownReps = true
	}
	var err error
	r.recorder, err = revstats.NewRecorder(revstats.Config{
		Reporter:       cfg.Reporter,
		SampleInterval: cfg.SampleInterval,
		ReportInterval: cfg.StatsInterval,
	})
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if r.metrics, err = newMetrics(reg, r); err != nil {
		return nil, fmt.Errorf("router: register metrics: %w", err)
	}
	r.retry = exchange.Policy{MaxRetries: cfg.MaxRetries, Retried: r.metrics.retries}
	if err := r.initHTTP2(reg); err != nil {
		return nil, fmt.Errorf("router: http2: %w", err)
	}
	r.table.Store(&table{hosts: map[string]*route{}, superseded: make(chan struct{})})
	r.server = &fasthttp.Server{
		Handler:                      r.handle,
		Name:                         "ebb",
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		NoDefaultDate:                true,
		ReadTimeout:                  cfg.ReadHeaderTimeout,
		IdleTimeout:                  cfg.IdleTimeout,
		ReadBufferSize:               cfg.MaxHeaderBytes,
		WriteBufferSize:              16 << 10,
		Concurrency:                  cfg.MaxConns,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
		Logger:                       fasthttpLogger{r.log},
	}
	return r, nil
}

// Ready reports whether the first listing of routes has been loaded.
func (r *Router) Ready() bool {
	select {
	case <-r.ready:
		return true
	default:
		return false
	}
}

// Run serves until ctx ends, then stops accepting, lets requests in flight
// finish for a few seconds and returns.
func (r *Router) Run(ctx context.Context) error {
	ln := r.deps.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", r.cfg.Addr); err != nil {
			return fmt.Errorf("router: listen: %w", err)
		}
	}
	ln = newListener(fastconn.Listener(ln), r.cfg.MaxConnsPerIP, r.log, r.metrics.acceptShortages, r.metrics.refusedPerIP)
	// Connections that open with the HTTP/2 preface go to ServeHTTP2;
	// fasthttp gets the rest.
	ln = h2listen.New(ln, r.ServeHTTP2)
	r.log.Info("serving", "addr", ln.Addr().String(), "max_conns", r.cfg.MaxConns, "max_conns_per_ip", r.cfg.MaxConnsPerIP)
	g, gctx := errgroup.WithContext(ctx)
	if r.ownReps {
		g.Go(func() error { return r.reps.Run(gctx) })
	}
	for _, run := range r.ownCaches {
		g.Go(func() error { return run(gctx) })
	}
	g.Go(func() error { return follow(gctx, r.fns, r.wantRebuild) })
	g.Go(func() error { return follow(gctx, r.revs, r.wantRebuild) })
	g.Go(func() error { return follow(gctx, r.doms, r.wantRebuild) })
	if r.edge != nil {
		tln := r.edge.ln
		if tln == nil {
			var err error
			if tln, err = net.Listen("tcp", r.edge.addr); err != nil {
				return fmt.Errorf("router: listen TLS: %w", err)
			}
		}
		g.Go(func() error { return r.serveTLS(gctx, tln) })
	}
	g.Go(func() error { r.rebuildLoop(gctx); return nil })
	g.Go(func() error { return r.recorder.Run(gctx, sinkOrNil(r.deps.Stats)) })
	g.Go(func() error {
		if err := r.server.Serve(ln); err != nil && gctx.Err() == nil {
			return fmt.Errorf("router: serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.server.ShutdownWithContext(sctx)
		r.shutdownHTTP2(sctx)
		return nil
	})
	err := g.Wait()
	r.mu.Lock()
	for _, st := range r.states {
		r.dropState(st)
	}
	r.states = map[string]*revState{}
	r.mu.Unlock()
	return err
}

func sinkOrNil(s StatsSink) revstats.Sink {
	if s == nil {
		return nil
	}
	return s
}

// follow asks for a rebuild on every change to c: a rebuild reads the
// caches' snapshots, so it needs no more than the news.
func follow[T any](ctx context.Context, c *store.Cache[T], changed func()) error {
	err := c.Follow(ctx, func(store.Update[T]) { changed() })
	if store.FollowEnded(ctx, err) {
		return nil
	}
	return fmt.Errorf("router: follow %s: %w", c.Prefix(), err)
}

func (r *Router) wantRebuild() {
	select {
	case r.dirty <- struct{}{}:
	default: // one is already pending, and it will see this change too
	}
}

// rebuildDuty bounds the share of a core that route-table rebuilds take:
// after a rebuild that took d, the next waits (rebuildDuty-1)·d. A rebuild
// costs O(functions), about 19 ms and 14 MB of garbage at 10,000, so a
// storm of changes (thousands of functions created at once) shares
// rebuilds instead of queueing one per change; with a few hundred
// functions a rebuild takes well under a millisecond and every change is
// applied at once, as a deploy that is curled right away expects.
const rebuildDuty = 5

// rebuildLoop rebuilds the route table whenever the caches changed,
// paced by rebuildDuty, until ctx ends.
func (r *Router) rebuildLoop(ctx context.Context) {
	var next time.Time // no rebuild before this
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.dirty:
		}
		if wait := time.Until(next); wait > 0 {
			pause := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				pause.Stop()
				return
			case <-pause.C:
			}
		}
		start := time.Now()
		r.mu.Lock()
		built := r.rebuildLocked()
		r.mu.Unlock()
		took := time.Since(start)
		next = start.Add(rebuildDuty * took)
		if built {
			r.metrics.rebuilds.Inc()
			r.metrics.rebuildSeconds.Observe(took.Seconds())
		}
	}
}

func listed(ready <-chan struct{}) bool {
	select {
	case <-ready:
		return true
	default:
		return false
	}
}

func (r *Router) undecodable(key string, err error) {
	r.log.Warn("skipping undecodable record", "key", key, "err", err)
}

// rebuildLocked builds and swaps in a new route table from the caches. It
// reports false while either cache has yet to list.
func (r *Router) rebuildLocked() bool {
	if !listed(r.fns.Ready()) || !listed(r.revs.Ready()) || !listed(r.doms.Ready()) {
		return false
	}
	fnSnap, revSnap := r.fns.Snapshot(), r.revs.Snapshot()
	fns := make([]store.Function, 0, fnSnap.Len())
	for c := range fnSnap.All() {
		fns = append(fns, c.Value)
	}
	revs := make(map[string]store.Revision, revSnap.Len())
	for c := range revSnap.All() {
		revs[c.Value.Name] = c.Value
	}
	hosts, used := plan(r.cfg.Domain, fns, revs)

	states := make(map[string]*revState, len(used))
	for name, spec := range used {
		st := r.states[name]
		if st == nil || st.function != spec.Function || st.timeout != spec.Timeout || st.h2c != spec.H2C {
			if st != nil {
				r.dropState(st)
			}
			st = r.newState(name, spec)
		}
		states[name] = st
	}
	for name, st := range r.states {
		if states[name] != st {
			if _, kept := states[name]; !kept {
				r.dropState(st)
			}
		}
	}
	r.states = states

	t := &table{
		hosts:      make(map[string]*route, len(hosts)),
		functions:  make(map[string]*route, len(fns)),
		revs:       make([]*revState, 0, len(states)),
		fnSnap:     fnSnap,
		revSnap:    revSnap,
		domSnap:    r.doms.Snapshot(),
		superseded: make(chan struct{}),
	}
	for host, rs := range hosts {
		rt := &route{function: rs.Function, targets: make([]target, 0, len(rs.Targets))}
		for _, ts := range rs.Targets {
			rt.total += uint32(ts.Percent)
			rt.targets = append(rt.targets, target{cum: rt.total, rev: states[ts.Revision]})
		}
		rt.matches = newMatches(rs.Matches, states)
		for tag, rev := range rs.Tags {
			if rt.tags == nil {
				rt.tags = make(map[string]*revState, len(rs.Tags))
			}
			rt.tags[tag] = states[rev]
		}
		t.hosts[host] = rt
		if host == rs.Function+"."+r.cfg.Domain {
			t.functions[rs.Function] = rt
		}
	}
	mapDomains(t, r.cfg.Domain)
	for _, st := range states {
		t.revs = append(t.revs, st)
	}
	close(r.table.Swap(t).superseded)
	select {
	case <-r.ready:
	default:
		close(r.ready)
	}
	return true
}

func (r *Router) newState(name string, spec revSpec) *revState {
	st := &revState{
		name:     name,
		function: spec.Function,
		timeout:  spec.Timeout,
		h2c:      spec.H2C,
		set:      r.reps.Retain(name),
		stats:    revstats.NewOutcomeCounter(name),
		latency:  &lazyObserver{vec: r.metrics.duration, function: spec.Function, revision: name},
	}
	st.acct = exchange.Revision{Set: st.set, Stats: st.stats, Codes: &st.codes, Latency: st.latency}
	if r.cfg.StickyCookie != "" {
		st.cookie = r.cfg.StickyCookie + "=" + name + "; Path=/; HttpOnly; SameSite=Lax"
	}
	r.recorder.Track(st.stats)
	return st
}

func (r *Router) dropState(st *revState) {
	r.recorder.Untrack(st.stats)
	r.reps.Drop(st.set)
	r.metrics.forget(st)
}

// handle is the request path.
func (r *Router) handle(ctx *fasthttp.RequestCtx) {
	if refuseFraming(ctx) {
		return
	}
	if r.edge != nil && r.edge.intercept(ctx) {
		return
	}
	if ctx.Request.Header.ConnectionUpgrade() && r.upgradeH2C(ctx) {
		return
	}
	rt := r.lookup(ctx.Request.Header.Host())
	if rt == nil {
		r.metrics.unknownHost.Inc()
		exchange.WriteError(ctx, fasthttp.StatusNotFound, "ebb: no function is served at this host\n")
		return
	}
	if r.edge != nil && r.edge.redirect(ctx, rt) {
		return
	}
	r.serve(ctx, rt)
	if r.edge != nil {
		r.edge.secure(ctx)
	}
}

// staleWait bounds how long a request for a host the table does not know
// waits for a table built from newer records.
const staleWait = time.Second

// lookup finds host's route. A host the table does not know, while the
// caches hold records the table was not built from, waits for the next
// table (at most staleWait): a function created a moment ago, whose PUT
// has already been answered, is served rather than refused with 404. A
// host that is unknown with nothing pending is refused at once.
func (r *Router) lookup(host []byte) *route {
	t := r.table.Load()
	if rt := t.lookup(host); rt != nil {
		return rt
	}
	var wait *time.Timer
	for t.fnSnap != r.fns.Snapshot() || t.revSnap != r.revs.Snapshot() || t.domSnap != r.doms.Snapshot() {
		if wait == nil {
			wait = time.NewTimer(staleWait)
			defer wait.Stop()
		}
		select {
		case <-t.superseded:
		case <-wait.C:
			return nil
		}
		t = r.table.Load()
		if rt := t.lookup(host); rt != nil {
			return rt
		}
	}
	return nil
}

// ServeFunction serves a request with function fn's traffic split, whatever
// its Host header says. It is for listeners that know the function from the
// connection rather than the request, such as the fallback listener that
// connects to a cold function VIP land on (the Host is then the VIP). It
// answers 404 when fn has no routes.
func (r *Router) ServeFunction(ctx *fasthttp.RequestCtx, fn string) {
	if refuseFraming(ctx) {
		return
	}
	rt := r.table.Load().functions[fn]
	if rt == nil {
		r.metrics.unknownHost.Inc()
		exchange.WriteError(ctx, fasthttp.StatusNotFound, "ebb: function "+fn+" has no routes\n")
		return
	}
	r.serve(ctx, rt)
}

// refuseFraming answers 400 and reports true for a request that carried
// both Content-Length and Transfer-Encoding. fasthttp accepts one (with
// Transfer-Encoding winning) and marks the connection to close; we refuse
// it outright, since a peer that read it the other way would see a
// smuggled request.
func refuseFraming(ctx *fasthttp.RequestCtx) bool {
	h := &ctx.Request.Header
	if !h.ConnectionClose() || !framingConflict(h) {
		return false
	}
	ctx.SetConnectionClose()
	exchange.WriteError(ctx, fasthttp.StatusBadRequest, "ebb: request has both Content-Length and Transfer-Encoding\n")
	return true
}

// serve sends a request to a revision of rt: a free replica, else the
// activator.
func (r *Router) serve(ctx *fasthttp.RequestCtx, rt *route) {
	if mode := ctx.Request.Header.Peek(api.HeaderInvoke); len(mode) > 0 {
		r.enqueue(ctx, rt.function, mode)
		return
	}
	rev, setCookie := r.pick(&ctx.Request.Header, rt)
	if rev.h2c {
		r.serveH1ToH2C(ctx, rev, setCookie)
		return
	}
	var obs *observation
	if r.observing() {
		// Its clock starts at the request's arrival, so routing is timed.
		obs = r.beginObservation(ctx)
	}
	deadline := ctx.Time().Add(rev.timeout)
	if rep := rev.set.TryAcquire(); rep != nil {
		if obs != nil {
			obs.routed(rep.ID)
		}
		r.forward(ctx, rev, rep, deadline)
	} else {
		if obs != nil {
			obs.routed("")
		}
		r.handoff(ctx, rev, deadline)
	}
	if setCookie {
		ctx.Response.Header.Add("Set-Cookie", rev.cookie)
	}
	if obs != nil {
		r.endObservation(ctx, obs, rev)
	}
}

// requestHeader is what picking a revision reads of a request's header:
// *fasthttp.RequestHeader for HTTP/1.1, streamHeader for an HTTP/2 stream.
// Names are given canonical (Ebb-Tag).
type requestHeader interface {
	Peek(name string) []byte
	Cookie(name string) []byte
}

func (r *Router) pick(h requestHeader, rt *route) (*revState, bool) {
	if rt.tags != nil {
		for _, name := range TagHeaders {
			if v := h.Peek(name); len(v) > 0 {
				// A tag that names no revision of the function falls
				// through to the split, as in Knative.
				if rev := rt.tags[string(v)]; rev != nil {
					return rev, false
				}
			}
		}
	}
	// Header matches come before the split, and before stickiness: a
	// request that matches always goes to its revision.
	if rev := rt.match(h); rev != nil {
		return rev, false
	}
	if len(rt.targets) == 1 {
		return rt.targets[0].rev, false
	}
	if r.cfg.StickyHeader != "" {
		if v := h.Peek(r.cfg.StickyHeader); len(v) > 0 {
			return rt.pick(v), false
		}
	}
	if r.cfg.StickyCookie != "" {
		if v := h.Cookie(r.cfg.StickyCookie); len(v) > 0 {
			if rev := rt.byName(v); rev != nil {
				return rev, false
			}
		}
		return rt.pick(nil), true
	}
	return rt.pick(nil), false
}

// forward proxies a request to rep, a replica of rev it acquired, under
// the shared retry policy.
func (r *Router) forward(ctx *fasthttp.RequestCtx, rev *revState, rep *replicaset.Replica, deadline time.Time) {
	rev.stats.Start()
	err := exchange.Forward(ctx, &rev.acct, rep, deadline, &r.retry, ctx.Time())
	if err == nil {
		return
	}
	rev.stats.End()
	if (errors.Is(err, proxy.ErrOutOfDescriptors) || errors.Is(err, proxy.ErrUnavailable)) && r.deps.Activator != nil {
		// No byte of the request reached a replica: ebbd had no file
		// descriptor left, or every replica tried refused the connection
		// (one that just crashed is still in the table for a few
		// milliseconds). The activator holds the request and tries again
		// as exchanges free descriptors or a replica answers again.
		r.handoff(ctx, rev, deadline)
		return
	}
	status := proxy.StatusFor(err)
	rev.codes.Inc(status)
	if status >= fasthttp.StatusInternalServerError {
		rev.stats.Outcomes().Failed()
	} else {
		// A request body the client broke off says nothing about the
		// revision.
		rev.stats.Outcomes().Ended(status)
	}
	r.log.Debug("proxy failed", "revision", rev.name, "status", status, "err", err)
	if status == fasthttp.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	exchange.WriteError(ctx, status, errorBody(status, rev))
}

func errorBody(status int, rev *revState) string {
	switch status {
	case fasthttp.StatusServiceUnavailable:
		return "ebb: out of file descriptors; retry later\n"
	case fasthttp.StatusGatewayTimeout:
		return "ebb: function " + rev.function + " did not answer within " + rev.timeout.String() + "\n"
	case fasthttp.StatusBadRequest:
		return "ebb: could not read the request body\n"
	default:
		return "ebb: function " + rev.function + " failed to answer\n"
	}
}

func (r *Router) handoff(ctx *fasthttp.RequestCtx, rev *revState, deadline time.Time) {
	act := r.deps.Activator
	if act == nil {
		rev.codes.Inc(fasthttp.StatusServiceUnavailable)
		rev.stats.Outcomes().Failed()
		ctx.Response.Header.Set("Retry-After", "1")
		exchange.WriteError(ctx, fasthttp.StatusServiceUnavailable, "ebb: no replica of "+rev.function+" is ready\n")
		return
	}
	cold := rev.set.Len() == 0
	r.metrics.handoffs.WithLabelValues(namespaceOf(rev.function), rev.function, rev.name).Inc()
	act.Serve(ctx, rev.function, rev.name, deadline)
	took := time.Since(ctx.Time()).Seconds()
	rev.codes.Inc(ctx.Response.StatusCode())
	// The outcome counts, its time does not: a request the activator held
	// waited for a replica to start or free up, and a canary woken from
	// zero must not be judged on its cold starts.
	rev.stats.Outcomes().Ended(ctx.Response.StatusCode())
	rev.latency.Observe(took)
	if cold {
		r.metrics.coldStarts.WithLabelValues(namespaceOf(rev.function), rev.function, rev.name).Inc()
		r.metrics.coldLatency.WithLabelValues(namespaceOf(rev.function), rev.function).Observe(took)
	}
}

// framingConflict reports whether the request carried both Content-Length
// and Transfer-Encoding, reading the header as received.
func framingConflict(h *fasthttp.RequestHeader) bool {
	var cl, te bool
	for k := range h.AllInOrder() {
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			cl = true
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			te = true
		}
	}
	return cl && te
}

// fasthttpLogger sends fasthttp's own messages (malformed requests and
// the like) to the debug log.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug("fasthttp: " + fmt.Sprintf(format, args...))
}
