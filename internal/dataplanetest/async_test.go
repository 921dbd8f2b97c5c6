package dataplanetest

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/invoker"
	"github.com/ebbrun/ebb/queue/queuetest"
)

// An asynchronous request is queued by the router, then delivered by the
// invoker back through the same router as the function's host: a replica
// that fails twice gets it a third time, the result is kept, and the
// delivery does not carry Ebb-Invoke (which would queue it again).
func TestAsyncThroughTheDataPlane(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reps replicas
		var deliveries atomic.Int32
		var sawInvoke atomic.Bool
		reps.serve(t, "replica-1", func(ctx *fasthttp.RequestCtx) {
			if len(ctx.Request.Header.Peek(api.HeaderInvoke)) > 0 || len(ctx.Request.Header.Peek("X-Ebb-Attempt")) == 0 {
				sawInvoke.Store(true)
			}
			if len(ctx.Request.Header.Peek(invoker.HeaderDeliveryID)) > 0 && deliveries.Add(1) <= 2 {
				ctx.SetStatusCode(http.StatusServiceUnavailable)
				return
			}
			ctx.SetBodyString("ok:" + string(ctx.Request.Body()))
		})
		q := queuetest.NewMemory()
		p := startPlaneWith(t, &reps, "replica-1", 10, q)
		sawInvoke.Store(false) // startPlane's own warm-up request is no delivery

		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://router/work")
		req.Header.SetMethod("POST")
		req.Header.SetHost("fn.localhost")
		req.UseHostHeader = true
		req.Header.Set(api.HeaderInvoke, "async")
		req.SetBodyString("job-1")
		require.NoError(t, p.cl.Do(req, resp))
		require.Equal(t, http.StatusAccepted, resp.StatusCode(), string(resp.Body()))
		id := string(resp.Header.Peek(api.HeaderInvocationID))
		require.True(t, api.ValidInvocationID(id))
		assert.Zero(t, deliveries.Load(), "queued, not served")

		tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return p.ln.Dial() }}
		w, err := invoker.New(invoker.Config{RouterURL: "http://router", Concurrency: 2, PollInterval: 50 * time.Millisecond},
			invoker.Deps{Queue: q, Client: &http.Client{Transport: tr}})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		var inv api.Invocation
		for range 600 { // bubble time: the backoffs pass at once
			time.Sleep(time.Second) // synctest bubble time
			inv, err = q.Get(context.Background(), "fn", id)
			require.NoError(t, err)
			if inv.Status.Final() {
				break
			}
		}
		cancel()
		require.NoError(t, <-done)
		tr.CloseIdleConnections()

		assert.Equal(t, api.InvocationSucceeded, inv.Status, inv.LastError)
		assert.Equal(t, 3, inv.Attempts)
		require.NotNil(t, inv.Result)
		assert.Equal(t, "ok:job-1", string(inv.Result.Body))
		assert.EqualValues(t, 3, deliveries.Load())
		assert.False(t, sawInvoke.Load(), "every delivery carries its attempt, and none Ebb-Invoke (it would be queued again)")
	})
}
