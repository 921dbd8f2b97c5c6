package router

import (
	"fmt"
	"net"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/store"
)

// benchTable is a route table for n functions, built the way the router
// builds it, without live state.
func benchTable(n int) *table {
	fns := make([]store.Function, n)
	revs := make(map[string]store.Revision, n)
	for i := range fns {
		name := fmt.Sprintf("fn%05d", i)
		rev := name + "-00001"
		fns[i] = store.Function{Name: name, LatestRevision: rev}
		revs[rev] = store.Revision{Name: rev, Function: name, Spec: api.FunctionSpec{}.WithDefaults()}
	}
	hosts, _ := plan("localhost", fns, revs)
	t := &table{hosts: make(map[string]*route, len(hosts))}
	for h, rs := range hosts {
		t.hosts[h] = &route{function: rs.Function, targets: []target{{cum: 100, rev: &revState{name: rs.Targets[0].Revision}}}, total: 100}
	}
	return t
}

func BenchmarkRouteLookup(b *testing.B) {
	t := benchTable(10_000)
	hosts := [][]byte{[]byte("fn00042.localhost"), []byte("fn09999.localhost:8080"), []byte("FN05000.localhost")}
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if t.lookup(hosts[i%len(hosts)]) == nil {
				b.Fatal("miss")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if t.lookup(hosts[i%len(hosts)]) == nil {
					b.Fatal("miss")
				}
				i++
			}
		})
	})
}

func BenchmarkWeightedPick(b *testing.B) {
	rt := &route{targets: []target{{cum: 90, rev: &revState{name: "a"}}, {cum: 100, rev: &revState{name: "b"}}}, total: 100}
	b.ReportAllocs()
	for b.Loop() {
		_ = rt.pick(nil)
	}
}

// benchRouter is a router whose clients and replica both sit on in-memory
// listeners, so the benchmark measures the router, not the kernel.
func benchRouter(b *testing.B) *fasthttp.HostClient {
	return benchRouterWith(b, nil)
}

// benchRouterWith is benchRouter with a traffic block for hello, which
// then has revisions hello-00001 (with the replica) and hello-00002.
func benchRouterWith(b *testing.B, traffic []api.TrafficTarget) *fasthttp.HostClient {
	return benchRouterDeps(b, traffic, Deps{})
}

// benchRouterDeps is benchRouterWith with the router's optional deps.
func benchRouterDeps(b *testing.B, traffic []api.TrafficTarget, deps Deps) *fasthttp.HostClient {
	backendLn := fasthttputil.NewInmemoryListener()
	body := []byte("hello world\n")
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }, NoDefaultDate: true}
	go func() { _ = backend.Serve(backendLn) }()
	b.Cleanup(func() { _ = backend.Shutdown() })

	e := newEnv(b, Config{Proxy: proxy.Config{Dial: func(string) (net.Conn, error) { return backendLn.Dial() }}}, deps)
	revs := []rev{{name: "hello-00001"}}
	if traffic != nil {
		revs = append(revs, rev{name: "hello-00002"})
	}
	e.deploy("hello", revs, traffic)
	e.endpoint("hello", "hello-00001", "r1", "backend", 0)
	e.waitRoute(host("hello"), 1)
	return &fasthttp.HostClient{
		Addr:     "hello.localhost",
		Dial:     func(string) (net.Conn, error) { return e.ln.Dial() },
		MaxConns: 1024,
	}
}

func BenchmarkProxy(b *testing.B) {
	c := benchRouter(b)
	do := func(req *fasthttp.Request, resp *fasthttp.Response) {
		if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			b.Fatalf("status %d: %v", resp.StatusCode(), err)
		}
	}
	newReq := func() *fasthttp.Request {
		req := new(fasthttp.Request)
		req.SetRequestURI("http://hello.localhost/")
		return req
	}
	b.Run("sequential", func(b *testing.B) {
		req, resp := newReq(), new(fasthttp.Response)
		do(req, resp)
		b.ReportAllocs()
		for b.Loop() {
			do(req, resp)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			req, resp := newReq(), new(fasthttp.Response)
			for pb.Next() {
				do(req, resp)
			}
		})
	})
}

// fiveNames is a route with five matches on five different headers, the
// worst case for five rules: each reads its own header.
func fiveNames() *route {
	rt := &route{targets: []target{{cum: 100, rev: &revState{name: "stable"}}}, total: 100}
	var specs []matchSpec
	states := map[string]*revState{}
	for i := range 5 {
		name := fmt.Sprintf("m%d", i)
		specs = append(specs, matchSpec{Revision: name, Headers: []headerSpec{{fmt.Sprintf("X-Rule%d", i), "on"}}})
		states[name] = &revState{name: name}
	}
	rt.matches = newMatches(specs, states)
	return rt
}

// BenchmarkRouteSelect is the request path's route choice, host lookup and
// revision pick, for a request that matches no header rule, on a route
// with none and with five (the cost every unmatched request pays).
func BenchmarkRouteSelect(b *testing.B) {
	r := &Router{}
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.Header.SetHost("fn.localhost")
	ctx.Request.Header.Set("User-Agent", "hey/0.0.1")
	ctx.Request.Header.Set("Accept", "*/*")
	ctx.Request.Header.Set("X-User", "nobody")
	for _, bc := range []struct {
		name string
		rt   *route
	}{
		{"none", &route{targets: fiveRules().targets, total: 100}},
		{"5rules", fiveRules()},
		{"5rules-5names", fiveNames()},
	} {
		t := &table{hosts: map[string]*route{"fn.localhost": bc.rt}}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rt := t.lookup(ctx.Request.Header.Host())
				if rev, _ := r.pick(&ctx.Request.Header, rt); rev.name != "stable" {
					b.Fatal("matched")
				}
			}
		})
	}
}

// BenchmarkProxyHeaderRules is BenchmarkProxy's sequential case on a
// function without header matches and with five that the request does not
// meet: the router's throughput cost of five rules.
func BenchmarkProxyHeaderRules(b *testing.B) {
	rules := []api.TrafficTarget{{Revision: "hello-00001", Percent: 100}}
	for i := range 5 {
		rules = append(rules, api.TrafficTarget{Revision: "hello-00002", Headers: map[string]string{"User": fmt.Sprintf("tester-%d", i)}})
	}
	for _, bc := range []struct {
		name    string
		traffic []api.TrafficTarget
	}{
		{"none", []api.TrafficTarget{{Revision: "hello-00001", Percent: 100}}},
		{"5rules", rules},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := benchRouterWith(b, bc.traffic)
			req, resp := new(fasthttp.Request), new(fasthttp.Response)
			req.SetRequestURI("http://hello.localhost/")
			req.Header.Set("User", "someone")
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 || string(resp.Body()) != "hello world\n" {
					b.Fatalf("status %d: %v", resp.StatusCode(), err)
				}
			}
		})
	}
}
