package dataplanetest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/activator"
	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/internal/replicaset"
	"github.com/ebbrun/ebb/router"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// The tests run in testing/synctest bubbles: the store, the router, the
// activator and the replicas all live in the bubble, and clients and
// replicas are reached over in-memory pipes, so nothing blocks in the
// kernel. synctest.Wait returns once every store watch has been delivered
// and every request in flight has settled, so a test asserts what happened
// instead of polling for it.

func TestMain(m *testing.M) {
	// fasthttp starts its Date refresher, which never ends, with the first
	// response header it writes. Start it here, outside every synctest
	// bubble, so that no bubble owns a goroutine that outlives it.
	var h fasthttp.ResponseHeader
	_ = h.AppendBytes(nil)
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"))
}

// scaler stands in for the autoscaler and node agent: a poke makes the
// replica ready by writing its endpoint, as the node agent would.
type scaler struct {
	st    store.Store
	addr  string
	limit int
	pokes atomic.Int32
}

func (s *scaler) Activate(ctx context.Context, revision string) error {
	s.pokes.Add(1)
	_, err := s.st.Txn(ctx, store.PutJSON(store.EndpointKey(revision, "r1"),
		store.Endpoint{Function: "fn", Revision: revision, Replica: "r1", Addr: s.addr, Limit: s.limit}, store.AnyVersion))
	return err
}

// replicas are the in-memory listeners of a test's replicas, by address.
// The data plane's transport dials them instead of TCP.
type replicas struct {
	mu  sync.Mutex
	lns map[string]*fasthttputil.InmemoryListener
}

func (r *replicas) dial(addr string) (net.Conn, error) {
	r.mu.Lock()
	ln := r.lns[addr]
	r.mu.Unlock()
	if ln == nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	return ln.Dial()
}

// serve runs handler as the replica at addr until the test ends.
func (r *replicas) serve(t *testing.T, addr string, handler fasthttp.RequestHandler) {
	ln := fasthttputil.NewInmemoryListener()
	r.mu.Lock()
	if r.lns == nil {
		r.lns = map[string]*fasthttputil.InmemoryListener{}
	}
	r.lns[addr] = ln
	r.mu.Unlock()
	srv := &fasthttp.Server{Handler: handler, MaxIdleWorkerDuration: idleWorkerSweep}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); wg.Wait() })
}

// idleWorkerSweep is how often the replicas' worker pools look for idle
// workers. A sweeper sees Stop only when it wakes, so a test's cleanup
// waits this long after shutdown, which in a bubble takes no time.
const idleWorkerSweep = 10 * time.Millisecond

// fasthttpSweep is how long the router's worker-pool sweeper and the test
// client's sweepers sleep between rounds (their MaxIdle*Duration defaults).
const fasthttpSweep = 10 * time.Second

// countingBackend is a replica that records its peak concurrency.
type countingBackend struct {
	addr     string
	inflight atomic.Int32
	peak     atomic.Int32
}

func startBackend(t *testing.T, reps *replicas, work time.Duration) *countingBackend {
	b := &countingBackend{addr: "replica-1"}
	reps.serve(t, b.addr, func(ctx *fasthttp.RequestCtx) {
		n := b.inflight.Add(1)
		defer b.inflight.Add(-1)
		for {
			p := b.peak.Load()
			if n <= p || b.peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(work) // simulated work, so requests overlap at the replica
		ctx.SetBodyString("ok")
	})
	return b
}

type plane struct {
	set *replicaset.Set
	st  store.Store
	reg *prometheus.Registry
	sc  *scaler
	cl  *fasthttp.Client
	ln  *fasthttputil.InmemoryListener
}

// startPlane wires the data plane exactly as ebbd's all role does, in the
// test's bubble: replicas are dialled in reps, and the router listens on
// an in-memory pipe.
func startPlane(t *testing.T, reps *replicas, backendAddr string, limit int) *plane {
	return startPlaneWith(t, reps, backendAddr, limit, nil)
}

// startPlaneWith is startPlane with a queue for asynchronous invocations
// (async_test.go).
func startPlaneWith(t *testing.T, reps *replicas, backendAddr string, limit int, async router.Enqueuer) *plane {
	// Runs last: fasthttp's sweepers see their stop only when they next
	// wake, and the bubble must not end before they do.
	t.Cleanup(func() { time.Sleep(fasthttpSweep + time.Second) })
	st, err := embedded.Open(filepath.Join(t.TempDir(), "store.db"), embedded.Options{})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	sc := &scaler{st: st, addr: backendAddr, limit: limit}

	tr, err := proxy.NewTransport(proxy.Config{Dial: reps.dial})
	require.NoError(t, err)
	eps := store.NewCache[store.Endpoint](st, store.PrefixEndpoints, store.CacheConfig[store.Endpoint]{})
	fns := store.NewCache[store.Function](st, store.PrefixFunctions, store.CacheConfig[store.Function]{})
	revs := store.NewCache[store.Revision](st, store.PrefixRevisions, store.CacheConfig[store.Revision]{})
	set := replicaset.New(eps, tr, nil)
	act, err := activator.New(activator.Config{}, activator.Deps{Store: st, Replicas: set, ScaleUpper: sc, Registerer: reg})
	require.NoError(t, err)
	ln := fasthttputil.NewInmemoryListener()
	rt, err := router.New(router.Config{}, router.Deps{Store: st, Functions: fns, Revisions: revs, Replicas: set, Activator: act, Registerer: reg, Listener: ln, Async: async})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return tr.Run(gctx) })
	for _, run := range []func(context.Context) error{eps.Run, fns.Run, revs.Run} {
		g.Go(func() error { return run(gctx) })
	}
	g.Go(func() error { return set.Run(gctx) })
	g.Go(func() error { return act.Run(gctx) })
	g.Go(func() error { return rt.Run(gctx) })
	t.Cleanup(func() {
		cancel()
		require.NoError(t, g.Wait())
		require.NoError(t, st.Close())
	})

	spec := api.FunctionSpec{Image: "img", Concurrency: api.Concurrency{HardLimit: limit}}.WithDefaults()
	_, err = st.Txn(ctx,
		store.PutJSON(store.RevisionKey("fn", "fn-00001"), store.Revision{Name: "fn-00001", Function: "fn", Generation: 1, Spec: spec}, store.AnyVersion),
		store.PutJSON(store.FunctionKey("fn"), store.Function{Name: "fn", Spec: spec, LatestRevision: "fn-00001", Generation: 1,
			Traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 100}}}, store.AnyVersion))
	require.NoError(t, err)
	rs := set.Retain("fn-00001")
	t.Cleanup(func() { set.Drop(rs) })
	p := &plane{set: rs, st: st, reg: reg, sc: sc, ln: ln,
		cl: &fasthttp.Client{
			Dial: func(string) (net.Conn, error) {
				return ln.DialWithLocalAddr(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000})
			},
			MaxConnsPerHost: 2000, ReadTimeout: 30 * time.Second, MaxIdemponentCallAttempts: 1}}
	t.Cleanup(p.cl.CloseIdleConnections)
	// Once the bubble is idle the caches have listed and the router knows
	// the function; the first request goes through the activator, whose
	// poke makes the replica ready.
	synctest.Wait()
	code, err := p.get()
	require.NoError(t, err)
	require.Equal(t, 200, code, "the function routes")
	return p
}

func (p *plane) get() (int, error) { return p.getWith("", "") }

func (p *plane) getWith(k, v string) (int, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://router/")
	req.Header.SetHost("fn.localhost")
	req.UseHostHeader = true
	if k != "" {
		req.Header.Set(k, v)
	}
	err := p.cl.Do(req, resp)
	return resp.StatusCode(), err
}

func (p *plane) burst(n int) (ok int) {
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _ := p.get()
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c == 200 {
			ok++
		}
	}
	return ok
}

func (p *plane) metric(name string) float64 {
	mfs, _ := p.reg.Gather()
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				total += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

// 1,000 concurrent requests to a function at zero with a hard limit of 10:
// every one succeeds, the replica never sees more than 10 at once, and the
// autoscaler is poked at once.
func TestColdBurstThroughRouter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reps replicas
		b := startBackend(t, &reps, 2*time.Millisecond)
		p := startPlane(t, &reps, b.addr, 10)
		// The readiness probe above already went through the activator and
		// made the replica ready; take it away again to start from zero.
		_, err := p.st.Txn(context.Background(), store.Delete(store.EndpointKey("fn-00001", "r1"), store.AnyVersion))
		require.NoError(t, err)
		synctest.Wait()
		require.Equal(t, 0, p.set.Len())
		pokes := p.sc.pokes.Load()
		start := time.Now()
		ok := p.burst(1000)
		t.Logf("1000 cold requests in %v of bubble time; replica peak %d; %v pokes", time.Since(start), b.peak.Load(), p.sc.pokes.Load()-pokes)
		assert.Equal(t, 1000, ok)
		assert.LessOrEqual(t, b.peak.Load(), int32(10))
		assert.Greater(t, p.sc.pokes.Load(), pokes, "the burst poked the autoscaler")
		assert.Greater(t, p.metric("ebb_router_cold_starts_total"), 0.0)
	})
}

// With the replica warm, far more concurrency than it takes is split
// between the router's direct path and the activator's queue, and the one
// shared tracker keeps the replica at its limit across both.
func TestHardLimitAcrossDirectAndActivatorPaths(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reps replicas
		b := startBackend(t, &reps, time.Millisecond)
		p := startPlane(t, &reps, b.addr, 10)
		synctest.Wait()
		require.Equal(t, 1, p.set.Len(), "the replica is warm")
		code, err := p.get()
		require.NoError(t, err)
		require.Equal(t, 200, code)
		handoffs0 := p.metric("ebb_router_activator_handoffs_total")
		ok := 0
		for round := 0; round < 3; round++ {
			ok += p.burst(300)
		}
		assert.Equal(t, 900, ok)
		assert.LessOrEqual(t, b.peak.Load(), int32(10))
		assert.Greater(t, p.metric("ebb_router_activator_handoffs_total"), handoffs0, "some requests queued in the activator")
		assert.Greater(t, p.metric("ebb_router_request_duration_seconds"), 0.0)
	})
}

// A cold start goes router → activator → replica in process: the function
// sees this hop's forwarding headers once, and no Ebb-* field a client sent.
func TestColdStartForwardingHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seen := make(chan map[string]string, 16)
		var reps replicas
		reps.serve(t, "replica-1", func(ctx *fasthttp.RequestCtx) {
			h := map[string]string{}
			for k, v := range ctx.Request.Header.All() {
				h[string(k)] = string(v)
			}
			select {
			case seen <- h:
			default:
			}
			ctx.SetBodyString("ok")
		})
		p := startPlane(t, &reps, "replica-1", 0)
		// The readiness probe made the replica ready; take it away again, so
		// the next request waits in the activator.
		_, err := p.st.Txn(context.Background(), store.Delete(store.EndpointKey("fn-00001", "r1"), store.AnyVersion))
		require.NoError(t, err)
		synctest.Wait()
		require.Equal(t, 0, p.set.Len())
		for len(seen) > 0 {
			<-seen
		}
		handoffs := p.metric("ebb_router_activator_handoffs_total")

		code, err := p.getWith("Ebb-Revision", "evil-00001")
		require.NoError(t, err)
		assert.Equal(t, 200, code)
		assert.Equal(t, handoffs+1, p.metric("ebb_router_activator_handoffs_total"), "the request went through the activator")
		h := <-seen
		assert.Equal(t, "127.0.0.1", h["X-Forwarded-For"], "one hop, added once")
		for k := range h {
			assert.NotContains(t, strings.ToLower(k), "ebb-")
		}
	})
}
