package router

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/ebbrun/ebb/api"
)

// TestServeFunction serves requests whose Host names no function (a VIP)
// through a named function's split, as the VIP fallback listener does.
func TestServeFunction(t *testing.T) {
	e := newEnv(t, Config{}, Deps{})
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	e.deploy("fn", []rev{{name: "fn-00001"}, {name: "fn-00002"}}, []api.TrafficTarget{
		{Revision: "fn-00001", Percent: 100},
		{Revision: "fn-00002", Percent: 0, Tag: "canary"},
	})
	e.endpoint("fn", "fn-00001", "r1", a.addr, 0)
	e.endpoint("fn", "fn-00002", "r2", b.addr, 0)
	e.waitRoute(host("fn"), 1)
	e.waitRoute("canary-fn.localhost", 1)

	// A second server whose handler picks the function by name, the way
	// the fallback listener does from the connection's origin.
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		e.r.ServeFunction(ctx, string(ctx.Request.Header.Peek("X-Test-Function")))
	}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); wg.Wait() })
	client := &fasthttp.Client{
		Dial:        func(string) (net.Conn, error) { return ln.Dial() },
		ReadTimeout: 10 * time.Second,
	}

	for _, tc := range []struct {
		name, function string
		wantCode       int
		wantBody       string
	}{
		{"the function's split, whatever the Host", "fn", 200, "a"},
		{"a tag is not a function", "canary-fn", 404, "ebb: function canary-fn has no routes\n"},
		{"unknown function", "nope", 404, "ebb: function nope has no routes\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://127.77.0.1/")
			req.Header.Set("X-Test-Function", tc.function)
			require.NoError(t, client.Do(req, resp))
			assert.Equal(t, tc.wantCode, resp.StatusCode())
			assert.Equal(t, tc.wantBody, string(resp.Body()))
		})
	}
}
