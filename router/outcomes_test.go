package router

import (
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/api"
)

// outcomes sums the outcomes of revision in every report the sink got; nil
// when none carried any.
func (s *sink) outcomes(revision string) *api.Outcomes {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum *api.Outcomes
	for _, st := range s.stats {
		if st.Revision == revision && st.Outcomes != nil {
			if sum == nil {
				sum = &api.Outcomes{}
			}
			sum.Add(*st.Outcomes)
		}
	}
	return sum
}

// ended is how many requests the sink's reports say ended, over all
// revisions.
func (s *sink) ended() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, st := range s.stats {
		if st.Outcomes != nil {
			n += st.Outcomes.Requests
		}
	}
	return n
}

// answered is o with all its requests in the latency bucket of took.
func answered(o api.Outcomes, took time.Duration) *api.Outcomes {
	o.AddLatency(took, o.Requests)
	return &o
}

// scriptedActivator answers a hand-off with its revision's script.
type scriptedActivator map[string]func(ctx *fasthttp.RequestCtx)

func (a scriptedActivator) Serve(ctx *fasthttp.RequestCtx, _, revision string, _ time.Time) {
	a[revision](ctx)
}

// answer is a handler that answers status after a while.
func answer(status int, after time.Duration) func(*fasthttp.RequestCtx) {
	return func(ctx *fasthttp.RequestCtx) {
		time.Sleep(after) // a slow replica; in the synctest bubble this is fake time
		ctx.SetStatusCode(status)
	}
}

// oneIn answers every n-th request with rare, the others with common.
func oneIn(n int64, common, rare func(*fasthttp.RequestCtx)) func(*fasthttp.RequestCtx) {
	var seen atomic.Int64
	return func(ctx *fasthttp.RequestCtx) {
		if seen.Add(1)%n == 0 {
			rare(ctx)
			return
		}
		common(ctx)
	}
}

// hangUp reads the request, then closes the connection without a word.
func hangUp(ctx *fasthttp.RequestCtx) {
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(net.Conn) {})
}

// TestOutcomes drives requests through the router and checks that each
// ends in exactly one outcome of its revision, in the router's reports.
func TestOutcomes(t *testing.T) {
	const fast, slow, coldStart = time.Millisecond, 250 * time.Millisecond, 2 * time.Second
	const interval = 100 * time.Millisecond
	// fn is one function of a case, with one revision, fn+"-00001".
	type fn struct {
		name string
		// replica answers the revision's requests; with none and
		// refused false, the revision has no replica at all.
		replica func(ctx *fasthttp.RequestCtx)
		// refused gives the revision a replica whose address refuses
		// connections.
		refused  bool
		requests int
		wantCode int // 0: any
		want     *api.Outcomes
		// wantP50 and wantP99, when set, are the quantiles the analysis
		// reads, within the buckets' error.
		wantP50, wantP99 time.Duration
	}
	tests := []struct {
		name      string
		activator scriptedActivator
		fns       []fn
	}{
		{
			name: "answered by a ready replica: status and latency",
			fns: []fn{
				{name: "ok", replica: answer(200, fast), requests: 10, wantCode: 200,
					want: answered(api.Outcomes{Requests: 10}, fast)},
				{name: "fails", replica: answer(500, fast), requests: 5, wantCode: 500,
					want: answered(api.Outcomes{Requests: 5, Errors5xx: 5}, fast)},
				{name: "slow", replica: answer(200, slow), requests: 3, wantCode: 200,
					want: answered(api.Outcomes{Requests: 3}, slow)},
				{name: "notfound", replica: answer(404, fast), requests: 2, wantCode: 404,
					want: answered(api.Outcomes{Requests: 2}, fast)},
				// One request in 50 is slow and fails: p50 is the fast
				// answers', p99 the slow ones'.
				{name: "mixed", replica: oneIn(50, answer(200, fast), answer(500, slow)), requests: 100,
					want: func() *api.Outcomes {
						o := &api.Outcomes{Requests: 100, Errors5xx: 2}
						o.AddLatency(fast, 98)
						o.AddLatency(slow, 2)
						return o
					}(),
					wantP50: fast, wantP99: slow},
			},
		},
		{
			name: "no replica took it and no activator: connection errors, no latency",
			fns: []fn{
				{name: "none", requests: 2, wantCode: 503,
					want: &api.Outcomes{Requests: 2, ConnErrors: 2}},
				{name: "refused", refused: true, requests: 3, wantCode: 502,
					want: &api.Outcomes{Requests: 3, ConnErrors: 3}},
				{name: "hangsup", replica: hangUp, requests: 2, wantCode: 502,
					want: &api.Outcomes{Requests: 2, ConnErrors: 2}},
			},
		},
		{
			name: "handed to the activator: the final status counts, the cold start's time does not",
			activator: scriptedActivator{
				"wakes-00001":   answer(200, coldStart),
				"fails-00001":   answer(503, coldStart),
				"refused-00001": answer(200, fast),
			},
			fns: []fn{
				{name: "wakes", requests: 4, wantCode: 200, want: &api.Outcomes{Requests: 4}},
				{name: "fails", requests: 2, wantCode: 503, want: &api.Outcomes{Requests: 2, Errors5xx: 2}},
				// Refused by its replica, then held by the activator:
				// counted once, as the activator's answer.
				{name: "refused", refused: true, requests: 3, wantCode: 200, want: &api.Outcomes{Requests: 3}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &sink{}
				deps := Deps{Stats: s}
				if tc.activator != nil {
					deps.Activator = tc.activator
				}
				e := newBubbleEnv(t, Config{StatsInterval: interval, SampleInterval: interval / 10}, deps)
				var sent int64
				for _, f := range tc.fns {
					revision := f.name + "-00001"
					e.deploy(f.name, []rev{{name: revision}}, nil)
					switch {
					case f.replica != nil:
						e.endpoint(f.name, revision, "r1", e.startMemBackend(f.name, f.replica).addr, 0)
					case f.refused:
						e.endpoint(f.name, revision, "r1", f.name+"-nobody-listens", 0)
					}
					sent += int64(f.requests)
				}
				synctest.Wait()
				for _, f := range tc.fns {
					for range f.requests {
						code, _, _ := e.get(host(f.name), "/", nil)
						if f.wantCode != 0 {
							require.Equal(t, f.wantCode, code, f.name)
						}
					}
				}
				// Poll the reports, one interval at a time, until they
				// have every request.
				for i := 0; s.ended() < sent && i < 10; i++ {
					time.Sleep(interval) // synctest bubble time: the next report
					synctest.Wait()
				}
				require.Equal(t, sent, s.ended(), "every request ended in exactly one outcome")
				for _, f := range tc.fns {
					got := s.outcomes(f.name + "-00001")
					assert.Equal(t, f.want, got, f.name)
					if f.wantP50 > 0 && got != nil {
						// Quarter-octave buckets: a quantile is off by
						// less than a bucket's width, at most 25%.
						fig := got.Figures()
						assert.InEpsilon(t, float64(f.wantP50), float64(fig.P50), 0.25, "%s p50 %s", f.name, fig.P50)
						assert.InEpsilon(t, float64(f.wantP99), float64(fig.P99), 0.25, "%s p99 %s", f.name, fig.P99)
					}
				}
			})
		})
	}
}

// TestOutcomesAreReportedPerInterval checks that a report carries the
// outcomes of its own interval only, and none once requests stop.
func TestOutcomesAreReportedPerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sink{}
		const interval = 100 * time.Millisecond
		e := newBubbleEnv(t, Config{StatsInterval: interval, SampleInterval: interval / 10}, Deps{Stats: s})
		e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
		e.endpoint("fn", "fn-00001", "r1", e.startMemBackend("fn", answer(200, 0)).addr, 0)
		e.waitRoute(host("fn"), 1)

		// reports takes the reports the sink got so far.
		reports := func() []api.RevisionStat {
			s.mu.Lock()
			defer s.mu.Unlock()
			out := s.stats
			s.stats = nil
			return out
		}
		reports()
		for round := range 3 {
			for range round + 1 {
				code, _, _ := e.get(host("fn"), "/", nil)
				require.Equal(t, 200, code)
			}
			time.Sleep(interval) // synctest bubble time
			synctest.Wait()
			got := reports()
			require.Len(t, got, 1, "round %d", round)
			require.NotNil(t, got[0].Outcomes, "round %d", round)
			assert.Equal(t, int64(round+1), got[0].Outcomes.Requests, "round %d", round)
		}
		time.Sleep(interval) // synctest bubble time
		synctest.Wait()
		got := reports()
		require.Len(t, got, 1, "one report says the revision went quiet")
		assert.Nil(t, got[0].Outcomes, "no request ended in the quiet interval")
	})
}
