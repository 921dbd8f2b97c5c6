package router

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue/queuetest"
)

// send makes a request with a method, body and headers; it returns the
// status, body and response headers.
func (e *env) send(method, host, path, body string, hdr map[string]string) (int, string, *fasthttp.ResponseHeader) {
	e.t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + host + path)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.SetBodyString(body)
	require.NoError(e.t, e.client.Do(req, resp))
	h := new(fasthttp.ResponseHeader)
	resp.Header.CopyTo(h)
	return resp.StatusCode(), string(resp.Body()), h
}

func TestAsyncInvocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queuetest.NewMemory()
		e := newBubbleEnv(t, Config{}, Deps{Async: q})
		b := e.startMemBackend("a", nil)
		e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
		e.deploy("hello.team-a", []rev{{name: "hello.team-a-00001"}}, nil) // at zero
		e.endpoint("hello", "hello-00001", "r1", b.addr, 0)
		e.waitRoute(host("hello"), 1)
		e.waitRoute("hello.team-a.localhost", 0)

		code, body, h := e.send("PUT", "hello.team-a.localhost", "/items/7?x=1", `{"a":1}`, map[string]string{
			"Ebb-Invoke":             "Async",
			"Content-Type":           "application/json",
			"X-User":                 "u1",
			api.HeaderCallbackURL:    "https://203.0.113.9:9/cb",
			api.HeaderMaxAttempts:    "2",
			api.HeaderIdempotencyKey: "k",
		})
		require.Equal(t, http.StatusAccepted, code, body)
		var inv api.Invocation
		require.NoError(t, json.Unmarshal([]byte(body), &inv))
		assert.Equal(t, "hello", inv.Function)
		assert.Equal(t, "team-a", inv.Namespace)
		assert.Equal(t, api.InvocationQueued, inv.Status)
		assert.Equal(t, inv.ID, string(h.Peek(api.HeaderInvocationID)))
		assert.Equal(t, "/v1/namespaces/team-a/functions/hello/invocations/"+inv.ID, string(h.Peek("Location")))
		assert.Equal(t, "application/json", string(h.ContentType()))

		stored, err := q.Get(context.Background(), "hello.team-a", inv.ID)
		require.NoError(t, err)
		assert.Equal(t, "PUT", stored.Request.Method)
		assert.Equal(t, "/items/7?x=1", stored.Request.Path)
		assert.Equal(t, `{"a":1}`, string(stored.Request.Body))
		assert.Equal(t, "u1", stored.Request.Header.Get("X-User"))
		assert.Equal(t, "application/json", stored.Request.Header.Get("Content-Type"))
		assert.Empty(t, stored.Request.Header.Get("Ebb-Invoke"), "the delivery must not be queued again")
		assert.Empty(t, stored.Request.Header.Get("Host"))
		assert.Equal(t, 2, stored.MaxAttempts)
		assert.Equal(t, "https://203.0.113.9:9/cb", stored.CallbackURL)

		// The same Idempotency-Key is the same invocation.
		code, body, _ = e.send("POST", "hello.team-a.localhost", "/", "", map[string]string{"Ebb-Invoke": "async", api.HeaderIdempotencyKey: "k"})
		require.Equal(t, http.StatusOK, code, body)
		var again api.Invocation
		require.NoError(t, json.Unmarshal([]byte(body), &again))
		assert.Equal(t, inv.ID, again.ID)

		// A function with replicas is queued too, not served; a plain
		// request still is.
		code, _, _ = e.send("POST", host("hello"), "/", "x", map[string]string{"Ebb-Invoke": "async"})
		assert.Equal(t, http.StatusAccepted, code)
		assert.Zero(t, b.served.Load())
		code, body, _ = e.send("GET", host("hello"), "/", "", nil)
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "a", body)
		n, err := q.Depth(context.Background(), "hello")
		require.NoError(t, err)
		assert.Equal(t, 1, n)
	})
}

// failingQueue refuses every write.
type failingQueue struct{}

func (failingQueue) Enqueue(context.Context, api.Invocation) (api.Invocation, bool, error) {
	return api.Invocation{}, false, errors.New("disk full")
}

func TestAsyncInvocationRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queuetest.NewMemory()
		e := newBubbleEnv(t, Config{}, Deps{Async: q})
		e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
		e.waitRoute(host("hello"), 0)
		tests := []struct {
			name   string
			body   string
			hdr    map[string]string
			code   int
			substr string
		}{
			{"not async", "", map[string]string{"Ebb-Invoke": "sync"}, 400, "must be async"},
			{"bad callback", "", map[string]string{"Ebb-Invoke": "async", api.HeaderCallbackURL: "gopher://x"}, 400, api.HeaderCallbackURL},
			{"callback to cloud metadata", "", map[string]string{"Ebb-Invoke": "async", api.HeaderCallbackURL: "http://169.254.169.254/"}, 400, api.HeaderCallbackURL},
			{"callback to loopback, not allowed", "", map[string]string{"Ebb-Invoke": "async", api.HeaderCallbackURL: "http://localhost:9/cb"}, 400, api.HeaderCallbackURL},
			{"bad attempts", "", map[string]string{"Ebb-Invoke": "async", api.HeaderMaxAttempts: "0"}, 400, api.HeaderMaxAttempts},
			{"body over 1 MiB", strings.Repeat("x", api.MaxInvocationBody+1), map[string]string{"Ebb-Invoke": "async"}, 413, "1 MiB"},
		}
		for _, tt := range tests { // no t.Run inside a bubble
			code, body, _ := e.send("POST", host("hello"), "/", tt.body, tt.hdr)
			assert.Equal(t, tt.code, code, tt.name)
			assert.Contains(t, body, tt.substr, tt.name)
		}
		code, _, _ := e.send("POST", host("hello"), "/", strings.Repeat("x", api.MaxInvocationBody), map[string]string{"Ebb-Invoke": "async"})
		assert.Equal(t, http.StatusAccepted, code, "exactly 1 MiB is allowed")
		code, _, _ = e.send("POST", "nope.localhost", "/", "", map[string]string{"Ebb-Invoke": "async"})
		assert.Equal(t, http.StatusNotFound, code, "an unknown host is not queued")
		n, err := q.Depth(context.Background(), "hello")
		require.NoError(t, err)
		assert.Equal(t, 1, n, "only the good one was queued")
	})
}

func TestAsyncInvocationWithoutQueue(t *testing.T) {
	for _, tt := range []struct {
		name  string
		async Enqueuer
		code  int
		body  string
	}{
		{"no queue", nil, http.StatusNotImplemented, "not enabled"},
		{"queue fails", failingQueue{}, http.StatusServiceUnavailable, "could not be queued"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newBubbleEnv(t, Config{}, Deps{Async: tt.async})
				e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
				e.waitRoute(host("hello"), 0)
				code, body, _ := e.send("POST", host("hello"), "/", "x", map[string]string{"Ebb-Invoke": "async"})
				assert.Equal(t, tt.code, code)
				assert.Contains(t, body, tt.body)
			})
		})
	}
}
