package controlplane

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue/queuetest"
	"github.com/ebbrun/ebb/store"
)

// newInvocationsAPI is a test API with a queue and functions hello (in
// default) and hello in team-a.
func newInvocationsAPI(t *testing.T) (*testAPI, *queuetest.Memory) {
	t.Helper()
	a := newTestAPI(t)
	q := queuetest.NewMemory()
	a.srv.deps.Queue = q
	a.put(store.PutJSON(store.FunctionKey("hello"), store.Function{Name: "hello"}, store.MustNotExist),
		store.PutJSON(store.NamespaceKey("team-a"), store.Namespace{Name: "team-a"}, store.MustNotExist),
		store.PutJSON(store.FunctionKey("hello.team-a"), store.Function{Name: "hello.team-a"}, store.MustNotExist))
	return a, q
}

// submit POSTs body with headers to path and returns the status, the
// answer's headers and its invocation.
func (a *testAPI) submit(path, body string, headers map[string]string) (int, http.Header, api.Invocation) {
	a.t.Helper()
	req, err := http.NewRequest("POST", a.url+path, strings.NewReader(body))
	require.NoError(a.t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	var inv api.Invocation
	if resp.StatusCode < 300 {
		require.NoError(a.t, api.DecodeStrict(resp.Body, &inv))
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, resp.Header, inv
}

func TestSubmitInvocation(t *testing.T) {
	a, q := newInvocationsAPI(t)
	status, h, inv := a.submit("/v1/namespaces/team-a/functions/hello/invocations?path=/jobs%3Fx%3D1", `{"n":1}`, map[string]string{
		"Content-Type":           "application/json",
		api.HeaderCallbackURL:    "http://203.0.113.9:9/hook",
		api.HeaderMaxAttempts:    "3",
		api.HeaderIdempotencyKey: "k1",
		"X-Other":                "not kept",
	})
	require.Equal(t, http.StatusAccepted, status)
	assert.True(t, api.ValidInvocationID(inv.ID))
	assert.Equal(t, inv.ID, h.Get(api.HeaderInvocationID))
	assert.Equal(t, "/v1/namespaces/team-a/functions/hello/invocations/"+inv.ID, h.Get("Location"))
	assert.Equal(t, "hello", inv.Function, "the API shows the bare name")
	assert.Equal(t, "team-a", inv.Namespace)
	assert.Equal(t, api.InvocationQueued, inv.Status)
	assert.Equal(t, 3, inv.MaxAttempts)
	assert.Equal(t, "http://203.0.113.9:9/hook", inv.CallbackURL)

	stored, err := q.Get(context.Background(), "hello.team-a", inv.ID)
	require.NoError(t, err)
	assert.Equal(t, api.InvocationRequest{Method: "POST", Path: "/jobs?x=1", Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"n":1}`)}, stored.Request)

	// The same key again is the same invocation, not a new one.
	status, h, again := a.submit("/v1/namespaces/team-a/functions/hello/invocations", `other`, map[string]string{api.HeaderIdempotencyKey: "k1"})
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, inv.ID, again.ID)
	assert.Equal(t, inv.ID, h.Get(api.HeaderInvocationID))

	// Read it back, alone and in the list; the default namespace's hello is another function.
	var got api.Invocation
	require.Equal(t, http.StatusOK, a.do("GET", h.Get("Location"), "", &got))
	assert.Equal(t, inv.ID, got.ID)
	status, _, second := a.submit("/v1/namespaces/team-a/functions/hello/invocations", "", nil)
	require.Equal(t, http.StatusAccepted, status)
	var list api.InvocationList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/functions/hello/invocations", "", &list))
	require.Len(t, list.Items, 2)
	assert.Equal(t, second.ID, list.Items[0].ID, "newest first")
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/functions/hello/invocations?limit=1", "", &list))
	assert.Len(t, list.Items, 1)
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/invocations", "", &list))
	assert.Empty(t, list.Items)
	assert.Equal(t, http.StatusNotFound, a.do("GET", "/v1/functions/hello/invocations/"+inv.ID, "", nil), "another function's invocation")

	// Deleting the function drops its invocations.
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/namespaces/team-a/functions/hello", "", nil))
	n, err := q.Depth(context.Background(), "hello.team-a")
	require.NoError(t, err)
	assert.Zero(t, n)
	_, err = q.Get(context.Background(), "hello.team-a", inv.ID)
	assert.Error(t, err)
}

func TestSubmitInvocationBadInput(t *testing.T) {
	a, _ := newInvocationsAPI(t)
	tests := []struct {
		name    string
		path    string
		body    string
		headers map[string]string
		status  int
		field   string
	}{
		{"unknown function", "/v1/functions/nope/invocations", "", nil, http.StatusNotFound, "does not exist"},
		{"unknown namespace", "/v1/namespaces/zz/functions/hello/invocations", "", nil, http.StatusNotFound, ""},
		{"bad function name", "/v1/functions/Bad_Name/invocations", "", nil, http.StatusBadRequest, "name"},
		{"body too large", "/v1/functions/hello/invocations", strings.Repeat("x", api.MaxInvocationBody+1), nil, http.StatusRequestEntityTooLarge, ""},
		{"callback not http", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderCallbackURL: "file:///etc/passwd"}, http.StatusBadRequest, api.HeaderCallbackURL},
		{"callback without host", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderCallbackURL: "http://"}, http.StatusBadRequest, api.HeaderCallbackURL},
		{"callback with user info", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderCallbackURL: "http://u:p@h/"}, http.StatusBadRequest, api.HeaderCallbackURL},
		{"callback to cloud metadata", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderCallbackURL: "http://169.254.169.254/latest/meta-data/"}, http.StatusBadRequest, api.HeaderCallbackURL},
		{"callback to loopback, not allowed", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderCallbackURL: "http://127.0.0.1:9/hook"}, http.StatusBadRequest, api.HeaderCallbackURL},
		{"callback to a private address, not allowed", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderCallbackURL: "http://[fd00::1]/hook"}, http.StatusBadRequest, api.HeaderCallbackURL},
		{"callback too long", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderCallbackURL: "http://h/" + strings.Repeat("a", 3000)}, http.StatusBadRequest, api.HeaderCallbackURL},
		{"attempts not a number", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderMaxAttempts: "many"}, http.StatusBadRequest, api.HeaderMaxAttempts},
		{"zero attempts", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderMaxAttempts: "0"}, http.StatusBadRequest, api.HeaderMaxAttempts},
		{"too many attempts", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderMaxAttempts: "101"}, http.StatusBadRequest, api.HeaderMaxAttempts},
		{"negative attempts", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderMaxAttempts: "-3"}, http.StatusBadRequest, api.HeaderMaxAttempts},
		{"huge idempotency key", "/v1/functions/hello/invocations", "", map[string]string{api.HeaderIdempotencyKey: strings.Repeat("k", 300)}, http.StatusBadRequest, api.HeaderIdempotencyKey},
		{"relative path", "/v1/functions/hello/invocations?path=x", "", nil, http.StatusBadRequest, "path"},
		{"path with a space", "/v1/functions/hello/invocations?path=/a%20b", "", nil, http.StatusBadRequest, "path"},
		{"path with a newline", "/v1/functions/hello/invocations?path=/a%0Ab", "", nil, http.StatusBadRequest, "path"},
		{"empty path", "/v1/functions/hello/invocations?path=", "", nil, http.StatusBadRequest, "path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", a.url+tt.path, strings.NewReader(tt.body))
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+testToken)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			var e api.ErrorBody
			require.NoError(t, api.DecodeStrict(resp.Body, &e))
			assert.Equal(t, tt.status, resp.StatusCode, e.Error.Message)
			assert.Contains(t, e.Error.Message, tt.field)
		})
	}
}

func TestReadInvocationsBadInput(t *testing.T) {
	a, _ := newInvocationsAPI(t)
	tests := []struct {
		name, path string
		status     int
	}{
		{"unknown id", "/v1/functions/hello/invocations/00000000000000000000000000000000", http.StatusNotFound},
		{"id not hex", "/v1/functions/hello/invocations/..%2F..%2Fsecrets", http.StatusNotFound},
		{"long id", "/v1/functions/hello/invocations/" + strings.Repeat("a", 500), http.StatusNotFound},
		{"list of an unknown function", "/v1/functions/nope/invocations", http.StatusNotFound},
		{"limit zero", "/v1/functions/hello/invocations?limit=0", http.StatusBadRequest},
		{"limit too big", "/v1/functions/hello/invocations?limit=100000", http.StatusBadRequest},
		{"limit not a number", "/v1/functions/hello/invocations?limit=ten", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.status, a.do("GET", tt.path, "", nil))
		})
	}
}

func TestInvocationsWithoutQueue(t *testing.T) {
	a := newTestAPI(t)
	assert.Equal(t, http.StatusNotImplemented, a.do("GET", "/v1/functions/hello/invocations", "", nil))
	status, _, _ := a.submit("/v1/functions/hello/invocations", "", nil)
	assert.Equal(t, http.StatusNotImplemented, status)
}

func TestNamespaceDeleteDropsInvocations(t *testing.T) {
	a, q := newInvocationsAPI(t)
	status, _, _ := a.submit("/v1/namespaces/team-a/functions/hello/invocations", "", nil)
	require.Equal(t, http.StatusAccepted, status)
	status, _, kept := a.submit("/v1/functions/hello/invocations", "", nil)
	require.Equal(t, http.StatusAccepted, status)

	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/namespaces/team-a", "", nil))
	n, err := q.Depth(context.Background(), "hello.team-a")
	require.NoError(t, err)
	assert.Zero(t, n)
	_, err = q.Get(context.Background(), "hello", kept.ID)
	assert.NoError(t, err, "the default namespace's hello keeps its invocations")
}
