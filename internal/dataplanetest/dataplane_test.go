package dataplanetest

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
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

func TestMain(m *testing.M) {
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

// countingBackend is a real replica that records its peak concurrency.
type countingBackend struct {
	addr     string
	inflight atomic.Int32
	peak     atomic.Int32
}

func startBackend(t *testing.T, work time.Duration) *countingBackend {
	b := &countingBackend{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b.addr = ln.Addr().String()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
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
	}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); wg.Wait() })
	return b
}

type plane struct {
	set  *replicaset.Set
	st   store.Store
	addr string
	reg  *prometheus.Registry
	sc   *scaler
	cl   *fasthttp.Client
}

// startPlane wires the data plane exactly as ebbd's all role does.
func startPlane(t *testing.T, backendAddr string, limit int) *plane {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "store.db"), embedded.Options{})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	sc := &scaler{st: st, addr: backendAddr, limit: limit}

	tr, err := proxy.NewTransport(proxy.Config{})
	require.NoError(t, err)
	eps := store.NewCache[store.Endpoint](st, store.PrefixEndpoints, store.CacheConfig[store.Endpoint]{})
	fns := store.NewCache[store.Function](st, store.PrefixFunctions, store.CacheConfig[store.Function]{})
	revs := store.NewCache[store.Revision](st, store.PrefixRevisions, store.CacheConfig[store.Revision]{})
	reps := replicaset.New(eps, tr, nil)
	act, err := activator.New(activator.Config{}, activator.Deps{Store: st, Replicas: reps, ScaleUpper: sc, Registerer: reg})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rt, err := router.New(router.Config{}, router.Deps{Store: st, Functions: fns, Revisions: revs, Replicas: reps, Activator: act, Registerer: reg, Listener: ln})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return tr.Run(gctx) })
	for _, run := range []func(context.Context) error{eps.Run, fns.Run, revs.Run} {
		g.Go(func() error { return run(gctx) })
	}
	g.Go(func() error { return reps.Run(gctx) })
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
	set := reps.Retain("fn-00001")
	t.Cleanup(func() { reps.Drop(set) })
	p := &plane{set: set, st: st, addr: ln.Addr().String(), reg: reg, sc: sc,
		cl: &fasthttp.Client{MaxConnsPerHost: 2000, ReadTimeout: 30 * time.Second, MaxIdemponentCallAttempts: 1}}
	require.Eventually(t, func() bool {
		code, _ := p.get()
		return code != 404
	}, 5*time.Second, 5*time.Millisecond)
	return p
}

func (p *plane) get() (int, error) { return p.getWith("", "") }

func (p *plane) getWith(k, v string) (int, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + p.addr + "/")
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
	b := startBackend(t, 2*time.Millisecond)
	p := startPlane(t, b.addr, 10)
	// The readiness probe above already went through the activator and
	// made the replica ready; take it away again to start from zero.
	_, err := p.st.Txn(context.Background(), store.Delete(store.EndpointKey("fn-00001", "r1"), store.AnyVersion))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.set.Len() == 0 }, 5*time.Second, time.Millisecond)
	start := time.Now()
	ok := p.burst(1000)
	t.Logf("1000 cold requests in %v; replica peak %d; %v pokes", time.Since(start), b.peak.Load(), p.sc.pokes.Load())
	assert.Equal(t, 1000, ok)
	assert.LessOrEqual(t, b.peak.Load(), int32(10))
	assert.GreaterOrEqual(t, p.sc.pokes.Load(), int32(1))
	assert.Greater(t, p.metric("ebb_router_cold_starts_total"), 0.0)
}

// With the replica warm, far more concurrency than it takes is split
// between the router's direct path and the activator's queue, and the one
// shared tracker keeps the replica at its limit across both.
func TestHardLimitAcrossDirectAndActivatorPaths(t *testing.T) {
	b := startBackend(t, time.Millisecond)
	p := startPlane(t, b.addr, 10)
	require.Eventually(t, func() bool { code, _ := p.get(); return code == 200 }, 5*time.Second, time.Millisecond)
	handoffs0 := p.metric("ebb_router_activator_handoffs_total")
	ok := 0
	for round := 0; round < 3; round++ {
		ok += p.burst(300)
	}
	assert.Equal(t, 900, ok)
	assert.LessOrEqual(t, b.peak.Load(), int32(10))
	assert.Greater(t, p.metric("ebb_router_activator_handoffs_total"), handoffs0, "some requests queued in the activator")
	assert.Greater(t, p.metric("ebb_router_request_duration_seconds"), 0.0)
}

// A cold start goes router → activator → replica in process: the function
// sees this hop's forwarding headers once, and no Ebb-* field a client sent.
func TestColdStartForwardingHeaders(t *testing.T) {
	seen := make(chan map[string]string, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		h := map[string]string{}
		for k, v := range ctx.Request.Header.All() {
			h[string(k)] = string(v)
		}
		select {
		case seen <- h:
		default:
		}
		ctx.SetBodyString("ok")
	}}
	done := make(chan struct{})
	go func() { defer close(done); _ = backend.Serve(ln) }()
	t.Cleanup(func() { _ = backend.Shutdown(); <-done })
	p := startPlane(t, ln.Addr().String(), 0)
	// The readiness probe made the replica ready; take it away again, so
	// the next request waits in the activator.
	_, err = p.st.Txn(context.Background(), store.Delete(store.EndpointKey("fn-00001", "r1"), store.AnyVersion))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.set.Len() == 0 }, 5*time.Second, time.Millisecond)
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
}
