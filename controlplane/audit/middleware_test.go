package audit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// testAPI is a small API shaped like the control plane's: a bearer check
// that names the token, namespaced and cluster-wide routes, a catch-all.
func testAPI(calls *int) http.Handler {
	mux := http.NewServeMux()
	ok := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			*calls++
			if r.PathValue("name") == "missing" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotFound, Message: "no"}})
				return
			}
			if r.PathValue("name") == "pushed" {
				SetObject(r.Context(), "images/hello:v1")
				SetVerb(r.Context(), "push")
			}
			w.Header().Set("X-Handler", "yes")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"ok":true}`))
		}
	}
	for _, p := range []string{"/v1/functions/{name}", "/v1/namespaces/{ns}/functions/{name}", "/v1/namespaces/{ns}/secrets/{name}"} {
		mux.Handle("PUT "+p, ok(http.StatusOK))
		mux.Handle("DELETE "+p, ok(http.StatusNoContent))
		mux.Handle("GET "+p, ok(http.StatusOK))
	}
	mux.Handle("PUT /v1/functions/{name}/traffic", ok(http.StatusOK))
	mux.Handle("PUT /v1/namespaces/{ns}", ok(http.StatusOK))
	mux.Handle("POST /v1/images", ok(http.StatusCreated))
	mux.Handle("POST /v1/images/{name}", ok(http.StatusCreated))
	mux.Handle("POST /internal/stats", ok(http.StatusOK))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/unauthenticated" {
			mux.ServeHTTP(w, r) // a route outside authentication, like the catch-all
			return
		}
		tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !found {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		ctx := WithActor(r.Context(), "id-"+tok)
		if tok == "viewer" && r.Method != http.MethodGet {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: "forbidden", Message: "functions:write"}})
			return
		}
		mux.ServeHTTP(w, r.WithContext(ctx))
	})
}

type reports struct {
	mu     sync.Mutex
	events []Event
}

func (r *reports) report(e Event, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func do(h http.Handler, method, path, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(`{}`))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Request-Id", "req-"+method)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestMiddlewareRecordsMutatingCalls(t *testing.T) {
	cases := []struct {
		method, path, token string
		status              int
		want                *Event // nil: no line
	}{
		{"PUT", "/v1/functions/hello", "dev", 200, &Event{TokenID: "id-dev", Namespace: "default", Verb: "update", Object: "functions/hello", Status: 200, RequestID: "req-PUT"}},
		{"PUT", "/v1/namespaces/team-a/functions/hello", "dev", 200, &Event{TokenID: "id-dev", Namespace: "team-a", Verb: "update", Object: "functions/hello", Status: 200, RequestID: "req-PUT"}},
		{"DELETE", "/v1/namespaces/team-a/secrets/db", "dev", 204, &Event{TokenID: "id-dev", Namespace: "team-a", Verb: "delete", Object: "secrets/db", Status: 204, RequestID: "req-DELETE"}},
		{"DELETE", "/v1/functions/missing", "dev", 404, &Event{TokenID: "id-dev", Namespace: "default", Verb: "delete", Object: "functions/missing", Status: 404, Code: "not_found", RequestID: "req-DELETE"}},
		{"PUT", "/v1/functions/hello/traffic", "dev", 200, &Event{TokenID: "id-dev", Namespace: "default", Verb: "update", Object: "functions/hello/traffic", Status: 200, RequestID: "req-PUT"}},
		{"PUT", "/v1/namespaces/team-b", "admin", 200, &Event{TokenID: "id-admin", Namespace: "team-b", Verb: "update", Object: "namespaces/team-b", Status: 200, RequestID: "req-PUT"}},
		{"POST", "/v1/images", "admin", 201, &Event{TokenID: "id-admin", Verb: "create", Object: "images", Status: 201, RequestID: "req-POST"}},
		{"POST", "/v1/images/pushed", "admin", 201, &Event{TokenID: "id-admin", Verb: "push", Object: "images/hello:v1", Status: 201, RequestID: "req-POST"}},
		{"PUT", "/v1/functions/hello", "viewer", 403, &Event{TokenID: "id-viewer", Namespace: "default", Verb: "update", Object: "functions/hello", Status: 403, Code: "forbidden", RequestID: "req-PUT"}},
		{"GET", "/v1/functions/hello", "dev", 200, nil},
		{"PUT", "/v1/functions/hello", "", 401, nil},
		{"POST", "/internal/stats", "dev", 200, nil},
		{"PUT", "/v1/unauthenticated", "", 404, nil},
		{"PUT", "/v1/nothing/here", "dev", 404, &Event{TokenID: "id-dev", Verb: "update", Object: "nothing/here", Status: 404, RequestID: "req-PUT"}},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path+" "+tc.token, func(t *testing.T) {
			l, _ := openTest(t, Options{})
			var calls int
			var rep reports
			h := l.Middleware(testAPI(&calls), MiddlewareConfig{Report: rep.report})
			w := do(h, tc.method, tc.path, tc.token)
			assert.Equal(t, tc.status, w.Code)
			res, err := l.Read(Query{})
			require.NoError(t, err)
			if tc.want == nil {
				assert.Empty(t, res.Events)
				return
			}
			require.Len(t, res.Events, 1)
			got := res.Events[0]
			assert.False(t, got.Time.IsZero())
			got.Time = tc.want.Time
			assert.Equal(t, *tc.want, got)
			assert.Empty(t, rep.events)
		})
	}
}

// lineChecker is a ResponseWriter that, when the answer starts, checks
// that the audit log already holds a line for it.
type lineChecker struct {
	*httptest.ResponseRecorder
	t     *testing.T
	l     *Log
	lines int
}

func (c *lineChecker) WriteHeader(code int) {
	res, err := c.l.Read(Query{})
	require.NoError(c.t, err)
	c.lines = len(res.Events)
	c.ResponseRecorder.WriteHeader(code)
}

func TestMiddlewareWritesTheLineBeforeTheAnswer(t *testing.T) {
	l, _ := openTest(t, Options{})
	var calls int
	h := l.Middleware(testAPI(&calls), MiddlewareConfig{Report: (&reports{}).report})
	w := &lineChecker{ResponseRecorder: httptest.NewRecorder(), t: t, l: l}
	req := httptest.NewRequest("PUT", "/v1/functions/hello", nil)
	req.Header.Set("Authorization", "Bearer dev")
	h.ServeHTTP(w, req)
	assert.Equal(t, 1, w.lines, "the line was on disk when the status went out")
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, `{"ok":true}`, w.Body.String(), "the handler's answer is sent unchanged")
	assert.Equal(t, "yes", w.Header().Get("X-Handler"))
}

func TestMiddlewareFailsClosedWhileTheLogCannotBeWritten(t *testing.T) {
	l, _ := openTest(t, Options{})
	current := withFaultyFile(t, l)
	var calls int
	var rep reports
	h := l.Middleware(testAPI(&calls), MiddlewareConfig{Report: rep.report})

	require.Equal(t, http.StatusOK, do(h, "PUT", "/v1/functions/a", "dev").Code)
	current().set(func(f *faultyFile) { f.full = true })

	// The call in flight changed something: it says so, and its line is
	// reported and held.
	w := do(h, "PUT", "/v1/functions/b", "dev")
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, w.Body.String(), api.CodeAuditUnavailable)
	assert.Contains(t, w.Body.String(), "carried out (status 200)")
	assert.Empty(t, w.Header().Get("X-Handler"), "the handler's headers are dropped with its answer")
	require.Len(t, rep.events, 1)
	assert.Equal(t, "functions/b", rep.events[0].Object)
	assert.Equal(t, 2, calls)

	// Later changes are refused before they run; reads go on.
	w = do(h, "DELETE", "/v1/functions/c", "dev")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Contains(t, w.Body.String(), api.CodeAuditUnavailable)
	assert.Equal(t, 2, calls, "the refused call never reached its handler")
	assert.Equal(t, http.StatusOK, do(h, "GET", "/v1/functions/c", "dev").Code)
	assert.Equal(t, 3, calls)

	// Once the disk takes writes the held line goes first.
	current().set(func(f *faultyFile) { f.full = false })
	require.Equal(t, http.StatusNoContent, do(h, "DELETE", "/v1/functions/c", "dev").Code)
	res, err := l.Read(Query{})
	require.NoError(t, err)
	assert.Equal(t, []string{"functions/a", "functions/b", "functions/c"}, objects(res.Events))
}

func TestObjectOf(t *testing.T) {
	cases := []struct{ path, ns, object string }{
		{"/v1/functions/hello", "default", "functions/hello"},
		{"/v1/functions/hello/traffic", "default", "functions/hello/traffic"},
		{"/v1/secrets/db", "default", "secrets/db"},
		{"/v1/jobs/batch", "default", "jobs/batch"},
		{"/v1/namespaces/team-a/jobs/batch", "team-a", "jobs/batch"},
		{"/v1/namespaces/team-a/functions/hello", "team-a", "functions/hello"},
		{"/v1/namespaces/team-a/secrets/db/", "team-a", "secrets/db"},
		{"/v1/namespaces/team-a", "team-a", "namespaces/team-a"},
		{"/v1/namespaces", "", "namespaces"},
		{"/v1/images", "", "images"},
		{"/v1/tokens/abc", "", "tokens/abc"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			ns, object := objectOf(tc.path)
			assert.Equal(t, tc.ns, ns)
			assert.Equal(t, tc.object, object)
		})
	}
}

func TestContextWithoutMiddleware(t *testing.T) {
	ctx := context.Background()
	assert.Empty(t, ActorFrom(ctx))
	SetObject(ctx, "x") // nothing to tell; must not panic
	SetNamespace(ctx, "x")
	SetVerb(ctx, "x")
	assert.Equal(t, "tok", ActorFrom(WithActor(ctx, "tok")))
}
