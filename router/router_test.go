package router

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

func TestPlan(t *testing.T) {
	revision := func(fn, name string, timeout time.Duration) store.Revision {
		return store.Revision{Name: name, Function: fn, Spec: api.FunctionSpec{Timeout: api.D(timeout)}}
	}
	revs := map[string]store.Revision{
		"a-00001":   revision("a", "a-00001", 0),
		"a-00002":   revision("a", "a-00002", 5*time.Second),
		"b-00001":   revision("b", "b-00001", time.Second),
		"x-a-00001": revision("x-a", "x-a-00001", time.Second),
		// a in namespace team-a: its qualified name is a.team-a.
		"a.team-a-00001": revision("a.team-a", "a.team-a-00001", time.Second),
	}
	for _, tc := range []struct {
		name      string
		fns       []store.Function
		wantHosts map[string]routeSpec
		wantRevs  []string
	}{
		{
			name: "latest revision takes all by default",
			fns:  []store.Function{{Name: "a", LatestRevision: "a-00002"}},
			wantHosts: map[string]routeSpec{
				"a.example.com": {Function: "a", Targets: []targetSpec{{"a-00002", 100}}},
			},
			wantRevs: []string{"a-00002"},
		},
		{
			name: "split with a tag and a zero-percent tag",
			fns: []store.Function{{Name: "a", LatestRevision: "a-00002", Traffic: []api.TrafficTarget{
				{Revision: "a-00001", Percent: 90, Tag: "stable"},
				{LatestRevision: true, Percent: 10},
				{Revision: "a-00002", Percent: 0, Tag: "canary"},
			}}},
			wantHosts: map[string]routeSpec{
				"a.example.com": {Function: "a", Targets: []targetSpec{{"a-00001", 90}, {"a-00002", 10}},
					Tags: map[string]string{"stable": "a-00001", "canary": "a-00002"}},
				"stable-a.example.com": {Function: "a", Targets: []targetSpec{{"a-00001", 100}}},
				"canary-a.example.com": {Function: "a", Targets: []targetSpec{{"a-00002", 100}}},
			},
			wantRevs: []string{"a-00001", "a-00002"},
		},
		{
			name: "unknown revisions are left out",
			fns: []store.Function{
				{Name: "a", Traffic: []api.TrafficTarget{{Revision: "a-00009", Percent: 100}}},
				{Name: "b", Traffic: []api.TrafficTarget{{Revision: "b-00001", Percent: 50}, {Revision: "b-00007", Percent: 50}}},
			},
			wantHosts: map[string]routeSpec{
				"b.example.com": {Function: "b", Targets: []targetSpec{{"b-00001", 50}}},
			},
			wantRevs: []string{"b-00001"},
		},
		{
			name: "a function host wins over a tag host with the same name",
			fns: []store.Function{
				{Name: "a", Traffic: []api.TrafficTarget{{Revision: "a-00001", Percent: 100, Tag: "x"}}},
				{Name: "x-a", Traffic: []api.TrafficTarget{{Revision: "x-a-00001", Percent: 100}}},
			},
			wantHosts: map[string]routeSpec{
				"a.example.com":   {Function: "a", Targets: []targetSpec{{"a-00001", 100}}, Tags: map[string]string{"x": "a-00001"}},
				"x-a.example.com": {Function: "x-a", Targets: []targetSpec{{"x-a-00001", 100}}},
			},
			wantRevs: []string{"a-00001", "x-a-00001"},
		},
		{
			// Qualified names give {fn}.{ns}.{domain} and
			// {tag}-{fn}.{ns}.{domain}, beside default's {fn}.{domain}.
			name: "namespaces",
			fns: []store.Function{
				{Name: "a", LatestRevision: "a-00001"},
				{Name: "a.team-a", LatestRevision: "a.team-a-00001", Traffic: []api.TrafficTarget{
					{LatestRevision: true, Percent: 100, Tag: "canary"},
				}},
			},
			wantHosts: map[string]routeSpec{
				"a.example.com":               {Function: "a", Targets: []targetSpec{{"a-00001", 100}}},
				"a.team-a.example.com":        {Function: "a.team-a", Targets: []targetSpec{{"a.team-a-00001", 100}}, Tags: map[string]string{"canary": "a.team-a-00001"}},
				"canary-a.team-a.example.com": {Function: "a.team-a", Targets: []targetSpec{{"a.team-a-00001", 100}}},
			},
			wantRevs: []string{"a-00001", "a.team-a-00001"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, used := plan("example.com", tc.fns, revs)
			assert.Equal(t, tc.wantHosts, hosts)
			var names []string
			for n := range used {
				names = append(names, n)
			}
			assert.ElementsMatch(t, tc.wantRevs, names)
		})
	}
	_, used := plan("d", []store.Function{{Name: "a", LatestRevision: "a-00001"}, {Name: "b", LatestRevision: "b-00001"}}, revs)
	assert.Equal(t, api.DefaultTimeout, used["a-00001"].Timeout, "a zero timeout means the default")
	assert.Equal(t, time.Second, used["b-00001"].Timeout)
}

func TestLookup(t *testing.T) {
	rt := &route{function: "a"}
	tb := &table{hosts: map[string]*route{"a.localhost": rt}}
	for host, want := range map[string]*route{
		"a.localhost":      rt,
		"a.localhost:8080": rt,
		"A.LocalHost":      rt,
		"a.localhost.":     rt,
		"A.localhost.:80":  rt,
		"b.localhost":      nil,
		"":                 nil,
		"a.localhost:x":    nil,
	} {
		assert.Same(t, want, tb.lookup([]byte(host)), host)
	}
}

func TestUnknownHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, Config{}, Deps{})
		code, body, _ := e.get("nope.localhost", "/", nil)
		assert.Equal(t, 404, code)
		assert.Equal(t, "ebb: no function is served at this host\n", body)
		assert.Equal(t, 1.0, e.metric("ebb_router_unknown_host_total"))
	})
}

func TestWeightSplit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, Config{}, Deps{})
		a, b := e.startMemBackend("a", nil), e.startMemBackend("b", nil)
		e.deploy("fn", []rev{{name: "fn-00001"}, {name: "fn-00002"}}, split("fn-00001", 90, "fn-00002", 10))
		e.endpoint("fn", "fn-00001", "r1", a.addr, 0)
		e.endpoint("fn", "fn-00002", "r2", b.addr, 0)
		e.waitRoute(host("fn"), 2)

		const n = 10_000
		counts := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				local := map[string]int{}
				for i := 0; i < n/16; i++ {
					code, body, _ := e.get(host("fn"), "/", nil)
					if code == 200 {
						local[body]++
					}
				}
				mu.Lock()
				for k, v := range local {
					counts[k] += v
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		total := counts["a"] + counts["b"]
		require.Equal(t, n/16*16, total)
		share := float64(counts["a"]) / float64(total)
		t.Logf("90/10 split over %d requests: %.2f%% / %.2f%%", total, 100*share, 100*(1-share))
		assert.InDelta(t, 0.90, share, 0.02)
	})
}

func TestTagRouting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, Config{}, Deps{})
		a, b := e.startMemBackend("a", nil), e.startMemBackend("b", nil)
		e.deploy("fn", []rev{{name: "fn-00001"}, {name: "fn-00002"}}, []api.TrafficTarget{
			{Revision: "fn-00001", Percent: 100, Tag: "stable"},
			{Revision: "fn-00002", Percent: 0, Tag: "canary"},
		})
		e.endpoint("fn", "fn-00001", "r1", a.addr, 0)
		e.endpoint("fn", "fn-00002", "r2", b.addr, 0)
		e.waitRoute("canary-fn.localhost", 1)
		e.waitRoute(host("fn"), 1)
		for i := 0; i < 200; i++ {
			_, body, _ := e.get("canary-fn.localhost", "/", nil)
			require.Equal(t, "b", body, "a tag URL hits only its revision")
			_, body, _ = e.get("stable-fn.localhost:8080", "/", nil)
			require.Equal(t, "a", body)
			_, body, _ = e.get(host("fn"), "/", nil)
			require.Equal(t, "a", body, "a 0% revision gets no main traffic")
		}
		// On the function's own host a tag header picks the tagged
		// revision, under ebb's name and Knative's; an unknown tag falls
		// through to the split.
		for _, tc := range []struct{ header, tag, want string }{
			{"Ebb-Tag", "canary", "b"},
			{"Knative-Serving-Tag", "canary", "b"},
			{"Knative-Serving-Tag", "stable", "a"},
			{"Ebb-Tag", "nope", "a"},
		} {
			_, body, _ := e.get(host("fn"), "/", map[string]string{tc.header: tc.tag})
			assert.Equal(t, tc.want, body, "%s: %s", tc.header, tc.tag)
		}
	})
}

// TestNamespacedHosts serves a function in a namespace at {fn}.{ns}.{domain}
// and its tag at {tag}-{fn}.{ns}.{domain}, from its qualified name alone,
// beside the default namespace's function of the same name at
// {fn}.{domain}; its metrics carry the namespace.
func TestNamespacedHosts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, Config{}, Deps{})
		a, b := e.startMemBackend("a", nil), e.startMemBackend("b", nil)
		e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
		e.deploy("hello.team-a", []rev{{name: "hello.team-a-00001"}}, []api.TrafficTarget{
			{LatestRevision: true, Percent: 100, Tag: "canary"},
		})
		e.endpoint("hello", "hello-00001", "r1", a.addr, 0)
		e.endpoint("hello.team-a", "hello.team-a-00001", "r2", b.addr, 0)
		e.waitRoute("hello.localhost", 1)
		e.waitRoute("hello.team-a.localhost", 1)
		for host, want := range map[string]string{
			"hello.localhost":               "a",
			"hello.team-a.localhost":        "b",
			"Hello.Team-A.localhost:8080":   "b",
			"canary-hello.team-a.localhost": "b",
		} {
			code, body, _ := e.get(host, "/", nil)
			assert.Equal(t, 200, code, host)
			assert.Equal(t, want, body, host)
		}
		for _, host := range []string{"team-a.localhost", "hello.team-b.localhost", "canary-hello.localhost", "x.hello.team-a.localhost"} {
			code, _, _ := e.get(host, "/", nil)
			assert.Equal(t, 404, code, host)
		}
		assert.Equal(t, 3.0, e.metric("ebb_router_requests_total", "team-a", "hello.team-a", "hello.team-a-00001", "200"))
		assert.Equal(t, 1.0, e.metric("ebb_router_requests_total", "default", "hello", "hello-00001", "200"))
	})
}

func TestStickiness(t *testing.T) {
	t.Run("cookie", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newBubbleEnv(t, Config{StickyCookie: "ebb-rev"}, Deps{})
			a, b := e.startMemBackend("a", nil), e.startMemBackend("b", nil)
			e.deploy("fn", []rev{{name: "fn-00001"}, {name: "fn-00002"}}, split("fn-00001", 50, "fn-00002", 50))
			e.endpoint("fn", "fn-00001", "r1", a.addr, 0)
			e.endpoint("fn", "fn-00002", "r2", b.addr, 0)
			e.waitRoute(host("fn"), 2)
			for i := 0; i < 20; i++ {
				_, first, h := e.get(host("fn"), "/", nil)
				cookie := string(h.Peek("Set-Cookie"))
				require.True(t, strings.HasPrefix(cookie, "ebb-rev=fn-0000"), cookie)
				name, _, _ := strings.Cut(strings.TrimPrefix(cookie, "ebb-rev="), ";")
				for j := 0; j < 20; j++ {
					_, body, h2 := e.get(host("fn"), "/", map[string]string{"Cookie": "ebb-rev=" + name})
					require.Equal(t, first, body)
					require.Empty(t, h2.Peek("Set-Cookie"), "a valid cookie is not set again")
				}
			}
			_, _, h := e.get(host("fn"), "/", map[string]string{"Cookie": "ebb-rev=fn-00099"})
			assert.NotEmpty(t, h.Peek("Set-Cookie"), "a cookie naming a revision without traffic is replaced")
		})
	})
	t.Run("header", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newBubbleEnv(t, Config{StickyHeader: "X-User"}, Deps{})
			a, b := e.startMemBackend("a", nil), e.startMemBackend("b", nil)
			e.deploy("fn", []rev{{name: "fn-00001"}, {name: "fn-00002"}}, split("fn-00001", 50, "fn-00002", 50))
			e.endpoint("fn", "fn-00001", "r1", a.addr, 0)
			e.endpoint("fn", "fn-00002", "r2", b.addr, 0)
			e.waitRoute(host("fn"), 2)
			seen := map[string]int{}
			for u := 0; u < 100; u++ {
				user := fmt.Sprintf("user-%d", u)
				_, first, _ := e.get(host("fn"), "/", map[string]string{"X-User": user})
				seen[first]++
				for j := 0; j < 5; j++ {
					_, body, _ := e.get(host("fn"), "/", map[string]string{"X-User": user})
					require.Equal(t, first, body, user)
				}
			}
			assert.Greater(t, seen["a"], 20, "users still spread over the split")
			assert.Greater(t, seen["b"], 20)
		})
	})
}

// P2C must balance, and no replica may see more than its hard limit even
// when clients push far more concurrency than the replicas take; the
// excess gets 503 here because this router has no activator.
func TestHardLimitWithoutActivator(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sink{}
		e := newBubbleEnv(t, Config{StatsInterval: 50 * time.Millisecond, SampleInterval: 5 * time.Millisecond}, Deps{Stats: s})
		release := make(chan struct{})
		slow := func(ctx *fasthttp.RequestCtx) { <-release; ctx.SetBodyString("ok") }
		a, b := e.startMemBackend("a", slow), e.startMemBackend("b", slow)
		e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
		e.endpoint("fn", "fn-00001", "r1", a.addr, 3)
		e.endpoint("fn", "fn-00001", "r2", b.addr, 3)
		e.waitRoute(host("fn"), 2)

		type result struct {
			code  int
			retry string
		}
		results := make(chan result, 20)
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _, h := e.get(host("fn"), "/", nil)
				results <- result{code, string(h.Peek("Retry-After"))}
			}()
		}
		// 14 of 20 are turned away at once; the other 6 hold the replicas.
		for i := 0; i < 14; i++ {
			r := <-results
			require.Equal(t, 503, r.code)
			assert.Equal(t, "1", r.retry)
		}
		synctest.Wait()
		require.Equal(t, []int32{3, 3}, []int32{a.inflight.Load(), b.inflight.Load()})
		close(release)
		wg.Wait()
		close(results)
		for r := range results {
			assert.Equal(t, 200, r.code)
		}
		assert.Equal(t, int32(3), a.peak.Load())
		assert.Equal(t, int32(3), b.peak.Load())
		time.Sleep(e.r.cfg.StatsInterval) // one more report, after the last request
		synctest.Wait()
		assert.Equal(t, 6.0, s.requests("fn-00001"), "stats count the directly proxied requests")
		assert.Equal(t, 6.0, e.metric("ebb_router_requests_total", "default", "fn", "fn-00001", "200"))
		assert.Equal(t, 14.0, e.metric("ebb_router_requests_total", "default", "fn", "fn-00001", "503"))
	})
}

// fakeActivator records hand-offs and answers them itself.
type fakeActivator struct {
	mu    sync.Mutex
	calls []string
	dl    []time.Time
}

func (f *fakeActivator) Serve(ctx *fasthttp.RequestCtx, function, revision string, deadline time.Time) {
	f.mu.Lock()
	f.calls = append(f.calls, function+"/"+revision)
	f.dl = append(f.dl, deadline)
	f.mu.Unlock()
	ctx.SetStatusCode(299)
	ctx.SetBodyString("activated")
}

func TestHandOffToActivator(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		act := &fakeActivator{}
		e := newBubbleEnv(t, Config{}, Deps{Activator: act})
		e.deploy("fn", []rev{{name: "fn-00001", timeout: 7 * time.Second}}, nil)
		synctest.Wait()
		start := time.Now()
		code, body, _ := e.get(host("fn"), "/", nil)
		assert.Equal(t, 299, code)
		assert.Equal(t, "activated", body)
		require.Equal(t, []string{"fn/fn-00001"}, act.calls)
		assert.Equal(t, start.Add(7*time.Second), act.dl[0], "the deadline is the revision's timeout from arrival")
		assert.Equal(t, 1.0, e.metric("ebb_router_cold_starts_total", "default", "fn", "fn-00001"))

		// Once a replica is ready the router goes direct.
		b := e.startMemBackend("b", nil)
		e.endpoint("fn", "fn-00001", "r1", b.addr, 0)
		synctest.Wait()
		_, body, _ = e.get(host("fn"), "/", nil)
		assert.Equal(t, "b", body)
		assert.Len(t, act.calls, 1)
	})
}

func TestRouteChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, Config{}, Deps{})
		a := e.startMemBackend("a", nil)
		e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
		e.endpoint("fn", "fn-00001", "r1", a.addr, 0)
		e.waitRoute(host("fn"), 1)
		_, body, _ := e.get(host("fn"), "/", nil)
		require.Equal(t, "a", body)

		// A new revision takes over when traffic moves.
		b := e.startMemBackend("b", nil)
		e.deploy("fn", []rev{{name: "fn-00001"}, {name: "fn-00002"}}, split("fn-00002", 100))
		e.endpoint("fn", "fn-00002", "r2", b.addr, 0)
		synctest.Wait()
		_, body, _ = e.get(host("fn"), "/", nil)
		assert.Equal(t, "b", body)

		// Deleting the function removes its host.
		_, err := e.st.Txn(t.Context(), store.Delete(store.FunctionKey("fn"), store.AnyVersion))
		require.NoError(t, err)
		synctest.Wait()
		code, _, _ := e.get(host("fn"), "/", nil)
		assert.Equal(t, 404, code)
		assert.Empty(t, e.r.table.Load().revs)
	})
}

// The pacing follows how long rebuilds take, which is CPU time, so this
// test runs on the wall clock (in a bubble a rebuild takes no time) and
// polls while rebuilds catch up.
func TestRouteTableRebuildsArePacedInAStorm(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	// Enough functions that each rebuild costs milliseconds.
	const base = 5000
	var ops []store.Op
	for i := range base {
		fn := fmt.Sprintf("base%04d", i)
		ops = append(ops,
			store.PutJSON(store.RevisionKey(fn, fn+"-00001"), store.Revision{Name: fn + "-00001", Function: fn, Spec: api.FunctionSpec{Image: "img"}.WithDefaults()}, store.AnyVersion),
			store.PutJSON(store.FunctionKey(fn), store.Function{Name: fn, LatestRevision: fn + "-00001"}, store.AnyVersion))
	}
	_, err := e.st.Txn(t.Context(), ops...)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(e.r.table.Load().hosts) == base }, 30*time.Second, time.Millisecond)

	// Then a storm: each deploy changes both caches, and unpaced each
	// change was a rebuild, back to back.
	rebuilds, spent := e.metric("ebb_router_table_rebuilds_total"), e.histogramSum("ebb_router_table_rebuild_seconds")
	const n = 200
	start := time.Now()
	for i := range n {
		fn := fmt.Sprintf("storm%03d", i)
		e.deploy(fn, []rev{{name: fn + "-00001"}}, nil)
	}
	require.Eventually(t, func() bool { return len(e.r.table.Load().hosts) == base+n }, 30*time.Second, time.Millisecond)
	elapsed := time.Since(start).Seconds()
	rebuilds = e.metric("ebb_router_table_rebuilds_total") - rebuilds
	spent = e.histogramSum("ebb_router_table_rebuild_seconds") - spent

	// Every rebuild but the last is followed by a pause of (rebuildDuty-1)
	// times its length, so rebuilds take a rebuildDuty-th of the time, plus
	// the last one (allowed two average rebuilds).
	assert.Less(t, rebuilds, float64(2*n), "changes shared rebuilds")
	assert.LessOrEqual(t, spent, elapsed/rebuildDuty+2*spent/rebuilds, "%.0f rebuilds took %.3fs of %.3fs", rebuilds, spent, elapsed)
	for i := range n {
		assert.NotNil(t, e.r.table.Load().lookup([]byte(host(fmt.Sprintf("storm%03d", i)))))
	}
}

func TestForwardingHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, Config{}, Deps{})
		echo := e.startMemBackend("echo", func(ctx *fasthttp.RequestCtx) {
			hdr := map[string]string{}
			for k, v := range ctx.Request.Header.All() {
				hdr[string(k)] = string(v)
			}
			b, _ := json.Marshal(hdr)
			ctx.Response.Header.Set("Keep-Alive", "timeout=5")
			ctx.Response.Header.Set("X-Fn", "1")
			ctx.SetBody(b)
		})
		e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
		e.endpoint("fn", "fn-00001", "r1", echo.addr, 0)
		e.waitRoute(host("fn"), 1)
		code, body, h := e.get(host("fn")+":8080", "/x", map[string]string{
			"Connection":      "X-Private",
			"X-Private":       "1",
			"Ebb-Revision":    "other-00001",
			"X-Forwarded-For": "198.51.100.1",
		})
		require.Equal(t, 200, code)
		var got map[string]string
		require.NoError(t, json.Unmarshal([]byte(body), &got))
		assert.NotContains(t, got, "X-Private")
		assert.NotContains(t, got, "Ebb-Revision")
		assert.Equal(t, "198.51.100.1, 127.0.0.1", got["X-Forwarded-For"])
		assert.Equal(t, "http", got["X-Forwarded-Proto"])
		assert.Equal(t, "fn.localhost:8080", got["X-Forwarded-Host"])
		assert.Equal(t, `for=127.0.0.1;host="fn.localhost:8080";proto=http`, got["Forwarded"])
		assert.Empty(t, h.Peek("Keep-Alive"))
		assert.Equal(t, "1", string(h.Peek("X-Fn")))
	})
}

func TestFunctionTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, Config{}, Deps{})
		release := make(chan struct{})
		defer close(release)
		be := e.startMemBackend("be", func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) == "/slow" {
				<-release
			}
			ctx.SetBodyString("done")
		})
		e.deploy("fn", []rev{{name: "fn-00001", timeout: 300 * time.Millisecond}}, nil)
		e.endpoint("fn", "fn-00001", "r1", be.addr, 0)
		synctest.Wait()

		start := time.Now()
		code, body, _ := e.get(host("fn"), "/slow", nil)
		assert.Equal(t, 504, code)
		assert.Equal(t, "ebb: function fn did not answer within 300ms\n", body)
		assert.Equal(t, 300*time.Millisecond, time.Since(start), "answered at the timeout, not before or after")

		for i := 0; i < 20; i++ {
			code, body, _ = e.get(host("fn"), "/fast", nil)
			assert.Equal(t, 200, code)
			assert.Equal(t, "done", body)
		}
	})
}

// rawRouter runs a router on a loopback TCP listener, for tests that need
// real socket behaviour (timeouts, half-written requests). They run on the
// wall clock: the kernel's sockets do not follow a bubble's clock.
func rawRouter(t *testing.T, cfg Config) (*env, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e := newEnv(t, cfg, Deps{Listener: ln})
	be := startBackend(t, "be", func(ctx *fasthttp.RequestCtx) {
		var n int64
		if body := ctx.RequestBodyStream(); body != nil {
			n, _ = io.Copy(io.Discard, body)
		}
		ctx.SetBodyString(fmt.Sprintf("%d", n))
	})
	e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
	e.endpoint("fn", "fn-00001", "r1", be.addr, 0)
	e.waitRoute(host("fn"), 1)
	return e, ln.Addr().String()
}

func roundTrip(t *testing.T, addr, raw string) (*http.Response, string, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body), c
}

func TestSmugglingDefense(t *testing.T) {
	_, addr := rawRouter(t, Config{})
	for _, tc := range []struct {
		name string
		raw  string
		want int
	}{
		{"content-length and chunked", "POST / HTTP/1.1\r\nHost: fn.localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"chunked then content-length", "POST / HTTP/1.1\r\nHost: fn.localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400},
		{"identity and content-length", "POST / HTTP/1.1\r\nHost: fn.localhost\r\nTransfer-Encoding: identity\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"two content-lengths", "POST / HTTP/1.1\r\nHost: fn.localhost\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400},
		{"obfuscated transfer-encoding", "POST / HTTP/1.1\r\nHost: fn.localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400},
		{"chunked is fine", "POST / HTTP/1.1\r\nHost: fn.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200},
		{"content-length is fine", "POST / HTTP/1.1\r\nHost: fn.localhost\r\nContent-Length: 3\r\n\r\nabc", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, c := roundTrip(t, addr, tc.raw)
			assert.Equal(t, tc.want, resp.StatusCode, body)
			if tc.want == 200 {
				assert.Equal(t, "3", body)
				return
			}
			// The connection must not be reused after a framing error.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := c.Read(make([]byte, 1))
			assert.Error(t, err)
		})
	}
}

func TestHeaderAndIdleBounds(t *testing.T) {
	_, addr := rawRouter(t, Config{MaxHeaderBytes: 4096, ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	t.Run("oversized header", func(t *testing.T) {
		resp, _, _ := roundTrip(t, addr, "GET / HTTP/1.1\r\nHost: fn.localhost\r\nX-Big: "+strings.Repeat("x", 8000)+"\r\n\r\n")
		assert.Equal(t, 431, resp.StatusCode)
	})
	closedWithin := func(t *testing.T, c net.Conn, limit time.Duration) {
		t.Helper()
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		assert.NoError(t, err, "the router closes the connection")
		assert.Less(t, time.Since(start), limit)
	}
	t.Run("slowloris header", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: fn.localhost\r\nX-Slow: ")
		require.NoError(t, err)
		closedWithin(t, c, 3*time.Second)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		resp, _, c := roundTrip(t, addr, "GET / HTTP/1.1\r\nHost: fn.localhost\r\n\r\n")
		require.Equal(t, 200, resp.StatusCode)
		closedWithin(t, c, 3*time.Second)
	})
}

func TestSlowStreamingAndWebSocket(t *testing.T) {
	e, addr := rawRouter(t, Config{})
	next := make(chan struct{})
	stream := startBackend(t, "stream", func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for i := 0; i < 3; i++ {
				fmt.Fprintf(w, "tick %d\n", i)
				_ = w.Flush()
				if i < 2 {
					<-next
				}
			}
		})
	})
	e.deploy("stream", []rev{{name: "stream-00001"}}, nil)
	e.endpoint("stream", "stream-00001", "r1", stream.addr, 0)
	e.waitRoute(host("stream"), 1)
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = host("stream")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("tick %d\n", i), line)
		if i < 2 {
			next <- struct{}{}
		}
	}
	resp.Body.Close()

	wsLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer wsLn.Close()
	go func() {
		c, err := wsLn.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_, _ = io.Copy(c, br)
	}()
	e.deploy("ws", []rev{{name: "ws-00001"}}, nil)
	e.endpoint("ws", "ws-00001", "r1", wsLn.Addr().String(), 0)
	e.waitRoute(host("ws"), 1)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: ws.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	require.NoError(t, err)
	wbr := bufio.NewReader(c)
	status, err := wbr.ReadString('\n')
	require.NoError(t, err)
	assert.Contains(t, status, "101")
	for {
		line, err := wbr.ReadString('\n')
		require.NoError(t, err)
		if line == "\r\n" {
			break
		}
	}
	_, err = io.WriteString(c, "frame")
	require.NoError(t, err)
	got := make([]byte, 5)
	_, err = io.ReadFull(wbr, got)
	require.NoError(t, err)
	assert.Equal(t, "frame", string(got))
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"custom domain", Config{Domain: "fn.example.com"}, true},
		{"bad domain", Config{Domain: "Bad_Domain"}, false},
		{"tiny header limit", Config{MaxHeaderBytes: 10}, false},
		{"negative timeout", Config{IdleTimeout: -1}, false},
		{"sample slower than report", Config{SampleInterval: 2 * time.Second, StatsInterval: time.Second}, false},
		{"sticky cookie and header", Config{StickyCookie: "ebb-rev", StickyHeader: "X-User"}, true},
		{"sticky cookie with attributes", Config{StickyCookie: "a=b; Path=/"}, false},
		{"sticky header with CRLF", Config{StickyHeader: "X-User\r\nX-Evil: 1"}, false},
		{"sticky header too long", Config{StickyHeader: strings.Repeat("h", 129)}, false},
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
	assert.Error(t, err, "a store is required")
}
