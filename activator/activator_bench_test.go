package activator

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// benchActivator puts an activator behind an in-memory front, with its one
// replica (limit given) on an in-memory backend.
func benchActivator(b *testing.B, limit int) *fasthttp.HostClient {
	st, err := embedded.Open(filepath.Join(b.TempDir(), "s.db"), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	backendLn := fasthttputil.NewInmemoryListener()
	body := []byte("hello world\n")
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }, NoDefaultDate: true}
	go func() { _ = backend.Serve(backendLn) }()

	act, err := New(Config{Proxy: proxy.Config{Dial: func(string) (net.Conn, error) { return backendLn.Dial() }}},
		Deps{Store: st, ScaleUpper: &scaler{}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- act.Run(ctx) }()
	frontLn := fasthttputil.NewInmemoryListener()
	front := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		act.Serve(ctx, "fn", "fn-00001", ctx.Time().Add(time.Minute))
	}}
	go func() { _ = front.Serve(frontLn) }()
	b.Cleanup(func() {
		_ = front.Shutdown()
		_ = backend.Shutdown()
		cancel()
		<-done
		_ = st.Close()
	})
	if _, err := st.Txn(ctx, store.PutJSON(store.EndpointKey("fn-00001", "r1"),
		store.Endpoint{Function: "fn", Revision: "fn-00001", Replica: "r1", Addr: "backend", Limit: limit}, store.AnyVersion)); err != nil {
		b.Fatal(err)
	}
	rs := act.state("fn", "fn-00001")
	rs.active.Add(-1)
	for rs.set.Len() == 0 {
		time.Sleep(time.Millisecond) // polling the store watch in setup, not timing anything
	}
	return &fasthttp.HostClient{Addr: "fn.localhost", Dial: func(string) (net.Conn, error) { return frontLn.Dial() }, MaxConns: 1024}
}

// BenchmarkActivator measures requests through Serve: "direct" finds free
// capacity at once; "queued" runs 8 clients per core against a replica that
// takes one request at a time, so nearly every request is enqueued and
// released by its predecessor.
func BenchmarkActivator(b *testing.B) {
	run := func(b *testing.B, c *fasthttp.HostClient, parallel bool) {
		req := func() *fasthttp.Request {
			r := new(fasthttp.Request)
			r.SetRequestURI("http://fn.localhost/")
			return r
		}
		do := func(r *fasthttp.Request, resp *fasthttp.Response) {
			if err := c.Do(r, resp); err != nil || resp.StatusCode() != 200 {
				b.Fatalf("status %d: %v", resp.StatusCode(), err)
			}
		}
		b.ReportAllocs()
		if !parallel {
			r, resp := req(), new(fasthttp.Response)
			for b.Loop() {
				do(r, resp)
			}
			return
		}
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			r, resp := req(), new(fasthttp.Response)
			for pb.Next() {
				do(r, resp)
			}
		})
	}
	b.Run("direct", func(b *testing.B) { run(b, benchActivator(b, 0), false) })
	b.Run("queued", func(b *testing.B) { run(b, benchActivator(b, 1), true) })
}
