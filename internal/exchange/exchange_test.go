package exchange

import (
	"bufio"
	"context"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/internal/replicaset"
	"github.com/ebbrun/ebb/internal/revstats"
	"github.com/ebbrun/ebb/store"
)

// Replica behaviours, by address.
const (
	answers   = "answers"   // answers 200 "ok" after 10ms
	answers2  = "answers-2" // the same, a second replica
	refuses   = "refuses"   // connection refused: nothing was sent
	refuses2  = "refuses-2" // the same, a second replica
	refuses3  = "refuses-3" // and a third
	hangsUp   = "hangs-up"  // reads the request, then closes: it was sent
	noFiles   = "no-files"  // this process is out of descriptors
	answerFor = 10 * time.Millisecond
)

// upstreams plays the replicas on in-memory pipes, so the tests run in a
// testing/synctest bubble, and counts the connections each was asked for.
type upstreams struct {
	mu    sync.Mutex
	dials map[string]int
	lns   map[string]*fasthttputil.InmemoryListener
}

func startUpstreams(t *testing.T) *upstreams {
	u := &upstreams{dials: map[string]int{}, lns: map[string]*fasthttputil.InmemoryListener{}}
	var wg sync.WaitGroup
	for _, addr := range []string{answers, answers2, hangsUp} {
		ln := fasthttputil.NewInmemoryListener()
		u.lns[addr] = ln
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() { serveRaw(c, addr) })
			}
		})
	}
	t.Cleanup(func() {
		for _, ln := range u.lns {
			_ = ln.Close()
		}
		wg.Wait()
	})
	return u
}

var okResponse = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

// serveRaw answers requests on c as the replica at addr would. It
// allocates nothing per request, so as not to count in allocation tests.
func serveRaw(c net.Conn, addr string) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if string(line) == "\r\n" {
				break
			}
		}
		if addr == hangsUp {
			return
		}
		time.Sleep(answerFor)
		if _, err := c.Write(okResponse); err != nil {
			return
		}
	}
}

func (u *upstreams) dial(addr string) (net.Conn, error) {
	u.mu.Lock()
	u.dials[addr]++
	ln := u.lns[addr]
	u.mu.Unlock()
	switch addr {
	case refuses, refuses2, refuses3:
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	case noFiles:
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}
	return ln.Dial()
}

func (u *upstreams) dialed(addr string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.dials[addr]
}

// latencies is an Observer that keeps every sample.
type latencies struct {
	mu      sync.Mutex
	samples []float64
}

func (l *latencies) Observe(s float64) {
	l.mu.Lock()
	l.samples = append(l.samples, s)
	l.mu.Unlock()
}

// revision is one revision with the given replicas, reached through u.
func revision(t *testing.T, u *upstreams, addrs ...string) (*Revision, *latencies) {
	tr, err := proxy.NewTransport(proxy.Config{Dial: u.dial})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = tr.Run(ctx) }()
	reg := replicaset.New(nil, tr, nil)
	var eps []store.Endpoint
	for _, a := range addrs {
		eps = append(eps, store.Endpoint{Revision: "fn-00001", Replica: a, Addr: a})
	}
	reg.Update(eps)
	set := reg.Retain("fn-00001")
	t.Cleanup(func() {
		reg.Drop(set)
		cancel()
		<-done
	})
	lat := &latencies{}
	return &Revision{Set: set, Stats: revstats.NewOutcomeCounter("fn-00001"), Codes: &revstats.Codes{}, Latency: lat}, lat
}

// outcomes are the outcomes rev's counter has counted, read as a report
// would carry them.
func outcomes(t *testing.T, rev *Revision) *api.Outcomes {
	r, err := revstats.NewRecorder(revstats.Config{})
	require.NoError(t, err)
	r.Track(rev.Stats)
	stats := r.Collect(time.Now())
	require.Len(t, stats, 1)
	return stats[0].Outcomes
}

// acquire takes a slot on the replica at addr, as a caller of Forward
// would have (TryAcquire picks at random).
func acquire(t *testing.T, rev *Revision, addr string) *replicaset.Replica {
	for range 1000 {
		r := rev.Set.TryAcquire()
		require.NotNil(t, r)
		if r.Addr == addr {
			return r
		}
		rev.Set.Release(r)
	}
	t.Fatalf("never acquired %s", addr)
	return nil
}

func codes(c *revstats.Codes) map[int]uint64 {
	out := map[int]uint64{}
	c.Each(func(code int, n uint64) { out[code] = n })
	return out
}

func inFlight(rev *Revision) int {
	n := 0
	for _, r := range rev.Set.Replicas() {
		n += r.InFlight()
	}
	return n
}

func TestForward(t *testing.T) {
	for _, tc := range []struct {
		name       string
		replicas   []string // the first is the one the caller acquired
		maxRetries int
		wantErr    error
		wantDials  map[string]int
		wantRetry  float64
		// wantShunned is a replica marked down, which TryAcquire now takes
		// only when no other has room; wantKept one that was not.
		wantShunned, wantKept string
	}{
		{
			name:     "the replica answers",
			replicas: []string{answers}, maxRetries: 2,
			wantDials: map[string]int{answers: 1},
		},
		{
			name:     "a replica that took no byte is passed over for a free one",
			replicas: []string{refuses, answers}, maxRetries: 2,
			wantDials: map[string]int{refuses: 1, answers: 1}, wantRetry: 1, wantShunned: refuses,
		},
		{
			name:     "retries stop at MaxRetries",
			replicas: []string{refuses, refuses2, refuses3}, maxRetries: 1,
			wantErr: proxy.ErrUnavailable, wantRetry: 1,
		},
		{
			name:     "no retries with MaxRetries 0",
			replicas: []string{refuses, answers}, maxRetries: 0,
			wantErr: proxy.ErrUnavailable, wantDials: map[string]int{refuses: 1, answers: 0}, wantShunned: refuses,
		},
		{
			// A stale pooled connection is the usual cause, and a new one works.
			name:     "with no other replica, the one there is tried again",
			replicas: []string{refuses}, maxRetries: 2,
			wantErr: proxy.ErrUnavailable, wantDials: map[string]int{refuses: 3}, wantRetry: 2,
		},
		{
			name:     "a request that reached a replica is never sent again",
			replicas: []string{hangsUp, answers}, maxRetries: 2,
			wantErr: proxy.ErrUpstream, wantDials: map[string]int{hangsUp: 1, answers: 0}, wantKept: hangsUp,
		},
		{
			name:     "out of descriptors comes back at once and blames no replica",
			replicas: []string{noFiles, answers}, maxRetries: 2,
			wantErr: proxy.ErrOutOfDescriptors, wantDials: map[string]int{noFiles: 1, answers: 0}, wantKept: noFiles,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				u := startUpstreams(t)
				rev, lat := revision(t, u, tc.replicas...)
				retried := prometheus.NewCounter(prometheus.CounterOpts{Name: "retries"})
				rep := acquire(t, rev, tc.replicas[0])

				var ctx fasthttp.RequestCtx
				var req fasthttp.Request
				req.SetRequestURI("http://fn.localhost/")
				ctx.Init(&req, nil, nil)
				start := time.Now()
				rev.Stats.Start()
				err := Forward(&ctx, rev, rep, start.Add(time.Minute), &Policy{MaxRetries: tc.maxRetries, Retried: retried}, start)

				assert.Zero(t, inFlight(rev), "every replica tried is released")
				assert.Equal(t, tc.wantRetry, value(t, retried))
				dials := 0
				for _, a := range tc.replicas {
					dials += u.dialed(a)
				}
				assert.Equal(t, int(tc.wantRetry)+1, dials, "one dial per try")
				for addr, n := range tc.wantDials {
					assert.Equal(t, n, u.dialed(addr), addr)
				}
				if tc.wantShunned != "" {
					assert.Zero(t, picks(rev, tc.wantShunned), "%s is marked down", tc.wantShunned)
				}
				if tc.wantKept != "" {
					assert.Positive(t, picks(rev, tc.wantKept), "%s is not marked down", tc.wantKept)
				}
				if tc.wantErr != nil {
					require.ErrorIs(t, err, tc.wantErr)
					assert.Equal(t, int64(1), rev.Stats.InFlight(), "the caller still owns the request's accounting")
					assert.Empty(t, codes(rev.Codes))
					assert.Empty(t, lat.samples)
					assert.Nil(t, outcomes(t, rev), "the caller decides how a failed request ends")
					return
				}
				require.NoError(t, err)
				assert.Equal(t, "ok", string(ctx.Response.Body()))
				assert.Zero(t, rev.Stats.InFlight(), "the exchange ended the revision's count")
				assert.Equal(t, map[int]uint64{200: 1}, codes(rev.Codes))
				assert.Equal(t, []float64{answerFor.Seconds()}, lat.samples, "latency runs from the start given")
				want := &api.Outcomes{Requests: 1}
				want.AddLatency(answerFor, 1)
				assert.Equal(t, want, outcomes(t, rev), "an answered exchange counts as answered, with the same latency")
			})
		})
	}
}

func value(t *testing.T, c prometheus.Counter) float64 {
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

// picks is how often, in 64 tries, TryAcquire takes the replica at addr.
func picks(rev *Revision, addr string) int {
	n := 0
	for range 64 {
		r := rev.Set.TryAcquire()
		if r.Addr == addr {
			n++
		}
		rev.Set.Release(r)
	}
	return n
}

// Forward allocates nothing per request once its pools are warm.
func TestForwardAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops items at random")
	}
	synctest.Test(t, func(t *testing.T) {
		u := startUpstreams(t)
		rev, _ := revision(t, u, answers)
		rev.Latency = nil
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.SetRequestURI("http://fn.localhost/")
		ctx.Init(&req, nil, nil)
		p := &Policy{MaxRetries: DefaultMaxRetries}
		once := func() {
			rep := rev.Set.TryAcquire()
			rev.Stats.Start()
			if err := Forward(&ctx, rev, rep, time.Time{}, p, ctx.Time()); err != nil {
				t.Fatal(err)
			}
			ctx.Response.Reset()
		}
		once()
		// The replica's 10ms answer time is fake; allocations are real.
		assert.Zero(t, testing.AllocsPerRun(20, once))
	})
}

func TestValidateMaxRetries(t *testing.T) {
	for n, ok := range map[int]bool{-1: false, 0: true, 2: true, 16: true, 17: false} {
		err := ValidateMaxRetries(n)
		if ok {
			assert.NoError(t, err, n)
		} else {
			assert.Error(t, err, n)
		}
	}
}

func TestWriteError(t *testing.T) {
	var ctx fasthttp.RequestCtx
	WriteError(&ctx, fasthttp.StatusServiceUnavailable, "ebb: busy\n")
	assert.Equal(t, 503, ctx.Response.StatusCode())
	assert.Equal(t, "text/plain; charset=utf-8", string(ctx.Response.Header.ContentType()))
	assert.Equal(t, "ebb: busy\n", string(ctx.Response.Body()))
}
