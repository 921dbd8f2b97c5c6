package activator

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

var fasthttpBackground = []goleak.Option{
	// fasthttp's worker pool cleaner sleeps up to 10s before it sees Stop,
	// its date updater lives for the process, and idle workers and client
	// cleaners park on timers.
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, fasthttpBackground...) }

// scaler is a ScaleUpper that plays autoscaler and node agent: when poked
// it makes the revision's replicas ready by writing their endpoints.
type scaler struct {
	mu     sync.Mutex
	calls  []string
	onPoke func(revision string)
}

func (s *scaler) Activate(_ context.Context, revision string) error {
	s.mu.Lock()
	s.calls = append(s.calls, revision)
	fn := s.onPoke
	s.mu.Unlock()
	if fn != nil {
		fn(revision)
	}
	return nil
}

func (s *scaler) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

type sink struct {
	mu    sync.Mutex
	stats []api.RevisionStat
}

func (s *sink) Report(stats []api.RevisionStat) {
	s.mu.Lock()
	s.stats = append(s.stats, stats...)
	s.mu.Unlock()
}

func (s *sink) maxBuffered(rev string) (buffered int, peak float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.stats {
		if st.Revision == rev {
			buffered = max(buffered, st.Buffered)
			peak = max(peak, st.MaxConcurrency)
		}
	}
	return buffered, peak
}

// env is an activator behind a minimal fasthttp front on loopback TCP that
// hands every request to Serve, as the router does in process.
type env struct {
	t     testing.TB
	st    store.Store
	act   *Activator
	sc    *scaler
	sink  *sink
	addr  string
	reg   *prometheus.Registry
	front *fasthttp.Server
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "store.db"), embedded.Options{})
	require.NoError(t, err)
	e := &env{t: t, st: st, sc: &scaler{}, sink: &sink{}, reg: prometheus.NewRegistry()}
	if cfg.StatsInterval == 0 {
		cfg.StatsInterval, cfg.SampleInterval = 50*time.Millisecond, 5*time.Millisecond
	}
	e.act, err = New(cfg, Deps{Store: st, ScaleUpper: e.sc, Stats: e.sink, Registerer: e.reg})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.act.Run(ctx) }()
	require.Eventually(t, func() bool { return e.act.hangups.Load() != nil }, 5*time.Second, time.Millisecond)
	// The registry starts its transport before its first listing, so once
	// it is ready every background goroutine exists: leak checks that
	// snapshot "everything running now" see them all.
	select {
	case <-e.act.reps.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("the activator's replica registry never became ready")
	}

	e.front = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			timeout := 10 * time.Second
			if v := ctx.Request.Header.Peek("X-Timeout"); v != nil {
				timeout, _ = time.ParseDuration(string(v))
			}
			e.act.Serve(ctx, "fn", "fn-00001", ctx.Time().Add(timeout))
		},
		StreamRequestBody: true,
		CloseOnShutdown:   true,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e.addr = ln.Addr().String()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = e.front.Serve(ln) }()
	t.Cleanup(func() {
		_ = e.front.Shutdown()
		wg.Wait()
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, st.Close())
	})
	return e
}

func (e *env) endpoint(replica, addr string, limit int) {
	e.t.Helper()
	_, err := e.st.Txn(context.Background(), store.PutJSON(store.EndpointKey("fn-00001", replica),
		store.Endpoint{Function: "fn", Revision: "fn-00001", Replica: replica, Addr: addr, Limit: limit}, store.AnyVersion))
	require.NoError(e.t, err)
}

func (e *env) status(node, state, msg string, ready int) {
	e.t.Helper()
	_, err := e.st.Txn(context.Background(), store.PutJSON(store.RevStatusKey("fn-00001", node),
		store.RevisionNodeStatus{Revision: "fn-00001", Node: node, State: state, Message: msg, Ready: ready}, store.AnyVersion))
	require.NoError(e.t, err)
}

func (e *env) waiting() int {
	v, ok := e.act.states.Load("fn-00001")
	if !ok {
		return 0
	}
	return v.(*revState).set.Waiting()
}

func (e *env) client(conns int) *fasthttp.Client {
	return &fasthttp.Client{MaxConnsPerHost: conns, ReadTimeout: 30 * time.Second, MaxIdemponentCallAttempts: 1}
}

func (e *env) get(c *fasthttp.Client, hdr map[string]string) (int, string, string) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + e.addr + "/")
	req.Header.SetHost("fn.localhost")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if err := c.Do(req, resp); err != nil {
		return 0, err.Error(), ""
	}
	return resp.StatusCode(), string(resp.Body()), string(resp.Header.Peek("Retry-After"))
}

// backend is a real fasthttp server that records its peak concurrency and
// the order requests reached it.
type backend struct {
	addr     string
	inflight atomic.Int32
	peak     atomic.Int32
	mu       sync.Mutex
	order    []string
	hdrs     []http.Header
	work     time.Duration
}

func startBackend(t testing.TB, work time.Duration) *backend {
	t.Helper()
	b := &backend{work: work}
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
		h := http.Header{}
		for k, v := range ctx.Request.Header.All() {
			h.Add(string(k), string(v))
		}
		b.mu.Lock()
		b.order = append(b.order, string(ctx.Request.Header.Peek("X-Seq")))
		b.hdrs = append(b.hdrs, h)
		b.mu.Unlock()
		if b.work > 0 {
			time.Sleep(b.work) // simulated work, so requests overlap at the replica
		}
		ctx.SetBodyString("ok")
	}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); wg.Wait() })
	return b
}

func TestReleaseInFIFOOrder(t *testing.T) {
	e := newEnv(t, Config{})
	b := startBackend(t, 0)
	c := e.client(16)
	results := make(chan int, 5)
	for i := 0; i < 5; i++ {
		go func() {
			code, _, _ := e.get(c, map[string]string{"X-Seq": strconv.Itoa(i)})
			results <- code
		}()
		// Each arrives only after the previous one is queued.
		require.Eventually(t, func() bool { return e.waiting() == i+1 }, 5*time.Second, time.Millisecond)
	}
	assert.Equal(t, 1, e.sc.count(), "only the first buffered request pokes the autoscaler")
	e.endpoint("r1", b.addr, 1) // one slot: requests leave one by one
	for i := 0; i < 5; i++ {
		assert.Equal(t, 200, <-results)
	}
	assert.Equal(t, []string{"0", "1", "2", "3", "4"}, b.order)
	assert.Equal(t, int32(1), b.peak.Load())
}

// The acceptance scenario: 1,000 concurrent requests to a revision at zero
// whose replica takes 10 at a time. All succeed and the replica never sees
// more than 10.
func TestBurstAtZeroHonoursHardLimit(t *testing.T) {
	e := newEnv(t, Config{})
	b := startBackend(t, 2*time.Millisecond)
	e.sc.onPoke = func(string) { e.endpoint("r1", b.addr, 10) }
	c := e.client(1000)
	const n = 1000
	codes := make(chan int, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _ := e.get(c, nil)
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	ok := 0
	for code := range codes {
		if code == 200 {
			ok++
		}
	}
	t.Logf("%d requests in %v, replica peak %d", n, time.Since(start), b.peak.Load())
	assert.Equal(t, n, ok)
	assert.LessOrEqual(t, b.peak.Load(), int32(10))
	assert.Equal(t, int32(10), b.peak.Load(), "the replica was used to its limit")
	require.Eventually(t, func() bool {
		buffered, peak := e.sink.maxBuffered("fn-00001")
		return buffered > 0 && peak >= 100
	}, 5*time.Second, 10*time.Millisecond, "buffered requests count as demand")
}

func TestQueueFull(t *testing.T) {
	e := newEnv(t, Config{MaxQueue: 3, RetryAfter: 2 * time.Second})
	c := e.client(16)
	results := make(chan int, 3)
	for i := 0; i < 3; i++ {
		go func() { code, _, _ := e.get(c, nil); results <- code }()
	}
	require.Eventually(t, func() bool { return e.waiting() == 3 }, 5*time.Second, time.Millisecond)
	code, body, retry := e.get(c, nil)
	assert.Equal(t, 503, code)
	assert.Equal(t, "2", retry)
	assert.Contains(t, body, "too many requests are waiting")

	b := startBackend(t, 0)
	e.endpoint("r1", b.addr, 0)
	for i := 0; i < 3; i++ {
		assert.Equal(t, 200, <-results)
	}
}

func TestDeadline(t *testing.T) {
	e := newEnv(t, Config{})
	start := time.Now()
	code, body, _ := e.get(e.client(1), map[string]string{"X-Timeout": "150ms"})
	took := time.Since(start)
	assert.Equal(t, 504, code)
	assert.Equal(t, "ebb: no replica of fn became ready within 150ms\n", body)
	assert.GreaterOrEqual(t, took, 150*time.Millisecond)
	assert.Less(t, took, 3*time.Second)
	assert.Equal(t, 0, e.waiting())
}

// A replica that ebbd cannot reach for lack of file descriptors is not
// down: the request waits a moment and tries again, within its deadline,
// and only gives up with a 503 when the deadline comes first.
func TestOutOfDescriptors(t *testing.T) {
	emfile := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	tests := []struct {
		name      string
		failDials int32 // dials that fail with EMFILE before they succeed
		timeout   string
		wantCode  int
		wantBody  string
		wantRetry string
	}{
		{name: "tries again until a descriptor is free", failDials: 3, timeout: "10s", wantCode: 200, wantBody: "ok"},
		{name: "gives up at the deadline with a 503", failDials: 1 << 30, timeout: "100ms", wantCode: 503, wantBody: "ebb: out of file descriptors; retry later\n", wantRetry: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, 0)
			var dials atomic.Int32
			e := newEnv(t, Config{Proxy: proxy.Config{Dial: func(addr string) (net.Conn, error) {
				if dials.Add(1) <= tt.failDials {
					return nil, emfile
				}
				return net.Dial("tcp", addr)
			}}})
			e.endpoint("r1", b.addr, 0)
			code, body, retry := e.get(e.client(1), map[string]string{"X-Timeout": tt.timeout})
			assert.Equal(t, tt.wantCode, code)
			assert.Equal(t, tt.wantBody, body)
			assert.Equal(t, tt.wantRetry, retry)
			if tt.wantCode == 200 {
				assert.Equal(t, float64(tt.failDials), testenv.Metric(t, e.reg, "ebb_activator_out_of_descriptors_total"))
			}
		})
	}
}

func TestClientDisconnectLeavesQueue(t *testing.T) {
	e := newEnv(t, Config{})
	// Everything running now is expected to keep running, and so are the
	// store watches the activator (re)opens.
	before := append([]goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc"),
		goleak.IgnoreTopFunction("github.com/ebbrun/ebb/store/embedded.(*Store).watch")}, fasthttpBackground...)

	conns := make([]net.Conn, 3)
	for i := range conns {
		c, err := net.Dial("tcp", e.addr)
		require.NoError(t, err)
		_, err = io.WriteString(c, "POST / HTTP/1.1\r\nHost: fn.localhost\r\nContent-Length: 5\r\n\r\nhello")
		require.NoError(t, err)
		conns[i] = c
	}
	require.Eventually(t, func() bool { return e.waiting() == 3 }, 5*time.Second, time.Millisecond)
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
	require.Eventually(t, func() bool { return e.waiting() == 0 }, 5*time.Second, time.Millisecond,
		"hung-up clients leave the queue without waiting for their deadline")
	rs, _ := e.act.states.Load("fn-00001")
	require.Eventually(t, func() bool { return rs.(*revState).stats.InFlight() == 0 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, int32(0), rs.(*revState).queued.Load())
	e.act.hangups.Load().mu.Lock()
	assert.Empty(t, e.act.hangups.Load().watches)
	e.act.hangups.Load().mu.Unlock()
	goleak.VerifyNone(t, before...)
}

func TestFailedRevisionFailsFast(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.client(16)
	results := make(chan string, 2)
	for i := 0; i < 2; i++ {
		go func() {
			code, body, _ := e.get(c, nil)
			results <- fmt.Sprintf("%d %s", code, body)
		}()
	}
	require.Eventually(t, func() bool { return e.waiting() == 2 }, 5*time.Second, time.Millisecond)
	start := time.Now()
	e.status("node-a", api.RevisionFailed, `pull image "nope:latest": not found`, 0)
	want := "502 ebb: revision fn-00001 of fn cannot serve (Failed): pull image \"nope:latest\": not found\n"
	for i := 0; i < 2; i++ {
		assert.Equal(t, want, <-results)
	}
	assert.Less(t, time.Since(start), 3*time.Second)

	// While it stays failed, new requests fail at once.
	code, body, _ := e.get(c, nil)
	assert.Equal(t, 502, code)
	assert.Contains(t, body, "not found")

	// A crash loop on one node does not fail a revision another node serves.
	b := startBackend(t, 0)
	e.status("node-a", api.RevisionCrashLoop, "exit 1", 0)
	e.status("node-b", api.RevisionReady, "", 1)
	e.endpoint("r1", b.addr, 0)
	require.Eventually(t, func() bool { code, _, _ := e.get(c, nil); return code == 200 }, 5*time.Second, time.Millisecond)
}

func TestNetworkHandler(t *testing.T) {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "store.db"), embedded.Options{})
	require.NoError(t, err)
	defer st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sc := &scaler{}
	act, err := New(Config{}, Deps{Store: st, ScaleUpper: sc, Listener: ln})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- act.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	b := startBackend(t, 0)
	_, err = st.Txn(ctx, store.PutJSON(store.EndpointKey("fn-00002", "r1"),
		store.Endpoint{Function: "fn", Revision: "fn-00002", Replica: "r1", Addr: b.addr}, store.AnyVersion))
	require.NoError(t, err)

	send := func(hdr string) *http.Response {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "GET /x HTTP/1.1\r\nHost: fn.localhost\r\n"+hdr+"\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		_, _ = io.ReadAll(resp.Body)
		return resp
	}
	assert.Equal(t, 400, send("").StatusCode)
	deadline := strconv.FormatInt(time.Now().Add(5*time.Second).UnixMilli(), 10)
	resp := send("Ebb-Function: fn\r\nEbb-Revision: fn-00002\r\nEbb-Deadline: " + deadline + "\r\nX-Forwarded-For: 203.0.113.9\r\n")
	assert.Equal(t, 200, resp.StatusCode)
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Len(t, b.hdrs, 1)
	got := b.hdrs[0]
	assert.Equal(t, "203.0.113.9", got.Get("X-Forwarded-For"), "a router's forwarding headers are trusted as they are")
	for k := range got {
		assert.False(t, strings.HasPrefix(strings.ToLower(k), "ebb-"), k)
	}
}

func TestConfigValidate(t *testing.T) {
	assert.NoError(t, Config{}.Validate())
	assert.Error(t, Config{MaxQueue: -1}.Validate())
	assert.Error(t, Config{SampleInterval: time.Minute}.Validate())
	_, err := New(Config{}, Deps{})
	assert.Error(t, err)
}
