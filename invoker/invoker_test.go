package invoker

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/callbackurl"
	"github.com/ebbrun/ebb/queue/queuetest"
)

// harness is a worker whose clock and sleeps the test drives, delivering
// to an httptest server that stands in for the router.
type harness struct {
	t         *testing.T
	reg       *prometheus.Registry
	q         *queuetest.Memory
	w         *Worker
	mu        sync.Mutex
	now       time.Time
	sleeps    []time.Duration
	submitted int
}

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, router http.Handler, fns Functions) *harness {
	t.Helper()
	srv := httptest.NewServer(router)
	t.Cleanup(srv.Close)
	return newHarnessAt(t, srv.URL, fns)
}

func newHarnessAt(t *testing.T, routerURL string, fns Functions) *harness {
	t.Helper()
	h := &harness{t: t, reg: prometheus.NewRegistry(), q: queuetest.NewMemory(), now: start}
	// The test's callback receivers listen on loopback, as e2e's do.
	loopback, err := callbackurl.Parse("127.0.0.0/8")
	require.NoError(t, err)
	w, err := New(Config{RouterURL: routerURL, Name: "w1", BackoffBase: time.Second, BackoffCap: time.Minute, CallbackAttempts: 3,
		CallbackPolicy: loopback},
		Deps{
			Queue:      h.q,
			Functions:  fns,
			Registerer: h.reg,
			Now:        h.clock,
			Sleep: func(ctx context.Context, d time.Duration) error {
				h.mu.Lock()
				defer h.mu.Unlock()
				h.sleeps = append(h.sleeps, d)
				return ctx.Err()
			},
			Jitter: func() float64 { return 1 },
		})
	require.NoError(t, err)
	h.w = w
	return h
}

func (h *harness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) advanceTo(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = t
}

func (h *harness) submit(inv api.Invocation) {
	h.t.Helper()
	if inv.Function == "" {
		inv.Function = "hello"
	}
	if inv.MaxAttempts == 0 {
		inv.MaxAttempts = 5
	}
	if inv.Request.Method == "" {
		inv.Request = api.InvocationRequest{Method: http.MethodPost, Path: "/"}
	}
	// Each one a moment after the last, so the claim order is the
	// submission order.
	h.submitted++
	inv.CreatedAt = h.clock().Add(time.Duration(h.submitted-1000) * time.Nanosecond)
	_, _, err := h.q.Enqueue(context.Background(), inv)
	require.NoError(h.t, err)
}

func (h *harness) step() bool {
	h.t.Helper()
	claimed, err := h.w.Step(context.Background())
	require.NoError(h.t, err)
	return claimed
}

func (h *harness) get(fn, id string) api.Invocation {
	h.t.Helper()
	inv, err := h.q.Get(context.Background(), fn, id)
	require.NoError(h.t, err)
	return inv
}

func TestDeliverSucceeds(t *testing.T) {
	var got *http.Request
	var gotBody string
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.Header().Set("X-Out", "yes")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "made")
	}), nil)
	h.submit(invOf("a1", "hello", api.InvocationRequest{
		Method: http.MethodPut, Path: "/things?x=1",
		Header: http.Header{"Content-Type": {"text/plain"}, api.HeaderInvoke: {"async"}, api.HeaderCallbackURL: {"http://x"}, "X-In": {"1"}},
		Body:   []byte("payload"),
	}))

	require.True(t, h.step())
	require.NotNil(t, got)
	assert.Equal(t, "hello.localhost", got.Host, "delivered as the function's host, through the router")
	assert.Equal(t, http.MethodPut, got.Method)
	assert.Equal(t, "/things?x=1", got.URL.RequestURI())
	assert.Equal(t, "payload", gotBody)
	assert.Equal(t, "text/plain", got.Header.Get("Content-Type"))
	assert.Equal(t, "1", got.Header.Get("X-In"))
	assert.Empty(t, got.Header.Get(api.HeaderInvoke), "Ebb-Invoke would queue the delivery again")
	assert.Empty(t, got.Header.Get(api.HeaderCallbackURL))
	assert.Equal(t, "a1", got.Header.Get(HeaderDeliveryID))
	assert.Equal(t, "1", got.Header.Get(HeaderAttempt))

	inv := h.get("hello", "a1")
	assert.Equal(t, api.InvocationSucceeded, inv.Status)
	assert.Equal(t, 1, inv.Attempts)
	require.NotNil(t, inv.Result)
	assert.Equal(t, http.StatusCreated, inv.Result.Status)
	assert.Equal(t, "made", string(inv.Result.Body))
	assert.Equal(t, "yes", inv.Result.Header.Get("X-Out"))
	assert.Equal(t, start, inv.CompletedAt)
	assert.False(t, h.step(), "nothing is left")
}

// inv is a test shorthand for an invocation of fn with request r.
func invOf(id, fn string, r api.InvocationRequest) api.Invocation {
	return api.Invocation{ID: id, Function: fn, Request: r}
}

func TestNamespacedHost(t *testing.T) {
	var host string
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { host = r.Host }), nil)
	h.submit(api.Invocation{ID: "n1", Function: "hello.team-a"})
	require.True(t, h.step())
	assert.Equal(t, "hello.team-a.localhost", host)
	assert.Equal(t, api.InvocationSucceeded, h.get("hello.team-a", "n1").Status)
}

func TestFailsTwiceThenSucceeds(t *testing.T) {
	var calls atomic.Int32
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "done")
	}), nil)
	h.submit(api.Invocation{ID: "r1"})

	require.True(t, h.step())
	inv := h.get("hello", "r1")
	assert.Equal(t, api.InvocationQueued, inv.Status)
	assert.Equal(t, start.Add(time.Second), inv.NextAttemptAt, "first retry after the base backoff")
	assert.Contains(t, inv.LastError, "answered 503")
	assert.False(t, h.step(), "not due before its backoff")

	h.advanceTo(inv.NextAttemptAt)
	require.True(t, h.step())
	inv = h.get("hello", "r1")
	assert.Equal(t, api.InvocationQueued, inv.Status)
	assert.Equal(t, start.Add(3*time.Second), inv.NextAttemptAt, "the backoff doubles")

	h.advanceTo(inv.NextAttemptAt)
	require.True(t, h.step())
	inv = h.get("hello", "r1")
	assert.Equal(t, api.InvocationSucceeded, inv.Status)
	assert.Equal(t, 3, inv.Attempts)
	assert.Equal(t, "done", string(inv.Result.Body))
	assert.Empty(t, inv.LastError)
	assert.EqualValues(t, 3, calls.Load())
	assert.Equal(t, 2.0, value(t, h.w.metrics.deliveries.WithLabelValues("default", "hello", "retry")))
	assert.Equal(t, 1.0, value(t, h.w.metrics.deliveries.WithLabelValues("default", "hello", "Succeeded")))
	assert.Zero(t, value(t, h.w.metrics.inFlight))
}

func TestDeadLetter(t *testing.T) {
	var calls atomic.Int32
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "broken", http.StatusInternalServerError)
	}), nil)
	h.submit(api.Invocation{ID: "d1", MaxAttempts: 3})
	for range 3 {
		require.True(t, h.step())
		h.advanceTo(h.get("hello", "d1").NextAttemptAt)
	}
	inv := h.get("hello", "d1")
	assert.Equal(t, api.InvocationDeadLetter, inv.Status)
	assert.Equal(t, 3, inv.Attempts)
	assert.Equal(t, http.StatusInternalServerError, inv.Result.Status)
	assert.Contains(t, inv.LastError, "attempt 3")
	h.advanceTo(start.Add(time.Hour))
	assert.False(t, h.step(), "a dead letter is never delivered again")
	assert.EqualValues(t, 3, calls.Load())
}

func TestClientErrorIsFinal(t *testing.T) {
	var calls atomic.Int32
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "no such thing", http.StatusNotFound)
	}), nil)
	h.submit(api.Invocation{ID: "f1"})
	require.True(t, h.step())
	inv := h.get("hello", "f1")
	assert.Equal(t, api.InvocationFailed, inv.Status)
	assert.Equal(t, http.StatusNotFound, inv.Result.Status)
	assert.Equal(t, "no such thing\n", string(inv.Result.Body))
	h.advanceTo(start.Add(time.Hour))
	assert.False(t, h.step(), "a 4xx is not retried")
	assert.EqualValues(t, 1, calls.Load())
}

func TestConnectionErrorIsRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	h := newHarnessAt(t, url, nil)
	h.submit(api.Invocation{ID: "c1"})
	require.True(t, h.step())
	inv := h.get("hello", "c1")
	assert.Equal(t, api.InvocationQueued, inv.Status)
	assert.Nil(t, inv.Result)
	assert.Contains(t, inv.LastError, "attempt 1")
}

// limits is a fixed Functions.
type limits map[string]Limit

func (l limits) Limits() map[string]Limit { return l }

func TestTimeoutIsRetried(t *testing.T) {
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	}), limits{"hello": {MaxConcurrency: 1, Timeout: time.Millisecond}})
	h.w.cfg.VisibilityMargin = time.Millisecond
	h.submit(api.Invocation{ID: "t1"})
	require.True(t, h.step())
	inv := h.get("hello", "t1")
	assert.Equal(t, api.InvocationQueued, inv.Status)
	assert.Contains(t, inv.LastError, "deadline exceeded")
}

func TestLargeResultIsTruncated(t *testing.T) {
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", api.MaxInvocationBody+100))
	}), nil)
	h.submit(api.Invocation{ID: "b1"})
	require.True(t, h.step())
	inv := h.get("hello", "b1")
	assert.Equal(t, api.InvocationSucceeded, inv.Status)
	assert.Len(t, inv.Result.Body, api.MaxInvocationBody)
	assert.True(t, inv.Result.Truncated)
}

// receiver is a callback receiver that fails its first failFirst POSTs.
type receiver struct {
	mu        sync.Mutex
	failFirst int
	got       []api.Invocation
	headers   []http.Header
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.failFirst > 0 {
		rc.failFirst--
		http.Error(w, "later", http.StatusBadGateway)
		return
	}
	var inv api.Invocation
	if err := json.NewDecoder(r.Body).Decode(&inv); err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	rc.got = append(rc.got, inv)
	rc.headers = append(rc.headers, r.Header.Clone())
}

func TestCallback(t *testing.T) {
	tests := []struct {
		name      string
		failFirst int
		status    string
		sleeps    int
		received  int
	}{
		{"delivered at once", 0, "Delivered: 200", 0, 1},
		{"delivered on the third try", 2, "Delivered: 200", 2, 1},
		{"given up after three", 5, "Failed after 3 attempts: the receiver answered 502", 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &receiver{failFirst: tt.failFirst}
			cb := httptest.NewServer(rc)
			t.Cleanup(cb.Close)
			h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "result")
			}), nil)
			h.submit(api.Invocation{ID: "cb1", Function: "hello.team-a", CallbackURL: cb.URL + "/hook"})
			require.True(t, h.step())

			inv := h.get("hello.team-a", "cb1")
			assert.Equal(t, api.InvocationSucceeded, inv.Status)
			assert.Equal(t, tt.status, inv.CallbackStatus)
			assert.Len(t, h.sleeps, tt.sleeps, "a wait between tries")
			outcome := "delivered"
			if tt.received == 0 {
				outcome = "failed"
			}
			assert.Equal(t, 1.0, value(t, h.w.metrics.callbacks.WithLabelValues(outcome)))
			require.Len(t, rc.got, tt.received)
			if tt.received > 0 {
				got := rc.got[0]
				assert.Equal(t, "hello", got.Function, "callbacks show the API's view")
				assert.Equal(t, "team-a", got.Namespace)
				assert.Equal(t, api.InvocationSucceeded, got.Status)
				assert.Equal(t, "result", string(got.Result.Body))
				assert.Equal(t, "cb1", rc.headers[0].Get(api.HeaderInvocationID))
				assert.Equal(t, "application/json", rc.headers[0].Get("Content-Type"))
			}
		})
	}
}

// A callback the policy refuses is not sent, nor retried: to a metadata
// address always, to loopback unless allowed, whatever name dials it.
func TestCallbackRefusedByPolicy(t *testing.T) {
	rc := &receiver{}
	cb := httptest.NewServer(rc)
	t.Cleanup(cb.Close)
	_, port, err := net.SplitHostPort(cb.Listener.Addr().String())
	require.NoError(t, err)
	for _, tc := range []struct{ name, url, want string }{
		{"metadata", "http://169.254.169.254/latest/meta-data/", "link-local"},
		{"loopback by name, refused at dial", "http://localhost4.invalid.:" + port + "/hook", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil)
			h.w.cfg.CallbackPolicy = callbackurl.Policy{}
			// A resolver that names the loopback receiver: the check is at
			// the dial, on the address.
			h.w.deps.CallbackClient.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				d := &net.Dialer{Control: h.w.cfg.CallbackPolicy.Control}
				return d.DialContext(ctx, network, cb.Listener.Addr().String())
			}
			h.submit(api.Invocation{ID: "r1", Function: "hello", CallbackURL: tc.url})
			require.True(t, h.step())
			inv := h.get("hello", "r1")
			assert.Equal(t, api.InvocationSucceeded, inv.Status)
			assert.True(t, strings.HasPrefix(inv.CallbackStatus, "Refused: "), inv.CallbackStatus)
			assert.Contains(t, inv.CallbackStatus, "callback address refused")
			assert.Contains(t, inv.CallbackStatus, tc.want)
			assert.Empty(t, h.sleeps, "no retry")
			assert.Equal(t, 1.0, value(t, h.w.metrics.callbacks.WithLabelValues("refused")))
		})
	}
	assert.Empty(t, rc.got, "nothing reached the receiver")
}

func TestNoCallbackBeforeFinal(t *testing.T) {
	rc := &receiver{}
	cb := httptest.NewServer(rc)
	t.Cleanup(cb.Close)
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "", http.StatusBadGateway)
	}), nil)
	h.submit(api.Invocation{ID: "x", CallbackURL: cb.URL, MaxAttempts: 2})
	require.True(t, h.step())
	assert.Empty(t, rc.got, "a retry is not a result")
	h.advanceTo(h.get("hello", "x").NextAttemptAt)
	require.True(t, h.step())
	require.Len(t, rc.got, 1)
	assert.Equal(t, api.InvocationDeadLetter, rc.got[0].Status)
}

func TestLostClaimDropsTheOutcome(t *testing.T) {
	rc := &receiver{}
	cb := httptest.NewServer(rc)
	t.Cleanup(cb.Close)
	var h *harness
	h = newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// This delivery outlives its claim: another worker takes it.
		h.advanceTo(start.Add(time.Hour))
		_, err := h.q.Claim(r.Context(), "w2", h.clock(), time.Minute)
		require.NoError(t, err)
		_, _ = io.WriteString(w, "late")
	}), nil)
	h.submit(api.Invocation{ID: "l1", CallbackURL: cb.URL})

	claimed, err := h.w.Step(context.Background())
	require.NoError(t, err, "a lost claim is not an error")
	assert.True(t, claimed)
	inv := h.get("hello", "l1")
	assert.Equal(t, api.InvocationRunning, inv.Status, "the other worker's claim stands")
	assert.Equal(t, "w2", inv.ClaimedBy)
	assert.Equal(t, 2, inv.Attempts)
	assert.Nil(t, inv.Result)
	assert.Empty(t, rc.got, "no callback for a dropped outcome")
	assert.Zero(t, h.w.InFlight("hello"))
}

func TestAsyncConcurrencyLimit(t *testing.T) {
	entered := make(chan string)
	release := make(chan struct{})
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- r.Header.Get(HeaderDeliveryID):
			<-release
		case <-release: // released: no one watches any more
		}
	}), limits{"slow": {MaxConcurrency: 1, Timeout: time.Minute}, "other": {MaxConcurrency: 5, Timeout: time.Minute}})
	h.submit(api.Invocation{ID: "s1", Function: "slow"})
	h.submit(api.Invocation{ID: "s2", Function: "slow"})
	h.submit(api.Invocation{ID: "o1", Function: "other"})

	var wg sync.WaitGroup
	wg.Go(func() { h.step() })
	assert.Equal(t, "s1", <-entered)
	assert.Equal(t, 1, h.w.InFlight("slow"))

	// slow is at its limit: the next claim passes s2 by for other's o1.
	wg.Go(func() { h.step() })
	assert.Equal(t, "o1", <-entered)
	claimed, err := h.w.Step(context.Background())
	require.NoError(t, err)
	assert.False(t, claimed, "s2 waits while slow is at its limit")
	assert.Equal(t, api.InvocationQueued, h.get("slow", "s2").Status)

	close(release)
	wg.Wait()
	assert.Zero(t, h.w.InFlight("slow"))
	require.True(t, h.step())
	assert.Equal(t, api.InvocationSucceeded, h.get("slow", "s2").Status)
}

func TestExpire(t *testing.T) {
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil)
	h.submit(api.Invocation{ID: "e1"})
	require.True(t, h.step())
	h.submit(api.Invocation{ID: "e2"}) // still queued: never expires

	h.advanceTo(start.Add(api.DefaultInvocationRetention))
	n, err := h.w.Expire(context.Background())
	require.NoError(t, err)
	assert.Zero(t, n, "kept for the whole retention")

	h.advanceTo(start.Add(api.DefaultInvocationRetention + time.Second))
	n, err = h.w.Expire(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = h.q.Get(context.Background(), "hello", "e1")
	assert.Error(t, err)
	assert.Equal(t, api.InvocationQueued, h.get("hello", "e2").Status)
}

func TestRunDeliversConcurrently(t *testing.T) {
	var inFlight, peak atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
	}))
	t.Cleanup(srv.Close)
	q := queuetest.NewMemory()
	w, err := New(Config{RouterURL: srv.URL, Concurrency: 4, PollInterval: time.Millisecond}, Deps{Queue: q})
	require.NoError(t, err)
	for i := range 20 {
		_, _, err := q.Enqueue(context.Background(), api.Invocation{ID: string(rune('a' + i)), Function: "hello", CreatedAt: time.Now(), MaxAttempts: 1, Request: api.InvocationRequest{Method: "POST", Path: "/"}})
		require.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	require.Eventually(t, func() bool {
		list, err := q.List(context.Background(), "hello", 0)
		require.NoError(t, err)
		for _, inv := range list {
			if inv.Status != api.InvocationSucceeded {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	assert.LessOrEqual(t, peak.Load(), int32(4))
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"defaults", Config{}, ""},
		{"router without scheme", Config{RouterURL: "127.0.0.1:8080"}, "RouterURL"},
		{"router with a path", Config{RouterURL: "http://127.0.0.1:8080/x"}, "RouterURL"},
		{"bad domain", Config{Domain: "Bad_Domain"}, "domain"},
		{"negative concurrency", Config{Concurrency: -1}, "Concurrency"},
		{"cap below base", Config{BackoffBase: time.Minute, BackoffCap: time.Second}, "BackoffBase"},
		{"negative poll", Config{PollInterval: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	_, err := New(Config{}, Deps{})
	assert.ErrorContains(t, err, "Queue")
}

// value reads a counter's or a gauge's value.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	require.NoError(t, m.Write(&out))
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}

func TestShutdownHandsBackTheDelivery(t *testing.T) {
	entered := make(chan struct{})
	var calls atomic.Int32
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 { // the first delivery hangs until the worker stops
			close(entered)
			<-r.Context().Done()
		}
	}), nil)
	h.submit(api.Invocation{ID: "s1"})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-entered; cancel() }()
	claimed, err := h.w.Step(ctx)
	assert.True(t, claimed)
	assert.ErrorIs(t, err, context.Canceled)
	inv := h.get("hello", "s1")
	assert.Equal(t, api.InvocationQueued, inv.Status, "due again at once, not after the claim lapses")
	assert.Equal(t, start, inv.NextAttemptAt)
	assert.Contains(t, inv.LastError, "stopped mid-delivery")
	assert.True(t, h.step(), "another attempt takes it")
	assert.Equal(t, api.InvocationSucceeded, h.get("hello", "s1").Status)
}

// countingQueue counts claims.
type countingQueue struct {
	*queuetest.Memory
	claims atomic.Int32
}

func (q *countingQueue) Claim(ctx context.Context, worker string, now time.Time, visibility time.Duration, functions ...string) (api.Invocation, error) {
	q.claims.Add(1)
	return q.Memory.Claim(ctx, worker, now, visibility, functions...)
}

// A worker whose only work is of a function at its async limit claims
// again as soon as one of that function's deliveries ends, not a poll
// interval later: waiting would cap the function at MaxConcurrency
// deliveries per PollInterval (50/s with the defaults).
func TestSaturatedWorkerClaimsWhenADeliveryEnds(t *testing.T) {
	entered := make(chan string)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(HeaderDeliveryID)
		entered <- id
		if id == "s1" {
			<-release
		}
	}))
	t.Cleanup(srv.Close)
	q := queuetest.NewMemory()
	for i, id := range []string{"s1", "s2"} {
		_, _, err := q.Enqueue(context.Background(), api.Invocation{ID: id, Function: "slow", MaxAttempts: 1,
			CreatedAt: start.Add(time.Duration(i)), Request: api.InvocationRequest{Method: "POST", Path: "/"}})
		require.NoError(t, err)
	}
	w, err := New(Config{RouterURL: srv.URL, Concurrency: 4}, Deps{Queue: q,
		Functions: limits{"slow": {MaxConcurrency: 1, Timeout: time.Minute}},
		// A poll interval that never runs out: only a delivery's end
		// (or the end of Run) can wake the claim loop.
		Sleep: func(ctx context.Context, d time.Duration) error {
			<-ctx.Done()
			return ctx.Err()
		}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()

	require.Equal(t, "s1", <-entered)
	close(release) // s1 ends; slow has room again
	select {
	case id := <-entered:
		assert.Equal(t, "s2", id)
	case <-time.After(10 * time.Second): // a guard against a hang, not a wait
		t.Fatal("the worker did not claim again when slow's delivery ended")
	}
	cancel()
	require.NoError(t, <-done)
}

func TestIdleWorkerPollsOnce(t *testing.T) {
	q := &countingQueue{Memory: queuetest.NewMemory()}
	ctx, cancel := context.WithCancel(context.Background())
	polls := 0
	w, err := New(Config{RouterURL: "http://127.0.0.1:1", Concurrency: 16}, Deps{Queue: q,
		Sleep: func(ctx context.Context, d time.Duration) error {
			if d == DefaultExpireInterval {
				<-ctx.Done() // the expire loop
				return ctx.Err()
			}
			if polls++; polls == 3 {
				cancel()
			}
			return ctx.Err()
		}})
	require.NoError(t, err)
	require.NoError(t, w.Run(ctx))
	assert.EqualValues(t, 3, q.claims.Load(), "an idle worker asks once per poll, not once per slot")
}

func TestRouterURLFor(t *testing.T) {
	for listen, want := range map[string]string{
		":8080":          "http://127.0.0.1:8080",
		"0.0.0.0:80":     "http://127.0.0.1:80",
		"[::]:8080":      "http://[::1]:8080",
		"10.1.2.3:8080":  "http://10.1.2.3:8080",
		"localhost:9000": "http://localhost:9000",
	} {
		got, err := RouterURLFor(listen)
		require.NoError(t, err, listen)
		assert.Equal(t, want, got, listen)
		assert.NoError(t, Config{RouterURL: got}.Validate(), listen)
	}
	_, err := RouterURLFor("8080")
	assert.Error(t, err)
}

// visibilityQueue records the visibility of each claim that took one.
type visibilityQueue struct {
	*queuetest.Memory
	mu   sync.Mutex
	took map[string]time.Duration // invocation ID → its claim's visibility
}

func (q *visibilityQueue) Claim(ctx context.Context, worker string, now time.Time, visibility time.Duration, functions ...string) (api.Invocation, error) {
	inv, err := q.Memory.Claim(ctx, worker, now, visibility, functions...)
	if err == nil {
		q.mu.Lock()
		q.took[inv.ID] = visibility
		q.mu.Unlock()
	}
	return inv, err
}

// TestClaimVisibilityFollowsKnownTimeouts: a known function's invocation
// is claimed for its own timeout plus the margin, not the default
// timeout's, so a killed worker's claims on it lapse soon; a function no
// record names still gets the default timeout's.
func TestClaimVisibilityFollowsKnownTimeouts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	q := &visibilityQueue{Memory: queuetest.NewMemory(), took: map[string]time.Duration{}}
	fns := limits{"short": {MaxConcurrency: 5, Timeout: 2 * time.Second}, "other": {MaxConcurrency: 5, Timeout: 5 * time.Second}}
	w, err := New(Config{RouterURL: srv.URL, Name: "w1", VisibilityMargin: time.Second}, Deps{Queue: q, Functions: fns})
	require.NoError(t, err)
	ctx := context.Background()
	for i, fn := range []string{"gone", "short"} {
		_, _, err := q.Enqueue(ctx, api.Invocation{ID: fn + "-1", Function: fn, MaxAttempts: 1,
			Request: api.InvocationRequest{Method: "POST", Path: "/"}, CreatedAt: start.Add(time.Duration(i) * time.Second)})
		require.NoError(t, err)
	}
	for range 2 {
		claimed, err := w.Step(ctx)
		require.NoError(t, err)
		require.True(t, claimed)
	}
	_, err = w.Step(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]time.Duration{
		// The known functions first, though the other is older.
		"short-1": 5*time.Second + time.Second,
		"gone-1":  api.DefaultTimeout + time.Second,
	}, q.took)
}

// TestWakeCutsThePollShort: an idle worker whose poll would never end
// delivers an invocation at once when woken.
func TestWakeCutsThePollShort(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get(HeaderDeliveryID)
	}))
	t.Cleanup(srv.Close)
	q := &countingQueue{Memory: queuetest.NewMemory()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := New(Config{RouterURL: srv.URL}, Deps{Queue: q,
		Sleep: func(ctx context.Context, d time.Duration) error {
			<-ctx.Done() // no poll ends on its own: only a wake (or the end)
			return ctx.Err()
		}})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	// Idle: the first claim found nothing.
	for q.claims.Load() == 0 {
		runtime.Gosched()
	}
	_, _, err = q.Enqueue(ctx, api.Invocation{ID: "w1", Function: "hello", MaxAttempts: 1,
		Request: api.InvocationRequest{Method: "POST", Path: "/"}, CreatedAt: time.Now()})
	require.NoError(t, err)
	w.Wake()
	select {
	case id := <-got:
		assert.Equal(t, "w1", id)
	case <-time.After(10 * time.Second):
		t.Fatal("the woken worker did not deliver")
	}
	w.Wake() // a wake with nobody idle is kept, not blocked on
	w.Wake()
	cancel()
	require.NoError(t, <-done)
}
