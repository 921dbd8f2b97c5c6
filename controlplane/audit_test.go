package controlplane

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/audit"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/store/embedded"
)

// newAuditedAPI is newTestAPI with an audit log in its data dir.
func newAuditedAPI(t *testing.T) (*testAPI, *audit.Log) {
	t.Helper()
	dir := t.TempDir()
	st, err := embedded.Open(filepath.Join(dir, "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	log, err := audit.Open(filepath.Join(dir, "audit"), audit.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = log.Close() })
	spool := filepath.Join(dir, "spool")
	reg := prometheus.NewRegistry()
	imp := &recordingImporter{}
	srv, err := New(Config{Token: testToken, SpoolDir: spool, MaxBodyBytes: 4096, MaxImageBytes: 64 << 20},
		Deps{Store: st, Images: imp, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg, Gatherer: reg, Audit: log})
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &testAPI{t: t, url: ts.URL, srv: srv, store: st, images: imp, spoolDir: spool}, log
}

// TestAuditOneLinePerMutatingCall makes mutating calls that succeed and
// fail, reads and unauthenticated calls among them, and finds exactly one
// line per mutating call, in order, in the file and through GET /v1/audit.
func TestAuditOneLinePerMutatingCall(t *testing.T) {
	a, log := newAuditedAPI(t)
	type call struct {
		method, path, body, token string
		status                    int
		want                      *api.AuditEvent // nil: not a mutating call
	}
	ev := func(verb, ns, object string, status int, code string) *api.AuditEvent {
		return &api.AuditEvent{TokenID: "admin", Namespace: ns, Verb: verb, Object: object, Status: status, Code: code}
	}
	calls := []call{
		{"PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, testToken, 201, ev("update", "default", "functions/hello", 201, "")},
		{"GET", "/v1/functions/hello", "", testToken, 200, nil},
		{"PUT", "/v1/functions/hello", `{"image":"hello:latest","env":{"A":"b"}}`, testToken, 200, ev("update", "default", "functions/hello", 200, "")},
		{"PUT", "/v1/functions/hello/traffic", `{"traffic":[{"revision":"hello-00009","percent":100}]}`, testToken, 400, ev("update", "default", "functions/hello/traffic", 400, api.CodeInvalid)},
		{"PUT", "/v1/functions/Bad_Name", `{"image":"hello:latest"}`, testToken, 400, ev("update", "default", "functions/Bad_Name", 400, api.CodeInvalid)},
		{"PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, "wrong-token-wrong-token", 401, nil},
		{"POST", "/v1/nothing", `{}`, "", 404, nil},
		{"GET", "/v1/functions", "", testToken, 200, nil},
		{"DELETE", "/v1/functions/hello", "", testToken, 204, ev("delete", "default", "functions/hello", 204, "")},
		{"DELETE", "/v1/functions/hello", "", testToken, 404, ev("delete", "default", "functions/hello", 404, api.CodeNotFound)},
		{"PUT", "/v1/namespaces/team-a/functions/hello", `{"image":"hello:latest"}`, testToken, 404, ev("update", "team-a", "functions/hello", 404, api.CodeNotFound)},
		{"PUT", "/v1/namespaces/team-a", "", testToken, 201, ev("update", "team-a", "namespaces/team-a", 201, "")},
		{"PUT", "/v1/namespaces/team-a/functions/hello", `{"image":"hello:latest"}`, testToken, 201, ev("update", "team-a", "functions/hello", 201, "")},
		{"GET", "/v1/namespaces/team-a/functions/hello", "", testToken, 200, nil},
		{"PUT", "/v1/namespaces/default/functions/x", `{"image":"hello:latest"}`, testToken, 201, ev("update", "default", "functions/x", 201, "")},
		{"DELETE", "/v1/namespaces/team-a?force=true", "", testToken, 204, ev("delete", "team-a", "namespaces/team-a", 204, "")},
	}
	a.pushHello()
	want := []api.AuditEvent{*ev("create", "", "images/docker.io/library/hello:latest", 201, "")}
	for i, c := range calls {
		req, err := http.NewRequest(c.method, a.url+c.path, strings.NewReader(c.body))
		require.NoError(t, err)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		id := fmt.Sprintf("req-%d", i)
		req.Header.Set("X-Request-Id", id)
		resp, err := http.DefaultTransport.RoundTrip(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, c.status, resp.StatusCode, "%s %s", c.method, c.path)
		if c.want != nil {
			c.want.RequestID = id
			want = append(want, *c.want)
		}
	}

	// The file: one line per mutating call.
	f, err := os.Open(filepath.Join(log.Dir(), audit.FileName))
	require.NoError(t, err)
	defer f.Close()
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
		assert.NotContains(t, sc.Text(), testToken, "the token is never written")
	}
	assert.Equal(t, len(want), lines)

	// The API reads them back in order.
	var got api.AuditList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/audit", "", &got))
	require.Len(t, got.Events, len(want))
	for i := range got.Events {
		assert.WithinDuration(t, time.Now(), got.Events[i].Time, time.Minute)
		got.Events[i].Time = time.Time{}
	}
	assert.Equal(t, want, got.Events)
	assert.Zero(t, got.Skipped)
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/audit", "", &got), "reading the log is not recorded")
	assert.Len(t, got.Events, len(want))
}

func TestAuditQuery(t *testing.T) {
	a, log := newAuditedAPI(t)
	old := time.Now().Add(-2 * time.Hour)
	for _, e := range []api.AuditEvent{
		{Time: old, TokenID: "admin", Namespace: "team-a", Verb: "update", Object: "functions/old"},
		{TokenID: "admin", Namespace: "team-a", Verb: "update", Object: "functions/a1"},
		{TokenID: "admin", Namespace: "team-b", Verb: "update", Object: "functions/b1"},
		{TokenID: "node-n1", Namespace: "team-a", Verb: "read-secret", Object: "secrets/db", Status: 200},
	} {
		require.NoError(t, log.Record(t.Context(), e))
	}
	cases := []struct {
		query  string
		status int
		want   []string
	}{
		{"", 200, []string{"functions/old", "functions/a1", "functions/b1", "secrets/db"}},
		{"?namespace=team-a", 200, []string{"functions/old", "functions/a1", "secrets/db"}},
		{"?since=1h", 200, []string{"functions/a1", "functions/b1", "secrets/db"}},
		{"?since=" + old.UTC().Format(time.RFC3339Nano), 200, []string{"functions/old", "functions/a1", "functions/b1", "secrets/db"}},
		{"?limit=2&namespace=team-a", 200, []string{"functions/a1", "secrets/db"}},
		{"?limit=0", 400, nil},
		{"?limit=10001", 400, nil},
		{"?limit=x", 400, nil},
		{"?since=yesterday", 400, nil},
		{"?namespace=Bad_NS", 400, nil},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			var got api.AuditList
			var out any = &got
			if tc.status != 200 {
				out = nil
			}
			require.Equal(t, tc.status, a.do("GET", "/v1/audit"+tc.query, "", out))
			var objects []string
			for _, e := range got.Events {
				objects = append(objects, e.Object)
			}
			assert.Equal(t, tc.want, objects)
		})
	}
	assert.Equal(t, http.StatusUnauthorized, a.doRaw("GET", "/v1/audit", "", nil, "", nil))
}

func TestAuditWithoutLog(t *testing.T) {
	a := newTestAPI(t)
	assert.Equal(t, http.StatusNotImplemented, a.do("GET", "/v1/audit", "", nil))
	var buf bytes.Buffer
	_, err := ociimage.Build(&buf, ociimage.BuildOptions{Name: "hello:latest", Binary: []byte("#!/not/really\n")})
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, a.doRaw("POST", "/v1/images", "application/x-tar", &buf, testToken, nil), "no log, no audit")
}
