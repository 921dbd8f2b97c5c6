package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClientInvocations(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	var got struct {
		method, uri, body string
		header            http.Header
	}
	status := http.StatusAccepted
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.method, got.uri, got.body, got.header = r.Method, r.URL.RequestURI(), string(b), r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost:
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(Invocation{ID: id, Function: "hello", Namespace: "team-a", Status: InvocationQueued})
		case strings.HasSuffix(r.URL.Path, "/invocations"):
			_ = json.NewEncoder(w).Encode(InvocationList{Items: []Invocation{{ID: id}}})
		default:
			_ = json.NewEncoder(w).Encode(Invocation{ID: id, Status: InvocationSucceeded})
		}
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, testToken, WithNamespace("team-a"))
	require.NoError(t, err)
	ctx := context.Background()

	inv, dup, err := c.SubmitInvocation(ctx, "hello", SubmitInvocation{
		Body: []byte("data"), ContentType: "text/plain", Path: "/x?y=1",
		Options: InvocationOptions{CallbackURL: "http://127.0.0.1:1/cb", IdempotencyKey: "k", MaxAttempts: 7},
	})
	require.NoError(t, err)
	assert.False(t, dup)
	assert.Equal(t, id, inv.ID)
	assert.Equal(t, "POST", got.method)
	assert.Equal(t, "/v1/namespaces/team-a/functions/hello/invocations?path=%2Fx%3Fy%3D1", got.uri)
	assert.Equal(t, "data", got.body)
	assert.Equal(t, "text/plain", got.header.Get("Content-Type"))
	assert.Equal(t, "http://127.0.0.1:1/cb", got.header.Get(HeaderCallbackURL))
	assert.Equal(t, "k", got.header.Get(HeaderIdempotencyKey))
	assert.Equal(t, "7", got.header.Get(HeaderMaxAttempts))

	status = http.StatusOK
	_, dup, err = c.SubmitInvocation(ctx, "hello", SubmitInvocation{})
	require.NoError(t, err)
	assert.True(t, dup, "200 is the earlier submission")
	assert.Equal(t, "/v1/namespaces/team-a/functions/hello/invocations", got.uri)
	assert.Empty(t, got.header.Get(HeaderMaxAttempts))

	list, err := c.ListInvocations(ctx, "hello", 5)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "/v1/namespaces/team-a/functions/hello/invocations?limit=5", got.uri)

	one, err := c.GetInvocation(ctx, "hello", id)
	require.NoError(t, err)
	assert.Equal(t, InvocationSucceeded, one.Status)
	assert.Equal(t, "/v1/namespaces/team-a/functions/hello/invocations/"+id, got.uri)
}

// TestClientInvocationsRefuseBadInput: bad input never leaves the client.
func TestClientInvocationsRefuseBadInput(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)
	ctx := context.Background()
	for name, s := range map[string]SubmitInvocation{
		"big body":       {Body: make([]byte, MaxInvocationBody+1)},
		"relative path":  {Path: "x"},
		"ftp callback":   {Options: InvocationOptions{CallbackURL: "ftp://h/"}},
		"too many tries": {Options: InvocationOptions{MaxAttempts: 1000}},
	} {
		_, _, err := c.SubmitInvocation(ctx, "hello", s)
		assert.True(t, IsValidation(err), "%s: %v", name, err)
	}
	_, _, err = c.SubmitInvocation(ctx, "../x", SubmitInvocation{})
	assert.Error(t, err)
	_, err = c.GetInvocation(ctx, "hello", "../../secrets")
	assert.Error(t, err)
	assert.Zero(t, calls.Load())
}
