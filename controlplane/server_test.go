package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/envelope"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

const testToken = "0123456789abcdef0123456789abcdef"

// recordingImporter stands in for containerd in these unit tests of the API
// logic; the real importer is tested against containerd in imagestore and
// end to end through ebbd.
type recordingImporter struct {
	mu      sync.Mutex
	imports []string
	deleted []string
	refuse  error // what Import answers, when set
}

func (r *recordingImporter) Import(_ context.Context, path string) (api.Image, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := os.Stat(path); err != nil {
		return api.Image{}, err
	}
	if r.refuse != nil {
		return api.Image{}, r.refuse
	}
	r.imports = append(r.imports, path)
	return api.Image{Name: "docker.io/library/hello:latest", Digest: "sha256:" + strings.Repeat("a", 64)}, nil
}

func (r *recordingImporter) Delete(_ context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleted = append(r.deleted, name)
	return nil
}

type testAPI struct {
	t        *testing.T
	url      string
	srv      *Server
	store    store.Store
	images   *recordingImporter
	spoolDir string
}

func newTestAPI(t *testing.T) *testAPI {
	t.Helper()
	return newTestAPIWith(t, func(*Config) {})
}

// newTestAPIWith is newTestAPI with changes to its Config.
func newTestAPIWith(t *testing.T, change func(*Config)) *testAPI {
	t.Helper()
	return newTestAPIIn(t, t.TempDir(), change)
}

// newTestAPIIn is newTestAPIWith with its state in dir: a secrets.key
// already there is the API's key.
func newTestAPIIn(t *testing.T, dir string, change func(*Config)) *testAPI {
	t.Helper()
	st, err := embedded.Open(filepath.Join(dir, "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	spool := filepath.Join(dir, "spool")
	require.NoError(t, os.MkdirAll(spool, 0o700))
	reg := prometheus.NewRegistry()
	imp := &recordingImporter{}
	cfg := Config{Token: testToken, SpoolDir: spool, MaxBodyBytes: 4096, MaxImageBytes: 64 << 20}
	change(&cfg)
	keys, err := envelope.OpenKeyFile(filepath.Join(dir, "secrets.key"), true)
	require.NoError(t, err)
	srv, err := New(cfg, Deps{Store: st, Images: imp, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg, Gatherer: reg,
		Secrets: NewSecrets(st, keys, nil)})
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &testAPI{t: t, url: ts.URL, srv: srv, store: st, images: imp, spoolDir: spool}
}

// do sends a request and decodes a JSON answer into out (if non-nil).
func (a *testAPI) do(method, path, body string, out any) int {
	a.t.Helper()
	return a.doRaw(method, path, "application/json", strings.NewReader(body), testToken, out)
}

func (a *testAPI) doRaw(method, path, contentType string, body io.Reader, token string, out any) int {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, body)
	require.NoError(a.t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	if resp.StatusCode >= 400 {
		var e api.ErrorBody
		require.NoError(a.t, json.Unmarshal(raw, &e), "error bodies are JSON envelopes: %s", raw)
		require.NotEmpty(a.t, e.Error.Code, "error code in %s", raw)
		require.NotEmpty(a.t, e.Error.Message, "error message in %s", raw)
	}
	if out != nil {
		require.NoError(a.t, json.Unmarshal(raw, out), "decode %s", raw)
	}
	return resp.StatusCode
}

// pushHello uploads a real OCI archive built from a tiny payload.
func (a *testAPI) pushHello() {
	a.t.Helper()
	var buf bytes.Buffer
	_, err := ociimage.Build(&buf, ociimage.BuildOptions{Name: "hello:latest", Binary: []byte("#!/not/really\n")})
	require.NoError(a.t, err)
	var img api.Image
	require.Equal(a.t, http.StatusCreated, a.doRaw("POST", "/v1/images", "application/x-tar", &buf, testToken, &img))
	assert.Equal(a.t, "docker.io/library/hello:latest", img.Name)
}

func TestAuth(t *testing.T) {
	a := newTestAPI(t)
	tests := []struct {
		name, path, token string
		want              int
	}{
		{"no token", "/v1/functions", "", http.StatusUnauthorized},
		{"wrong token", "/v1/functions", "wrong-token-wrong-token", http.StatusUnauthorized},
		{"right token", "/v1/functions", testToken, http.StatusOK},
		{"healthz is open", "/healthz", "", http.StatusOK},
		{"readyz is open", "/readyz", "", http.StatusOK},
		// Metrics name every function of every namespace (issue 14).
		{"metrics needs a token", "/metrics", "", http.StatusUnauthorized},
		{"metrics with the admin token", "/metrics", testToken, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, a.doRaw("GET", tt.path, "", nil, tt.token, nil))
		})
	}
}

func TestFunctionLifecycle(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()

	var fn api.Function
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, &fn))
	assert.Equal(t, "hello-00001", fn.LatestRevision)
	assert.Equal(t, "http://hello.localhost:8080/", fn.URL)
	require.Len(t, fn.Revisions, 1)
	assert.Equal(t, 100, fn.Revisions[0].Percent)
	assert.Equal(t, "docker.io/library/hello:latest", fn.Spec.Image, "the image is stored normalized")

	// Re-applying the same spec (spelled differently) creates nothing.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello", `{"image":"docker.io/library/hello:latest","port":8080}`, &fn))
	assert.Equal(t, "hello-00001", fn.LatestRevision)

	// A changed env var makes revision 00002, which takes the traffic.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","env":{"GREETING":"hi"}}`, &fn))
	assert.Equal(t, "hello-00002", fn.LatestRevision)
	require.Len(t, fn.Revisions, 2)
	assert.Equal(t, "hello-00002", fn.Revisions[0].Name)
	assert.Equal(t, 100, fn.Revisions[0].Percent)
	assert.Equal(t, 0, fn.Revisions[1].Percent)

	// Split 50/50 with a tag.
	body := `{"traffic":[{"revision":"hello-00001","percent":50},{"revision":"hello-00002","percent":50,"tag":"canary"}]}`
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello/traffic", body, &fn))
	assert.Equal(t, 50, fn.Revisions[0].Percent)
	assert.Equal(t, 50, fn.Revisions[1].Percent)
	assert.Equal(t, []string{"canary"}, fn.Revisions[0].Tags)
	require.Len(t, fn.Traffic, 2)
	assert.Equal(t, "http://canary-hello.localhost:8080/", fn.Traffic[1].URL)

	// A pinned split stays pinned when a new revision arrives.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","env":{"GREETING":"hey"}}`, &fn))
	assert.Equal(t, "hello-00003", fn.LatestRevision)
	assert.Equal(t, 0, fn.Revisions[0].Percent)

	var revs api.RevisionList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello/revisions", "", &revs))
	assert.Len(t, revs.Revisions, 3)

	var list api.FunctionList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions", "", &list))
	require.Len(t, list.Functions, 1)
	assert.Equal(t, "hello-00003", list.Functions[0].LatestRevision)

	_, err := a.store.Txn(context.Background(), store.PutJSON(store.KeepAliveKey("hello-00001"),
		store.KeepAlive{Revision: "hello-00001", Function: "hello"}, store.AnyVersion))
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/functions/hello", "", nil))
	assert.Equal(t, http.StatusNotFound, a.do("GET", "/v1/functions/hello", "", nil))
	kvs, _, err := a.store.List(context.Background(), store.PrefixRevisions)
	require.NoError(t, err)
	assert.Empty(t, kvs, "deleting a function deletes its revisions")
	kvs, _, err = a.store.List(context.Background(), store.PrefixKeepAlive)
	require.NoError(t, err)
	assert.Empty(t, kvs, "and the autoscaler's keep-alive state for them")
}

func TestStatusFromObservedState(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	exit := 2
	_, err := a.store.Txn(context.Background(),
		store.PutJSON(store.ScaleKey("hello-00001"), store.Scale{Revision: "hello-00001", Desired: 2}, store.AnyVersion),
		store.PutJSON(store.EndpointKey("hello-00001", "r1"), store.Endpoint{Revision: "hello-00001", Replica: "r1"}, store.AnyVersion),
		store.PutJSON(store.RevStatusKey("hello-00001", "n1"), store.RevisionNodeStatus{
			Revision: "hello-00001", Node: "n1", State: api.RevisionCrashLoop, Message: "exited with 2",
			Restarts: 3, LastExitCode: &exit, PreCreated: 1,
		}, store.AnyVersion),
	)
	require.NoError(t, err)
	var fn api.Function
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello", "", &fn))
	rev := fn.Revisions[0]
	assert.Equal(t, 2, rev.Desired)
	assert.Equal(t, 1, rev.Ready)
	assert.Equal(t, 1, rev.PreCreated)
	assert.Equal(t, api.RevisionCrashLoop, rev.State)
	assert.Equal(t, "exited with 2", rev.Message)
	assert.Equal(t, 3, rev.Restarts)
	require.NotNil(t, rev.LastExitCode)
	assert.Equal(t, 2, *rev.LastExitCode)

	// A revision another node serves has not failed (the activator's
	// verdict too), but its status still says what the troubled node has.
	_, err = a.store.Txn(context.Background(),
		store.PutJSON(store.RevStatusKey("hello-00001", "n2"), store.RevisionNodeStatus{
			Revision: "hello-00001", Node: "n2", State: api.RevisionReady, Ready: 1,
		}, store.AnyVersion))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/hello", "", &fn))
	rev = fn.Revisions[0]
	assert.Equal(t, api.RevisionScaling, rev.State)
	assert.Equal(t, "exited with 2", rev.Message)
}

func TestBadInput(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	tests := []struct {
		name, method, path, body string
		want                     int
		code                     string
	}{
		{"unknown field", "PUT", "/v1/functions/x", `{"image":"hello:latest","replicas":3}`, 400, api.CodeInvalid},
		{"malformed json", "PUT", "/v1/functions/x", `{"image":`, 400, api.CodeInvalid},
		{"name not a DNS label", "PUT", "/v1/functions/Bad_Name", `{"image":"hello:latest"}`, 400, api.CodeInvalid},
		{"name too long", "PUT", "/v1/functions/" + strings.Repeat("a", 64), `{"image":"hello:latest"}`, 400, api.CodeInvalid},
		{"negative scale", "PUT", "/v1/functions/x", `{"image":"hello:latest","scale":{"min":-1}}`, 400, api.CodeInvalid},
		{"inverted scale", "PUT", "/v1/functions/x", `{"image":"hello:latest","scale":{"min":3,"max":1}}`, 400, api.CodeInvalid},
		{"image not pushed", "PUT", "/v1/functions/x", `{"image":"nothere:v1"}`, 400, api.CodeInvalid},
		{"body too large", "PUT", "/v1/functions/x", `{"image":"hello:latest","args":["` + strings.Repeat("a", 5000) + `"]}`, 413, api.CodeTooLarge},
		{"percents off", "PUT", "/v1/functions/hello/traffic", `{"traffic":[{"revision":"hello-00001","percent":90}]}`, 400, api.CodeInvalid},
		{"unknown revision", "PUT", "/v1/functions/hello/traffic", `{"traffic":[{"revision":"hello-00009","percent":100}]}`, 400, api.CodeInvalid},
		{"duplicate tags", "PUT", "/v1/functions/hello/traffic", `{"traffic":[{"revision":"hello-00001","percent":50,"tag":"a"},{"latestRevision":true,"percent":50,"tag":"a"}]}`, 400, api.CodeInvalid},
		{"traffic for missing function", "PUT", "/v1/functions/nope/traffic", `{"traffic":[{"latestRevision":true,"percent":100}]}`, 404, api.CodeNotFound},
		{"get missing", "GET", "/v1/functions/nope", ``, 404, api.CodeNotFound},
		{"delete missing", "DELETE", "/v1/functions/nope", ``, 404, api.CodeNotFound},
		{"no route", "GET", "/v1/nothing", ``, 404, api.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e api.ErrorBody
			got := a.doRaw(tt.method, tt.path, "application/json", strings.NewReader(tt.body), testToken, &e)
			assert.Equal(t, tt.want, got, "message: %s", e.Error.Message)
			assert.Equal(t, tt.code, e.Error.Code)
		})
	}
	// Nothing half-written: only hello and its one revision exist.
	kvs, _, err := a.store.List(context.Background(), store.PrefixFunctions)
	require.NoError(t, err)
	assert.Len(t, kvs, 1)
	kvs, _, err = a.store.List(context.Background(), store.PrefixRevisions)
	require.NoError(t, err)
	assert.Len(t, kvs, 1)
}

func TestBadImageUploads(t *testing.T) {
	a := newTestAPI(t)
	var good bytes.Buffer
	_, err := ociimage.Build(&good, ociimage.BuildOptions{Name: "hello:latest", Binary: []byte("x")})
	require.NoError(t, err)
	tests := []struct {
		name        string
		contentType string
		body        []byte
		refuse      error // what the runtime's import says
		want        int
		code        string
	}{
		{"not a tar", "application/x-tar", []byte("this is not an archive"), nil, 400, api.CodeInvalidArchive},
		{"truncated", "application/x-tar", good.Bytes()[:good.Len()/2], nil, 400, api.CodeInvalidArchive},
		{"empty", "application/x-tar", nil, nil, 400, api.CodeInvalidArchive},
		{"wrong content type", "application/json", good.Bytes(), nil, 415, api.CodeUnsupportedType},
		{"too large", "application/x-tar", bytes.Repeat([]byte{0}, 65<<20), nil, 413, api.CodeTooLarge},
		{"image for another platform", "application/x-tar", good.Bytes(),
			fmt.Errorf("import image hello: %w", &ociimage.ArchiveError{Msg: "the image is for platform linux/arm64, this node runs linux/amd64"}),
			400, api.CodeInvalidArchive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.images.mu.Lock()
			a.images.refuse = tt.refuse
			a.images.mu.Unlock()
			var e api.ErrorBody
			got := a.doRaw("POST", "/v1/images", tt.contentType, bytes.NewReader(tt.body), testToken, &e)
			assert.Equal(t, tt.want, got, "message: %s", e.Error.Message)
			assert.Equal(t, tt.code, e.Error.Code)
			if tt.refuse != nil {
				assert.Contains(t, e.Error.Message, "this node runs linux/amd64", "the runtime's reason reaches the uploader")
			}
		})
	}
	assert.Empty(t, a.images.imports, "no refused archive reaches the runtime")
	left, err := os.ReadDir(a.spoolDir)
	require.NoError(t, err)
	assert.Empty(t, left, "no spooled upload stays behind")
	kvs, _, err := a.store.List(context.Background(), store.PrefixImages)
	require.NoError(t, err)
	assert.Empty(t, kvs)
}

// TestConcurrentSpecChanges checks that racing writers never lose a
// revision: every distinct spec gets its own generation.
func TestConcurrentSpecChanges(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	const writers = 8
	var wg sync.WaitGroup
	codes := make([]int, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = a.do("PUT", "/v1/functions/race", fmt.Sprintf(`{"image":"hello:latest","env":{"N":"%d"}}`, i), nil)
		}()
	}
	wg.Wait()
	for _, c := range codes {
		assert.Contains(t, []int{200, 201}, c)
	}
	var revs api.RevisionList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/race/revisions", "", &revs))
	assert.Len(t, revs.Revisions, writers)
}
