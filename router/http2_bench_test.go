package router

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"golang.org/x/net/http2"

	"github.com/ebbrun/ebb/internal/proxy"
)

// BenchmarkHTTP2Proxy is BenchmarkProxy for HTTP/2 streams: an h2c client
// on one connection, the router, and an HTTP/1.1 replica, all in memory.
func BenchmarkHTTP2Proxy(b *testing.B) {
	backendLn := fasthttputil.NewInmemoryListener()
	body := []byte("hello world\n")
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) }, NoDefaultDate: true}
	go func() { _ = backend.Serve(backendLn) }()
	b.Cleanup(func() { _ = backend.Shutdown() })
	e := newEnv(b, Config{Proxy: proxy.Config{Dial: func(string) (net.Conn, error) { return backendLn.Dial() }}}, Deps{})
	e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
	e.endpoint("hello", "hello-00001", "r1", "backend", 0)
	e.waitRoute(host("hello"), 1)
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(context.Context, string, string, *tls.Config) (net.Conn, error) {
		return e.ln.Dial()
	}}
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	get := func() {
		resp, err := c.Get("http://hello.localhost/")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			get()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				get()
			}
		})
	})
}
