package activator

import (
	"bufio"
	"context"
	"errors"
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
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/goleak"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/internal/tracing"
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

func TestMain(m *testing.M) {
	// fasthttp starts its Date refresher, which never ends, with the first
	// response header it writes. Start it here, outside every synctest
	// bubble, so that no bubble owns a goroutine that outlives it.
	var h fasthttp.ResponseHeader
	_ = h.AppendBytes(nil)
	goleak.VerifyTestMain(m, fasthttpBackground...)
}

// scaler is a ScaleUpper that plays autoscaler and node agent: when poked
// it makes the revision's replicas ready by writing their endpoints.
type scaler struct {
	mu     sync.Mutex
	calls  []string
	onPoke func(revision string)
	fail   error // what Activate answers, as an autoscaler whose store is down
}

func (s *scaler) Activate(_ context.Context, revision string) error {
	s.mu.Lock()
	s.calls = append(s.calls, revision)
	fn, err := s.onPoke, s.fail
	s.mu.Unlock()
	if fn != nil {
		fn(revision)
	}
	return err
}

func (s *scaler) failWith(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
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

// env is an activator behind a minimal fasthttp front that hands every
// request to Serve, as the router does in process. Clients and replicas
// are in-memory pipes, so that a test can run in a testing/synctest bubble
// and drive time: nothing in it blocks in the kernel.
type env struct {
	t    testing.TB
	st   store.Store
	act  *Activator
	sc   *scaler
	sink *sink
	reg  *prometheus.Registry
	// addr is the front's address; dial reaches it.
	addr string
	dial func() (net.Conn, error)

	mu       sync.Mutex
	backends map[string]*fasthttputil.InmemoryListener
}

// envOptions are what a few tests change about an env.
type envOptions struct {
	// tcpFront serves the front on loopback TCP instead of a pipe, for
	// tests of what only a real socket does (the kernel reporting a
	// hang-up). Such a test cannot run in a bubble.
	tcpFront bool
	// dialErr, when set, is asked before every dial to a replica and fails
	// the dial with the error it returns.
	dialErr func(addr string) error
	// observed, when set, makes the front observe requests as the router
	// does (a tracing.Handoff in the request) and gets each one filled.
	observed func(h tracing.Handoff)
}

// idleWorkerSweep is how often the test servers' worker pools look for
// idle workers. Their sweeper sees Stop only when it wakes, so a test
// waits this long after a shutdown, which in a bubble takes no time.
const idleWorkerSweep = 10 * time.Millisecond

func newEnv(t testing.TB, cfg Config) *env { return newEnvWith(t, cfg, envOptions{}) }

func newEnvWith(t testing.TB, cfg Config, opts envOptions) *env {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "store.db"), embedded.Options{})
	require.NoError(t, err)
	e := &env{t: t, st: st, sc: &scaler{}, sink: &sink{}, reg: prometheus.NewRegistry(),
		backends: map[string]*fasthttputil.InmemoryListener{}}
	if cfg.StatsInterval == 0 {
		cfg.StatsInterval, cfg.SampleInterval = 50*time.Millisecond, 5*time.Millisecond
	}
	cfg.Proxy.Dial = func(addr string) (net.Conn, error) {
		if opts.dialErr != nil {
			if err := opts.dialErr(addr); err != nil {
				return nil, err
			}
		}
		e.mu.Lock()
		ln := e.backends[addr]
		e.mu.Unlock()
		if ln == nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		}
		return ln.Dial()
	}
	e.act, err = New(cfg, Deps{Store: st, ScaleUpper: e.sc, Stats: e.sink, Registerer: e.reg})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.act.Run(ctx) }()
	// The registry starts its transport before its first listing, so once
	// it is ready every background goroutine exists: leak checks that
	// snapshot "everything running now" see them all.
	select {
	case <-e.act.reps.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("the activator's replica registry never became ready")
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, st.Close())
	})

	front := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			timeout := 10 * time.Second
			if v := ctx.Request.Header.Peek("X-Timeout"); v != nil {
				timeout, _ = time.ParseDuration(string(v))
			}
			var h tracing.Handoff
			if opts.observed != nil {
				ctx.SetUserValue(tracing.HandoffKey, &h)
			}
			e.act.Serve(ctx, "fn", "fn-00001", ctx.Time().Add(timeout))
			if opts.observed != nil {
				opts.observed(h)
			}
		},
		StreamRequestBody:     true,
		CloseOnShutdown:       true,
		MaxIdleWorkerDuration: idleWorkerSweep,
	}
	if opts.tcpFront {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		e.addr = ln.Addr().String()
		e.dial = func() (net.Conn, error) { return net.Dial("tcp", e.addr) }
		serve(t, front, ln)
	} else {
		ln := fasthttputil.NewInmemoryListener()
		e.addr = "front"
		e.dial = ln.Dial
		serve(t, front, ln)
	}
	return e
}

// serve runs srv on ln until the test ends.
func serve(t testing.TB, srv *fasthttp.Server, ln net.Listener) {
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
		// Let the worker pool's sweeper wake and see the stop, so that a
		// bubble ends with no goroutine of its own left.
		time.Sleep(2 * idleWorkerSweep)
	})
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

// get sends one request on a connection of its own and returns the status,
// the body and Retry-After; on a transport error, status 0 and the error.
// It is safe to call from any goroutine.
func (e *env) get(hdr map[string]string) (code int, body, retryAfter string) {
	c, err := e.dial()
	if err != nil {
		return 0, err.Error(), ""
	}
	defer c.Close()
	var req strings.Builder
	req.WriteString("GET / HTTP/1.1\r\nHost: fn.localhost\r\nConnection: close\r\n")
	for k, v := range hdr {
		req.WriteString(k + ": " + v + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(c, req.String()); err != nil {
		return 0, err.Error(), ""
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error(), ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
}

// getAsync sends a request from a goroutine of its own; its status and
// body arrive on the returned channel.
func (e *env) getAsync(hdr map[string]string) <-chan string {
	out := make(chan string, 1)
	go func() {
		code, body, _ := e.get(hdr)
		out <- fmt.Sprintf("%d %s", code, body)
	}()
	return out
}

// backend is a replica on an in-memory listener that records its peak
// concurrency and the order and headers of the requests that reached it.
type backend struct {
	addr     string
	inflight atomic.Int32
	peak     atomic.Int32
	mu       sync.Mutex
	order    []string
	hdrs     []http.Header
	work     time.Duration
}

func (e *env) startBackend(work time.Duration) *backend {
	e.t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	e.mu.Lock()
	b := &backend{addr: fmt.Sprintf("backend-%d", len(e.backends)), work: work}
	e.backends[b.addr] = ln
	e.mu.Unlock()
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
			time.Sleep(b.work) // the function's work, so requests overlap at the replica
		}
		ctx.SetBodyString("ok")
	}, MaxIdleWorkerDuration: idleWorkerSweep}
	serve(e.t, srv, ln)
	return b
}

func TestReleaseInFIFOOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		b := e.startBackend(0)
		results := make([]<-chan string, 5)
		for i := range results {
			// Each arrives only after the previous one is queued.
			results[i] = e.getAsync(map[string]string{"X-Seq": strconv.Itoa(i)})
			synctest.Wait()
			require.Equal(t, i+1, e.waiting())
		}
		assert.Equal(t, 1, e.sc.count(), "only the first buffered request pokes the autoscaler")
		e.endpoint("r1", b.addr, 1) // one slot: requests leave one by one
		for _, r := range results {
			assert.Equal(t, "200 ok", <-r)
		}
		assert.Equal(t, []string{"0", "1", "2", "3", "4"}, b.order)
		assert.Equal(t, int32(1), b.peak.Load())
	})
}

// The acceptance scenario: 1,000 concurrent requests to a revision at zero
// whose replica takes 10 at a time. All succeed and the replica never sees
// more than 10.
func TestBurstAtZeroHonoursHardLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		b := e.startBackend(2 * time.Millisecond)
		e.sc.onPoke = func(string) { e.endpoint("r1", b.addr, 10) }
		const n = 1000
		results := make([]<-chan string, n)
		for i := range results {
			results[i] = e.getAsync(nil)
		}
		ok := 0
		for _, r := range results {
			if <-r == "200 ok" {
				ok++
			}
		}
		assert.Equal(t, n, ok)
		assert.Equal(t, int32(10), b.peak.Load(), "the replica was used to its limit, and not past it")
		// Let one more report go out after the burst.
		time.Sleep(e.act.cfg.StatsInterval)
		synctest.Wait()
		buffered, peak := e.sink.maxBuffered("fn-00001")
		assert.Positive(t, buffered, "buffered requests count as demand")
		assert.GreaterOrEqual(t, peak, 100.0)
	})
}

func TestQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{MaxQueue: 3, RetryAfter: 2 * time.Second})
		results := make([]<-chan string, 3)
		for i := range results {
			results[i] = e.getAsync(nil)
		}
		synctest.Wait()
		require.Equal(t, 3, e.waiting())
		code, body, retry := e.get(nil)
		assert.Equal(t, 503, code)
		assert.Equal(t, "2", retry)
		assert.Contains(t, body, "too many requests are waiting")

		b := e.startBackend(0)
		e.endpoint("r1", b.addr, 0)
		for _, r := range results {
			assert.Equal(t, "200 ok", <-r)
		}
	})
}

// A revision at zero whose activation fails (the autoscaler, or the store
// it writes to, is unreachable) cannot start: its requests get 503 with
// Retry-After at once instead of waiting out their deadline, and the first
// request after the autoscaler is back pokes it again and is served.
func TestFailedActivationFailsFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{RetryAfter: 3 * time.Second, ReactivateAfter: time.Minute})
		e.sc.failWith(errors.New("store: connection refused"))
		start := time.Now()
		code, body, retry := e.get(map[string]string{"X-Timeout": "10s"})
		assert.Equal(t, 503, code)
		assert.Equal(t, "3", retry)
		assert.Contains(t, body, "cannot be started now")
		assert.NotContains(t, body, "connection refused", "the store's error stays in the log")
		assert.Zero(t, time.Since(start), "refused at once, not at the deadline")
		assert.Equal(t, 0, e.waiting())

		e.sc.failWith(nil)
		waiting := e.getAsync(map[string]string{"X-Timeout": "10s"})
		synctest.Wait()
		assert.Equal(t, 2, e.sc.count(), "the next request pokes again")
		b := e.startBackend(0)
		e.endpoint("r1", b.addr, 0)
		assert.Equal(t, "200 ok", <-waiting)
	})
}

func TestDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		start := time.Now()
		code, body, _ := e.get(map[string]string{"X-Timeout": "150ms"})
		assert.Equal(t, 504, code)
		assert.Equal(t, "ebb: no replica of fn became ready within 150ms\n", body)
		assert.Equal(t, 150*time.Millisecond, time.Since(start), "answered at the deadline, not before or after")
		assert.Equal(t, 0, e.waiting())
	})
}

// While requests wait for a revision that still has no replica, the
// autoscaler is poked again once ReactivateAfter has passed, and not before.
func TestReactivateWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{ReactivateAfter: 2 * time.Second})
		first := e.getAsync(map[string]string{"X-Timeout": "10s"})
		synctest.Wait()
		require.Equal(t, 1, e.sc.count())
		time.Sleep(time.Second)
		second := e.getAsync(map[string]string{"X-Timeout": "10s"})
		synctest.Wait()
		assert.Equal(t, 1, e.sc.count(), "a request within ReactivateAfter does not poke again")
		time.Sleep(1500 * time.Millisecond)
		third := e.getAsync(map[string]string{"X-Timeout": "10s"})
		synctest.Wait()
		assert.Equal(t, 2, e.sc.count(), "a request after ReactivateAfter pokes again")

		b := e.startBackend(0)
		e.endpoint("r1", b.addr, 0)
		for _, r := range []<-chan string{first, second, third} {
			assert.Equal(t, "200 ok", <-r)
		}
	})
}

// A revision nobody used for IdleForget is forgotten, metrics and all; one
// used since is kept.
func TestForgetIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{IdleForget: time.Minute})
		b := e.startBackend(0)
		e.endpoint("r1", b.addr, 0)
		code, _, _ := e.get(nil)
		require.Equal(t, 200, code)
		_, ok := e.act.states.Load("fn-00001")
		require.True(t, ok)

		time.Sleep(30 * time.Second)
		synctest.Wait()
		_, ok = e.act.states.Load("fn-00001")
		assert.True(t, ok, "kept within IdleForget")

		time.Sleep(31 * time.Second)
		synctest.Wait()
		_, ok = e.act.states.Load("fn-00001")
		assert.False(t, ok, "forgotten after IdleForget")
		code, _, _ = e.get(nil)
		assert.Equal(t, 200, code, "and made again on the next request")
	})
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
		wantTook  time.Duration
	}{
		{name: "tries again until a descriptor is free", failDials: 3, timeout: "10s",
			wantCode: 200, wantBody: "ok", wantTook: 3 * retryPause},
		{name: "gives up at the deadline with a 503", failDials: 1 << 30, timeout: "100ms",
			wantCode: 503, wantBody: "ebb: out of file descriptors; retry later\n", wantRetry: "1", wantTook: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var dials atomic.Int32
				e := newEnvWith(t, Config{}, envOptions{dialErr: func(string) error {
					if dials.Add(1) <= tt.failDials {
						return emfile
					}
					return nil
				}})
				b := e.startBackend(0)
				e.endpoint("r1", b.addr, 0)
				synctest.Wait()
				start := time.Now()
				code, body, retry := e.get(map[string]string{"X-Timeout": tt.timeout})
				assert.Equal(t, tt.wantCode, code)
				assert.Equal(t, tt.wantBody, body)
				assert.Equal(t, tt.wantRetry, retry)
				assert.Equal(t, tt.wantTook, time.Since(start))
				if tt.wantCode == 200 {
					assert.Equal(t, float64(tt.failDials), testenv.Metric(t, e.reg, "ebb_activator_out_of_descriptors_total"))
				}
			})
		})
	}
}

// A request whose replica took no byte of it goes to another replica,
// under the data plane's one retry policy (internal/exchange).
func TestRetryOnUnavailableReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		b := e.startBackend(0)
		// "gone" refuses connections.
		_, err := e.st.Txn(t.Context(),
			store.PutJSON(store.EndpointKey("fn-00001", "r1"), store.Endpoint{Function: "fn", Revision: "fn-00001", Replica: "r1", Addr: "gone"}, store.AnyVersion),
			store.PutJSON(store.EndpointKey("fn-00001", "r2"), store.Endpoint{Function: "fn", Revision: "fn-00001", Replica: "r2", Addr: b.addr}, store.AnyVersion))
		require.NoError(t, err)
		synctest.Wait()
		// Each request picks one of the two at random until "gone" has
		// failed once and is marked down.
		for range 50 {
			code, body, _ := e.get(nil)
			require.Equal(t, 200, code, body)
		}
		assert.Equal(t, 1.0, testenv.Metric(t, e.reg, "ebb_activator_retries_total"))
	})
}

// A replica that crashed stays in the store for a few milliseconds and
// refuses connections meanwhile. No byte of a request reached it, so the
// request is held until a replica answers (the restart), and gets a 502
// only when its deadline comes first: one crash fails no request
// (issue 13, bug 1).
func TestRequestToACrashedReplicaWaitsForItsRestart(t *testing.T) {
	tests := []struct {
		name      string
		restartIn time.Duration // 0: never
		timeout   string
		wantCode  int
		wantBody  string
		wantTook  time.Duration
	}{
		{name: "held through the restart", restartIn: 100 * time.Millisecond, timeout: "10s",
			wantCode: 200, wantBody: "ok", wantTook: 100 * time.Millisecond},
		{name: "a 502 at the deadline when nothing answers", timeout: "200ms",
			wantCode: 502, wantBody: "ebb: function fn failed to answer\n", wantTook: 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, Config{})
				e.endpoint("r1", "crashed", 0) // refuses connections
				synctest.Wait()
				if tt.restartIn > 0 {
					// As the node agent does: the crash takes the endpoint
					// out, and the restarted process puts it back.
					go func() {
						time.Sleep(5 * time.Millisecond)
						_, err := e.st.Txn(context.Background(), store.Delete(store.EndpointKey("fn-00001", "r1"), store.AnyVersion))
						assert.NoError(t, err)
						time.Sleep(tt.restartIn - 5*time.Millisecond)
						e.endpoint("r1", e.startBackend(0).addr, 0)
					}()
				}
				start := time.Now()
				code, body, _ := e.get(map[string]string{"X-Timeout": tt.timeout})
				assert.Equal(t, tt.wantCode, code)
				assert.Equal(t, tt.wantBody, body)
				// The restarted replica is taken at the first try after it
				// appears, one retry pause at most after the restart.
				assert.InDelta(t, tt.wantTook, time.Since(start), float64(retryPause))
				assert.Positive(t, testenv.Metric(t, e.reg, "ebb_activator_unreachable_total"))
			})
		})
	}
}

// Hang-ups are reported by the kernel (EPOLLRDHUP on the client's socket),
// so this test uses real sockets, runs on the wall clock and polls while
// the kernel catches up.
func TestClientDisconnectLeavesQueue(t *testing.T) {
	e := newEnvWith(t, Config{}, envOptions{tcpFront: true})
	// Everything running now is expected to keep running, and so are the
	// store watches the activator (re)opens and the hang-up watcher, which
	// starts with the first watch and lives as long as Run.
	before := append([]goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/ebbrun/ebb/activator.(*hangups).loop"),
		goleak.IgnoreTopFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc"),
		goleak.IgnoreTopFunction("github.com/ebbrun/ebb/store/embedded.(*Store).watch")}, fasthttpBackground...)

	conns := make([]net.Conn, 3)
	for i := range conns {
		c, err := e.dial()
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
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		results := []<-chan string{e.getAsync(nil), e.getAsync(nil)}
		synctest.Wait()
		require.Equal(t, 2, e.waiting())
		start := time.Now()
		e.status("node-a", api.RevisionFailed, `pull image "nope:latest": not found`, 0)
		want := "502 ebb: revision fn-00001 of fn cannot serve (Failed): pull image \"nope:latest\": not found\n"
		for _, r := range results {
			assert.Equal(t, want, <-r)
		}
		assert.Zero(t, time.Since(start), "waiters are failed at once, not at a timer")

		// While it stays failed, new requests fail at once.
		code, body, _ := e.get(nil)
		assert.Equal(t, 502, code)
		assert.Contains(t, body, "not found")

		// A crash loop on one node does not fail a revision another node serves.
		b := e.startBackend(0)
		e.status("node-a", api.RevisionCrashLoop, "exit 1", 0)
		e.status("node-b", api.RevisionReady, "", 1)
		e.endpoint("r1", b.addr, 0)
		synctest.Wait()
		code, _, _ = e.get(nil)
		assert.Equal(t, 200, code)
	})
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"negative queue", Config{MaxQueue: -1}, false},
		{"sample slower than report", Config{SampleInterval: time.Minute}, false},
		{"negative duration", Config{IdleForget: -1}, false},
		{"retries off the scale", Config{MaxRetries: 17}, false},
		{"negative retries", Config{MaxRetries: -1}, false},
		{"some retries", Config{MaxRetries: 5}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
	_, err := New(Config{}, Deps{})
	assert.Error(t, err, "a store and a scaler are required")
}
