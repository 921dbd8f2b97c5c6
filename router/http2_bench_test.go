package router

import (
	"bytes"
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

// BenchmarkGRPCProxy is the bench's unary gRPC path in memory: a client
// sending gRPC-shaped unary calls (a framed 5-byte message, TE: trailers),
// the router, and a replica that speaks h2c and answers with a framed
// message and grpc-status trailers.
func BenchmarkGRPCProxy(b *testing.B) {
	backendLn := fasthttputil.NewInmemoryListener()
	msg := []byte{0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}
	h2s := &http2.Server{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(200)
		_, _ = w.Write(msg)
		w.Header().Set("Grpc-Status", "0")
	})
	go func() {
		for {
			c, err := backendLn.Accept()
			if err != nil {
				return
			}
			go h2s.ServeConn(c, &http2.ServeConnOpts{Handler: handler})
		}
	}()
	b.Cleanup(func() { _ = backendLn.Close() })
	e := newEnv(b, Config{Proxy: proxy.Config{Dial: func(string) (net.Conn, error) { return backendLn.Dial() }}}, Deps{})
	e.deployH2C("hello", []rev{{name: "hello-00001"}}, nil)
	e.endpoint("hello", "hello-00001", "r1", "backend", 0)
	e.waitRoute(host("hello"), 1)
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(context.Context, string, string, *tls.Config) (net.Conn, error) {
		return e.ln.Dial()
	}}
	b.Cleanup(tr.CloseIdleConnections)
	call := func() {
		req, _ := http.NewRequest("POST", "http://hello.localhost/echo.Echo/Unary", bytes.NewReader(msg))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Trailer.Get("Grpc-Status") != "0" {
			b.Fatalf("status %d, grpc-status %q", resp.StatusCode, resp.Trailer.Get("Grpc-Status"))
		}
	}
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			call()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				call()
			}
		})
	})
}
