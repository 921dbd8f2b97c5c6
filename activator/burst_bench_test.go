package activator

import (
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// BenchmarkBurstMemory buffers 10,000 concurrent requests for a revision at
// zero and reports the heap they hold, per request. The figure includes
// each request's fasthttp connection state (on both ends of the in-memory
// pipe) and its waiting goroutines, not just the activator's bookkeeping.
func BenchmarkBurstMemory(b *testing.B) {
	const n = 10_000
	for b.Loop() {
		e := newEnv(b, Config{})
		ln := fasthttputil.NewInmemoryListener()
		front := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			e.act.Serve(ctx, "fn", "fn-00001", ctx.Time().Add(time.Minute))
		}}
		go func() { _ = front.Serve(ln) }()
		c := &fasthttp.HostClient{Addr: "fn.localhost", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: n, ReadTimeout: time.Minute}

		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				req.SetRequestURI("http://fn.localhost/")
				_ = c.Do(req, resp)
				fasthttp.ReleaseRequest(req)
				fasthttp.ReleaseResponse(resp)
			}()
		}
		deadline := time.Now().Add(time.Minute)
		for e.waiting() < n {
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d requests buffered", e.waiting(), n)
			}
			time.Sleep(10 * time.Millisecond) // setup: wait until all are buffered
		}
		runtime.GC()
		var during runtime.MemStats
		runtime.ReadMemStats(&during)
		b.ReportMetric(float64(during.HeapInuse+during.StackInuse-before.HeapInuse-before.StackInuse)/n, "bytes/buffered-req")
		b.ReportMetric(float64(runtime.NumGoroutine())/n, "goroutines/buffered-req")
		// Fail the revision so every buffered request is answered at once.
		e.status("node-a", "Failed", "benchmark over", 0)
		wg.Wait()
		_ = front.Shutdown()
		_ = ln.Close()
	}
}
