package router

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/accesslog"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/internal/tracing/otlp"
)

// BenchmarkProxyObserved is BenchmarkProxy with nothing observing requests
// (the default: no clock read, header parse or SDK call is added), with an
// access log (to a discarded stdout, and into the in-memory rings), and
// with an access log and OTLP tracing to a receiver on loopback. Compare
// the sub-benchmarks of one run: their ratio is the cost of each.
func BenchmarkProxyObserved(b *testing.B) {
	for _, bc := range []struct {
		name string
		deps func(b *testing.B) Deps
	}{
		{"off", func(*testing.B) Deps { return Deps{} }},
		{"accesslog", func(b *testing.B) Deps {
			l, err := accesslog.New(accesslog.Config{Output: accesslog.OutputStdout}, io.Discard)
			require.NoError(b, err)
			return Deps{AccessLog: l}
		}},
		{"accesslog+otlp", func(b *testing.B) Deps {
			l, err := accesslog.New(accesslog.Config{Output: accesslog.OutputStdout}, io.Discard)
			require.NoError(b, err)
			recv := testenv.StartOTLPReceiver(b)
			exp, err := otlp.New(context.Background(), otlp.Config{Endpoint: recv.URL})
			require.NoError(b, err)
			b.Cleanup(func() { _ = exp.Shutdown(context.Background()) })
			return Deps{AccessLog: l, Tracer: exp}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := benchRouterDeps(b, nil, bc.deps(b))
			do := func(req *fasthttp.Request, resp *fasthttp.Response) {
				if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Fatalf("status %d: %v", resp.StatusCode(), err)
				}
			}
			b.Run("sequential", func(b *testing.B) {
				req, resp := new(fasthttp.Request), new(fasthttp.Response)
				req.SetRequestURI("http://hello.localhost/")
				do(req, resp)
				b.ReportAllocs()
				for b.Loop() {
					do(req, resp)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					req, resp := new(fasthttp.Request), new(fasthttp.Response)
					req.SetRequestURI("http://hello.localhost/")
					for pb.Next() {
						do(req, resp)
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			})
		})
	}
}
