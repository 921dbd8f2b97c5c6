package router

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/goleak"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

func TestMain(m *testing.M) {
	// fasthttp starts its Date refresher, which never ends, with the first
	// response header it writes. Start it here, outside every synctest
	// bubble, so that no bubble owns a goroutine that outlives it.
	var h fasthttp.ResponseHeader
	_ = h.AppendBytes(nil)
	goleak.VerifyTestMain(m,
		// fasthttp's worker pool cleaner sleeps up to 10s before it sees Stop,
		// and its date updater lives for the process.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// The test client's pool cleaners poll on a timer too.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}

// env is a router on an in-memory listener, fed by a real embedded store.
type env struct {
	t      testing.TB
	st     store.Store
	r      *Router
	ln     *fasthttputil.InmemoryListener
	client *fasthttp.Client
	reg    *prometheus.Registry

	// In a bubble (newBubbleEnv), replicas are in-memory listeners too,
	// by address.
	bubble   bool
	mu       sync.Mutex
	backends map[string]*fasthttputil.InmemoryListener
}

func newEnv(t testing.TB, cfg Config, deps Deps) *env {
	t.Helper()
	return newEnvWith(t, cfg, deps, envOptions{})
}

// envOptions are what some tests change about an env.
type envOptions struct {
	// bubble makes the env fit for a testing/synctest bubble: replicas
	// come from startMemBackend, reached over in-memory pipes, and the
	// cleanup lets fasthttp's sweepers, which sleep 10s between rounds,
	// see their stop before the bubble ends (which in a bubble takes no
	// time).
	bubble bool
}

// newBubbleEnv is an env for a test that runs in a synctest bubble, so
// that it drives time rather than waiting for it.
func newBubbleEnv(t *testing.T, cfg Config, deps Deps) *env {
	t.Helper()
	return newEnvWith(t, cfg, deps, envOptions{bubble: true})
}

func newEnvWith(t testing.TB, cfg Config, deps Deps, opts envOptions) *env {
	t.Helper()
	e := &env{t: t, bubble: opts.bubble, backends: map[string]*fasthttputil.InmemoryListener{}}
	if opts.bubble {
		cfg.Proxy.Dial = e.dialBackend
		t.Cleanup(func() { time.Sleep(fasthttpSweep + time.Second) })
	}
	st, err := embedded.Open(filepath.Join(t.TempDir(), "store.db"), embedded.Options{})
	require.NoError(t, err)
	ln := fasthttputil.NewInmemoryListener()
	reg := prometheus.NewRegistry()
	deps.Store, deps.Registerer = st, reg
	if deps.Listener == nil {
		deps.Listener = ln
	}
	r, err := New(cfg, deps)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		_ = ln.Close()
		require.NoError(t, st.Close())
	})
	e.st, e.r, e.ln, e.reg = st, r, ln, reg
	e.client = &fasthttp.Client{
		Dial: func(string) (net.Conn, error) {
			return ln.DialWithLocalAddr(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000})
		},
		MaxConnsPerHost:               512,
		DisableHeaderNamesNormalizing: true,
		ReadTimeout:                   30 * time.Second,
	}
	t.Cleanup(e.client.CloseIdleConnections)
	if opts.bubble {
		synctest.Wait()
		require.True(t, r.Ready(), "the router's caches have listed")
		return e
	}
	// Off a bubble (the test needs real sockets or CPU time), the caches
	// list on the wall clock.
	require.Eventually(t, r.Ready, 5*time.Second, time.Millisecond)
	return e
}

// fasthttpSweep is how long fasthttp's worker-pool and client sweepers
// sleep between rounds (their MaxIdle*Duration defaults).
const fasthttpSweep = 10 * time.Second

func (e *env) dialBackend(addr string) (net.Conn, error) {
	e.mu.Lock()
	ln := e.backends[addr]
	e.mu.Unlock()
	if ln == nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	return ln.Dial()
}

// startMemBackend is startBackend on an in-memory listener, for an env
// in a bubble; its address is its name.
func (e *env) startMemBackend(name string, handler func(ctx *fasthttp.RequestCtx)) *backend {
	e.t.Helper()
	b := &backend{name: name, addr: name, handler: handler}
	ln := fasthttputil.NewInmemoryListener()
	e.mu.Lock()
	e.backends[name] = ln
	e.mu.Unlock()
	b.serve(e.t, ln)
	return b
}

type rev struct {
	name    string
	timeout time.Duration
}

// deploy writes a function, its revisions and its traffic, as the control
// plane would: in one transaction.
func (e *env) deploy(fn string, revs []rev, traffic []api.TrafficTarget) {
	e.t.Helper()
	ops := []store.Op{}
	latest := ""
	for i, r := range revs {
		spec := api.FunctionSpec{Image: "img"}.WithDefaults()
		if r.timeout > 0 {
			spec.Timeout = api.D(r.timeout)
		}
		ops = append(ops, store.PutJSON(store.RevisionKey(fn, r.name), store.Revision{Name: r.name, Function: fn, Generation: i + 1, Spec: spec}, store.AnyVersion))
		latest = r.name
	}
	ops = append(ops, store.PutJSON(store.FunctionKey(fn), store.Function{Name: fn, LatestRevision: latest, Generation: len(revs), Traffic: traffic}, store.AnyVersion))
	_, err := e.st.Txn(context.Background(), ops...)
	require.NoError(e.t, err)
}

func (e *env) endpoint(fn, revision, replica, addr string, limit int) {
	e.t.Helper()
	_, err := e.st.Txn(context.Background(), store.PutJSON(store.EndpointKey(revision, replica),
		store.Endpoint{Function: fn, Revision: revision, Replica: replica, Addr: addr, Limit: limit}, store.AnyVersion))
	require.NoError(e.t, err)
}

// waitRoute waits until host routes and its revisions have want replicas:
// in a bubble until the router has nothing left to do, else by polling,
// since a test off a bubble has real sockets or CPU time to wait for.
func (e *env) waitRoute(host string, replicas int) {
	e.t.Helper()
	routed := func() bool {
		rt := e.r.table.Load().lookup([]byte(host))
		if rt == nil {
			return false
		}
		n := 0
		for _, tg := range rt.targets {
			n += tg.rev.set.Len()
		}
		return n == replicas
	}
	if e.bubble {
		synctest.Wait()
		require.True(e.t, routed(), "route %s with %d replicas", host, replicas)
		return
	}
	require.Eventually(e.t, routed, 5*time.Second, time.Millisecond, "route %s with %d replicas", host, replicas)
}

func (e *env) get(host, path string, hdr map[string]string) (int, string, *fasthttp.ResponseHeader) {
	e.t.Helper()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + host + path)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	require.NoError(e.t, e.client.Do(req, resp))
	h := new(fasthttp.ResponseHeader)
	resp.Header.CopyTo(h)
	return resp.StatusCode(), string(resp.Body()), h
}

// backend is a real fasthttp server on loopback that names itself in every
// answer and records the highest concurrency it saw.
type backend struct {
	name     string
	addr     string
	inflight atomic.Int32
	peak     atomic.Int32
	served   atomic.Int64
	handler  func(ctx *fasthttp.RequestCtx)
}

func startBackend(t testing.TB, name string, handler func(ctx *fasthttp.RequestCtx)) *backend {
	t.Helper()
	b := &backend{name: name, handler: handler}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b.addr = ln.Addr().String()
	b.serve(t, ln)
	return b
}

// serve runs the backend on ln until the test ends.
func (b *backend) serve(t testing.TB, ln net.Listener) {
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			n := b.inflight.Add(1)
			defer b.inflight.Add(-1)
			for {
				p := b.peak.Load()
				if n <= p || b.peak.CompareAndSwap(p, n) {
					break
				}
			}
			b.served.Add(1)
			if b.handler != nil {
				b.handler(ctx)
				return
			}
			ctx.SetBodyString(b.name)
		},
		StreamRequestBody: true,
		CloseOnShutdown:   true,
		// A connection the router gave up on (a timeout) is not news.
		Logger: fasthttpLogger{slog.New(slog.DiscardHandler)},
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); wg.Wait() })
}

// sink is a StatsSink that keeps every report.
type sink struct {
	mu    sync.Mutex
	stats []api.RevisionStat
}

func (s *sink) Report(stats []api.RevisionStat) {
	s.mu.Lock()
	s.stats = append(s.stats, stats...)
	s.mu.Unlock()
}

func (s *sink) requests(revision string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := 0.0
	for _, st := range s.stats {
		if st.Revision == revision {
			total += st.Requests
		}
	}
	return total
}

func host(fn string) string { return fn + ".localhost" }

func split(pairs ...any) []api.TrafficTarget {
	var out []api.TrafficTarget
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, api.TrafficTarget{Revision: pairs[i].(string), Percent: pairs[i+1].(int)})
	}
	return out
}

// histogramSum reads the sum of an unlabelled histogram.
func (e *env) histogramSum(name string) float64 {
	e.t.Helper()
	return testenv.HistogramSum(e.t, e.reg, name)
}

// metric reads one sample of a gathered metric by its label values.
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	return testenv.Metric(e.t, e.reg, name, labels...)
}
