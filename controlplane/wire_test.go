package controlplane

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/envelope"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// openAPIAt starts an API on the embedded store in dir (created or
// reopened), so a test can stop it and start another on the same file:
// an ebbd restart. stop closes the server and the store.
func openAPIAt(t *testing.T, dir string, history int) (a *testAPI, stop func()) {
	t.Helper()
	st, err := embedded.Open(filepath.Join(dir, "state.db"), embedded.Options{History: history})
	require.NoError(t, err)
	spool := filepath.Join(dir, "spool")
	require.NoError(t, os.MkdirAll(spool, 0o700))
	keys, err := envelope.OpenKeyFile(filepath.Join(dir, "secrets.key"), true)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	srv, err := New(Config{Token: testToken, SpoolDir: spool, MaxBodyBytes: 4096, MaxImageBytes: 64 << 20},
		Deps{Store: st, Images: &recordingImporter{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg, Gatherer: reg, Secrets: NewSecrets(st, keys, nil)})
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ts.CloseClientConnections()
			ts.Close()
			require.NoError(t, st.Close())
		})
	}
	t.Cleanup(stop)
	return &testAPI{t: t, url: ts.URL, srv: srv, store: st, spoolDir: spool}, stop
}

// send is do with request headers; it returns the status, the answer's
// headers, and decodes the body into out.
func (a *testAPI) send(method, path, body string, header http.Header, out any) (int, http.Header) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	require.NoError(a.t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	if resp.StatusCode >= 400 {
		var e api.ErrorBody
		require.NoError(a.t, json.Unmarshal(raw, &e), "error bodies are JSON envelopes: %s", raw)
		require.NotEmpty(a.t, e.Error.Code, "%s", raw)
		if out != nil {
			require.NoError(a.t, json.Unmarshal(raw, out))
		}
		return resp.StatusCode, resp.Header
	}
	if out != nil {
		require.NoError(a.t, json.Unmarshal(raw, out), "decode %s", raw)
	}
	return resp.StatusCode, resp.Header
}

func ifMatch(rv string) http.Header { return http.Header{"If-Match": {rv}} }

func (a *testAPI) client() *api.Client {
	c, err := api.NewClient(a.url, testToken)
	require.NoError(a.t, err)
	return c
}

func TestListParametersHostile(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	lists := []string{
		"/v1/functions", "/v1/namespaces/default/functions", "/v1/functions/hello/revisions", "/v1/namespaces",
		"/v1/secrets", "/v1/tokens", "/v1/images", "/v1/nodes",
	}
	bad := []string{
		"limit=0", "limit=-1", "limit=99999", "limit=1001", "limit=abc", "limit=", "limit=1e3", "limit=1&limit=2",
		"continue=", "continue=garbage!", "continue=" + strings.Repeat("A", 2000), "continue=djE6", // "v1:" and no key
		"continue=eDp5", // base64 of "x:y": not ours
		"continue=a&continue=b",
	}
	for _, list := range lists {
		for _, q := range bad {
			t.Run(list+"?"+q, func(t *testing.T) {
				var e api.ErrorBody
				code, _ := a.send("GET", list+"?"+q, "", nil, &e)
				assert.Equal(t, http.StatusBadRequest, code)
				assert.Equal(t, api.CodeInvalid, e.Error.Code)
			})
		}
		code, _ := a.send("GET", list+"?limit=1000", "", nil, nil)
		assert.Equal(t, http.StatusOK, code, list)
	}
	for _, q := range []string{"labelSelector=app", "labelSelector=app!=x", "labelSelector=-bad=x", "labelSelector=a=b,a=c", "labelSelector=a=" + strings.Repeat("v", 64), "watch=maybe", "watch=true&resourceVersion=abc", "watch=true&resourceVersion=-3", "watch=true&resourceVersion=0", "watch=true&resourceVersion=99999999999999999999"} {
		code, _ := a.send("GET", "/v1/functions?"+q, "", nil, nil)
		assert.Equal(t, http.StatusBadRequest, code, q)
	}
}

func TestListPagination(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	names := []string{"e", "a", "d", "c", "b"}
	for _, n := range names {
		require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/"+n, `{"image":"hello:latest"}`, nil))
	}
	var got []string
	q := "?limit=2"
	pages := 0
	for {
		var list api.FunctionList
		code, _ := a.send("GET", "/v1/functions"+q, "", nil, &list)
		require.Equal(t, http.StatusOK, code)
		pages++
		for _, f := range list.Functions {
			got = append(got, f.Name)
		}
		if list.Continue == "" {
			break
		}
		assert.Len(t, list.Functions, 2)
		q = "?limit=2&continue=" + list.Continue
		if pages == 2 {
			// A function created between pages before the cursor is not
			// returned, one after it is.
			require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/aa", `{"image":"hello:latest"}`, nil))
			require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/f", `{"image":"hello:latest"}`, nil))
		}
	}
	assert.Equal(t, []string{"a", "b", "c", "d", "e", "f"}, got)
	assert.Equal(t, 3, pages)

	// The client fetches every page.
	all, err := a.client().ListFunctions(context.Background())
	require.NoError(t, err)
	assert.Len(t, all, 7)

	// Revisions page by name too.
	for i := range 3 {
		require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/a", fmt.Sprintf(`{"image":"hello:latest","env":{"N":"%d"}}`, i), nil))
	}
	var revs api.RevisionList
	code, _ := a.send("GET", "/v1/functions/a/revisions?limit=3", "", nil, &revs)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, revs.Revisions, 3)
	assert.Equal(t, "a-00001", revs.Revisions[0].Name)
	require.NotEmpty(t, revs.Continue)
	code, _ = a.send("GET", "/v1/functions/a/revisions?limit=3&continue="+revs.Continue, "", nil, &revs)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, revs.Revisions, 1)
	assert.Equal(t, "a-00004", revs.Revisions[0].Name)
	assert.Empty(t, revs.Continue)
}

func TestLabels(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	var fn api.Function
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/web", `{"image":"hello:latest","labels":{"app":"shop","tier":"web"}}`, &fn))
	assert.Equal(t, map[string]string{"app": "shop", "tier": "web"}, fn.Labels)
	assert.Equal(t, "web-00001", fn.LatestRevision)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/db", `{"image":"hello:latest","labels":{"app":"shop","tier":"db"}}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/other", `{"image":"hello:latest"}`, nil))
	rv1 := fn.ResourceVersion

	// A change of labels alone rewrites the record, creates no revision.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/web", `{"image":"hello:latest","labels":{"app":"shop","tier":"front","example.com/owner":"team-a"}}`, &fn))
	assert.Equal(t, "web-00001", fn.LatestRevision)
	assert.Equal(t, "front", fn.Labels["tier"])
	assert.NotEqual(t, rv1, fn.ResourceVersion)
	assert.Equal(t, 1, a.countKeys(store.RevisionsPrefix("web")))
	rev, _, err := store.GetJSON[store.Revision](context.Background(), a.store, store.RevisionKey("web", "web-00001"))
	require.NoError(t, err)
	assert.Nil(t, rev.Spec.Labels, "revisions record the spec without labels")
	// The same again writes nothing.
	rv2 := fn.ResourceVersion
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/web", `{"image":"hello:latest","labels":{"app":"shop","tier":"front","example.com/owner":"team-a"}}`, &fn))
	assert.Equal(t, rv2, fn.ResourceVersion)
	// A spec change with labels makes one revision.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/web", `{"image":"hello:latest","port":9000,"labels":{"app":"shop"}}`, &fn))
	assert.Equal(t, "web-00002", fn.LatestRevision)
	// Removing the labels is a labels-only change.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/web", `{"image":"hello:latest","port":9000}`, &fn))
	assert.Equal(t, "web-00002", fn.LatestRevision)
	assert.Empty(t, fn.Labels)
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/web", `{"image":"hello:latest","port":9000,"labels":{"app":"shop","tier":"web"}}`, &fn))

	for sel, want := range map[string][]string{
		"app=shop":                {"db", "web"},
		"app==shop,tier=db":       {"db"},
		"tier=web,app=shop":       {"web"},
		"app=nope":                {},
		"":                        {"db", "other", "web"},
		"app%3Dshop%2Ctier%3Dweb": {"web"},
	} {
		var list api.FunctionList
		code, _ := a.send("GET", "/v1/functions?labelSelector="+sel, "", nil, &list)
		require.Equal(t, http.StatusOK, code, sel)
		names := []string{}
		for _, f := range list.Functions {
			names = append(names, f.Name)
		}
		assert.Equal(t, want, names, sel)
	}
	got, err := a.client().ListFunctionsSelected(context.Background(), "app=shop")
	require.NoError(t, err)
	assert.Len(t, got, 2)

	for _, labels := range []string{
		`{"":"x"}`, `{"-a":"x"}`, `{"a-":"x"}`, `{"a b":"x"}`, `{"` + strings.Repeat("k", 64) + `":"x"}`,
		`{"/a":"x"}`, `{"Example.com/a":"x"}`, `{"a/b/c":"x"}`, `{"a":"` + strings.Repeat("v", 64) + `"}`,
		`{"a":"-v"}`, `{"a":"v v"}`, `{"a":"v\u0000"}`, `{"a":1}`, `["a"]`,
	} {
		var e api.ErrorBody
		code := a.do("PUT", "/v1/functions/bad", `{"image":"hello:latest","labels":`+labels+`}`, &e)
		assert.Equal(t, http.StatusBadRequest, code, labels)
	}
	assert.Equal(t, 0, a.countKeys(store.FunctionKey("bad")))
}

func TestResourceVersionAndIfMatch(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	var fn api.Function
	code, h := a.send("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil, &fn)
	require.Equal(t, http.StatusCreated, code)
	require.NotEmpty(t, fn.ResourceVersion)
	assert.Equal(t, strconv.Quote(fn.ResourceVersion), h.Get("ETag"))
	kv, err := a.store.Get(context.Background(), store.FunctionKey("hello"))
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatInt(kv.Version, 10), fn.ResourceVersion, "resourceVersion is the record's store version")
	rv := fn.ResourceVersion

	var got api.Function
	code, h = a.send("GET", "/v1/functions/hello", "", nil, &got)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, rv, got.ResourceVersion)
	assert.Equal(t, strconv.Quote(rv), h.Get("ETag"))

	// Bad preconditions are 400 and write nothing.
	for _, bad := range []string{"abc", "-1", "0", `"x"`, "1.5", "99999999999999999999", `W/"y"`} {
		code, _ = a.send("PUT", "/v1/functions/hello", `{"image":"hello:latest","port":1}`, ifMatch(bad), nil)
		assert.Equal(t, http.StatusBadRequest, code, bad)
	}
	code, _ = a.send("PUT", "/v1/functions/hello", `{"image":"hello:latest","resourceVersion":"zz"}`, nil, nil)
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = a.send("PUT", "/v1/functions/hello", `{"image":"hello:latest","resourceVersion":"1"}`, ifMatch("2"), nil)
	assert.Equal(t, http.StatusBadRequest, code, "If-Match and body disagree")

	// A stale version is 409, in the header (quoted or not) or the body.
	for _, stale := range []http.Header{ifMatch("1"), ifMatch(`"1"`), ifMatch(`W/"1"`)} {
		var e api.ErrorBody
		code, _ = a.send("PUT", "/v1/functions/hello", `{"image":"hello:latest","port":9000}`, stale, &e)
		assert.Equal(t, http.StatusConflict, code)
		assert.Equal(t, api.CodeConflict, e.Error.Code)
	}
	code, _ = a.send("PUT", "/v1/functions/hello", `{"image":"hello:latest","port":9000,"resourceVersion":"1"}`, nil, nil)
	assert.Equal(t, http.StatusConflict, code)
	code, _ = a.send("PUT", "/v1/functions/hello/traffic", `{"traffic":[{"latestRevision":true,"percent":100}],"resourceVersion":"1"}`, nil, nil)
	assert.Equal(t, http.StatusConflict, code)
	assert.Equal(t, 1, a.countKeys(store.RevisionsPrefix("hello")))

	// The current version wins, and moves.
	code, h = a.send("PUT", "/v1/functions/hello", `{"image":"hello:latest","port":9000}`, ifMatch(strconv.Quote(rv)), &fn)
	require.Equal(t, http.StatusOK, code)
	assert.NotEqual(t, rv, fn.ResourceVersion)
	assert.Equal(t, strconv.Quote(fn.ResourceVersion), h.Get("ETag"))
	code, _ = a.send("PUT", "/v1/functions/hello/traffic", `{"traffic":[{"revision":"hello-00001","percent":100}]}`, ifMatch(fn.ResourceVersion), &fn)
	require.Equal(t, http.StatusOK, code)
	code, _ = a.send("PUT", "/v1/functions/hello", `{"image":"hello:latest","port":9000}`, ifMatch("*"), nil)
	assert.Equal(t, http.StatusOK, code)

	// If-Match on something missing is 409; "*" too.
	for _, h := range []http.Header{ifMatch("*"), ifMatch(rv)} {
		code, _ = a.send("PUT", "/v1/functions/missing", `{"image":"hello:latest"}`, h, nil)
		assert.Equal(t, http.StatusConflict, code)
		code, _ = a.send("PUT", "/v1/namespaces/nope/quota", `{"replicas":1}`, h, nil)
		assert.Equal(t, http.StatusNotFound, code)
		code, _ = a.send("PUT", "/v1/namespaces/nope", ``, h, nil)
		assert.Equal(t, http.StatusConflict, code)
		code, _ = a.send("PUT", "/v1/secrets/nope", `{"stringData":{"k":"v"}}`, h, nil)
		assert.Equal(t, http.StatusConflict, code)
	}
	code, _ = a.send("PUT", "/v1/functions/missing/traffic", `{"traffic":[{"latestRevision":true,"percent":100}]}`, ifMatch("*"), nil)
	assert.Equal(t, http.StatusNotFound, code)
	assert.Equal(t, 0, a.countKeys(store.FunctionKey("missing")))

	// Namespaces, their quota and secrets carry versions too.
	var ns api.Namespace
	code, h = a.send("PUT", "/v1/namespaces/team-a", ``, nil, &ns)
	require.Equal(t, http.StatusCreated, code)
	require.NotEmpty(t, ns.ResourceVersion)
	assert.Equal(t, strconv.Quote(ns.ResourceVersion), h.Get("ETag"))
	code, _ = a.send("PUT", "/v1/namespaces/team-a/quota", `{"replicas":3}`, ifMatch("1"), nil)
	assert.Equal(t, http.StatusConflict, code)
	code, h = a.send("PUT", "/v1/namespaces/team-a/quota", `{"replicas":3}`, ifMatch(ns.ResourceVersion), nil)
	require.Equal(t, http.StatusOK, code)
	code, _ = a.send("PUT", "/v1/namespaces/team-a/quota", `{"replicas":4,"resourceVersion":"`+ns.ResourceVersion+`"}`, nil, nil)
	assert.Equal(t, http.StatusConflict, code, "the quota's write moved the namespace's version")
	code, _ = a.send("PUT", "/v1/namespaces/team-a/quota", `{"replicas":4}`, ifMatch(api.ParseIfMatch(h.Get("ETag"))), nil)
	assert.Equal(t, http.StatusOK, code)
	code, _ = a.send("GET", "/v1/namespaces/team-a", "", nil, &ns)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, 4, ns.Quota.Replicas)

	var sec api.SecretInfo
	code, _ = a.send("PUT", "/v1/secrets/db", `{"stringData":{"k":"v"}}`, nil, &sec)
	require.Equal(t, http.StatusCreated, code)
	require.NotEmpty(t, sec.ResourceVersion)
	code, _ = a.send("PUT", "/v1/secrets/db", `{"stringData":{"k":"w"}}`, ifMatch("1"), nil)
	assert.Equal(t, http.StatusConflict, code)
	code, _ = a.send("PUT", "/v1/secrets/db", `{"stringData":{"k":"w"},"resourceVersion":"`+sec.ResourceVersion+`"}`, nil, &sec)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, 2, sec.Generation)
	var gotSec api.SecretInfo
	code, h = a.send("GET", "/v1/secrets/db", "", nil, &gotSec)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, sec.ResourceVersion, gotSec.ResourceVersion)
	assert.Equal(t, strconv.Quote(sec.ResourceVersion), h.Get("ETag"))

	// The client's If-Match puts.
	c := a.client()
	cur, err := c.GetFunction(context.Background(), "hello")
	require.NoError(t, err)
	_, _, err = c.PutFunctionIf(context.Background(), "hello", api.FunctionSpec{Image: "hello:latest", Port: 7000}, "1")
	assert.True(t, api.IsConflict(err), "%v", err)
	out, created, err := c.PutFunctionIf(context.Background(), "hello", api.FunctionSpec{Image: "hello:latest", Port: 7000}, cur.ResourceVersion)
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, 7000, out.Spec.Port)
}

// TestConcurrentIfMatch races two PUTs with the same If-Match, many
// times: exactly one wins, the other gets 409.
func TestConcurrentIfMatch(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	var fn api.Function
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/race", `{"image":"hello:latest"}`, &fn))
	c := a.client()
	for round := range 20 {
		rv := fn.ResourceVersion
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, 2)
		outs := make([]api.Function, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				spec := api.FunctionSpec{Image: "hello:latest", Env: map[string]string{"W": fmt.Sprintf("%d-%d", round, i)}}
				outs[i], _, errs[i] = c.PutFunctionIf(context.Background(), "race", spec, rv)
			}()
		}
		close(start)
		wg.Wait()
		wins := 0
		for i, err := range errs {
			if err == nil {
				wins++
				fn = outs[i]
				continue
			}
			assert.True(t, api.IsConflict(err), "round %d: %v", round, err)
		}
		require.Equal(t, 1, wins, "round %d: exactly one of two PUTs with If-Match %s wins", round, rv)
	}
	revs, err := c.ListRevisions(context.Background(), "race")
	require.NoError(t, err)
	assert.Len(t, revs, 21, "one revision per round, none for the losers")
}

func TestDryRun(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	before := a.countKeys("")
	var fn api.Function
	code, _ := a.send("PUT", "/v1/functions/dry?dryRun=server", `{"image":"hello:latest","labels":{"app":"x"}}`, nil, &fn)
	require.Equal(t, http.StatusCreated, code)
	assert.Equal(t, "dry", fn.Name)
	assert.Equal(t, "dry-00001", fn.LatestRevision)
	assert.Equal(t, "x", fn.Labels["app"])
	assert.Empty(t, fn.ResourceVersion)
	assert.Equal(t, before, a.countKeys(""), "a dry run writes nothing")
	for _, q := range []string{"dryRun=", "dryRun=yes", "dryRun=server&dryRun=All"} {
		code, _ = a.send("PUT", "/v1/functions/dry?"+q, `{"image":"hello:latest"}`, nil, nil)
		assert.Equal(t, http.StatusBadRequest, code, q)
	}
	// It validates everything: the image, the quota, the split.
	code, _ = a.send("PUT", "/v1/functions/dry?dryRun=All", `{"image":"nope:latest"}`, nil, nil)
	assert.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/dry", `{"image":"hello:latest"}`, &fn))
	rv := fn.ResourceVersion
	code, _ = a.send("PUT", "/v1/functions/dry?dryRun=server", `{"image":"hello:latest","port":9000}`, nil, &fn)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "dry-00002", fn.LatestRevision)
	assert.Equal(t, 9000, fn.Spec.Port)
	code, _ = a.send("PUT", "/v1/functions/dry/traffic?dryRun=server", `{"traffic":[{"revision":"dry-00009","percent":100}]}`, nil, nil)
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = a.send("PUT", "/v1/functions/dry/traffic?dryRun=server", `{"traffic":[{"revision":"dry-00001","percent":100,"tag":"old"}]}`, nil, &fn)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "old", fn.Traffic[0].Tag)
	code, _ = a.send("PUT", "/v1/functions/dry?dryRun=server", `{"image":"hello:latest"}`, ifMatch("1"), nil)
	assert.Equal(t, http.StatusConflict, code, "preconditions hold in a dry run too")
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/dry", "", &fn))
	assert.Equal(t, rv, fn.ResourceVersion)
	assert.Equal(t, "dry-00001", fn.LatestRevision)

	// Namespaces, quotas and secrets.
	before = a.countKeys("")
	code, _ = a.send("PUT", "/v1/namespaces/team-z?dryRun=server", `{"quota":{"replicas":2}}`, nil, nil)
	assert.Equal(t, http.StatusCreated, code)
	code, _ = a.send("PUT", "/v1/namespaces/default/quota?dryRun=server", `{"replicas":2}`, nil, nil)
	assert.Equal(t, http.StatusOK, code)
	code, _ = a.send("PUT", "/v1/secrets/s?dryRun=server", `{"stringData":{"k":"v"}}`, nil, nil)
	assert.Equal(t, http.StatusCreated, code)
	assert.Equal(t, before, a.countKeys(""))
	code, _ = a.send("GET", "/v1/namespaces/team-z", "", nil, nil)
	assert.Equal(t, http.StatusNotFound, code)
}

// watchLines opens a raw watch and returns its decoded events.
func (a *testAPI) watch(ctx context.Context, query string, header http.Header) (*http.Response, <-chan api.WatchEvent) {
	a.t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", a.url+"/v1/functions?watch=true"+query, nil)
	require.NoError(a.t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	a.t.Cleanup(func() { resp.Body.Close() })
	out := make(chan api.WatchEvent, 1024)
	if resp.StatusCode != http.StatusOK {
		close(out)
		return resp, out
	}
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev api.WatchEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				out <- ev
			}
		}
	}()
	return resp, out
}

func next(t *testing.T, events <-chan api.WatchEvent, skipBookmarks bool) api.WatchEvent {
	t.Helper()
	for {
		select {
		case ev, ok := <-events:
			require.True(t, ok, "the watch ended early")
			if skipBookmarks && ev.Type == api.WatchBookmark {
				continue
			}
			return ev
		case <-time.After(30 * time.Second): // a hang guard, not a wait
			t.Fatal("no watch event within 30s")
		}
	}
}

// TestWatchDeliversEveryChangeInOrder starts a watch, makes 100 changes
// and receives all 100, in order, with rising resourceVersions.
func TestWatchDeliversEveryChangeInOrder(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := a.client().WatchFunctions(ctx, api.WatchOptions{})
	require.NoError(t, err)
	for i := range 100 {
		code := a.do("PUT", "/v1/functions/hello", fmt.Sprintf(`{"image":"hello:latest","env":{"N":"%d"}}`, i), nil)
		require.Contains(t, []int{200, 201}, code)
	}
	last := int64(0)
	for i := range 100 {
		var ev api.WatchEvent
		select {
		case ev = <-events:
		case <-time.After(30 * time.Second):
			t.Fatalf("event %d did not come", i)
		}
		if ev.Type == api.WatchBookmark {
			continue
		}
		require.NoError(t, ev.Err)
		want := api.WatchModified
		if i == 0 {
			want = api.WatchAdded
		}
		require.Equal(t, want, ev.Type, "event %d", i)
		require.Equal(t, strconv.Itoa(i), ev.Object.Spec.Env["N"], "event %d", i)
		assert.Equal(t, api.RevisionName("hello", i+1), ev.Object.LatestRevision)
		rv, err := strconv.ParseInt(ev.ResourceVersion, 10, 64)
		require.NoError(t, err)
		require.Greater(t, rv, last)
		last = rv
	}
}

// TestWatchResumesAfterRestart resumes a watch from a resourceVersion on
// a new API over the reopened store: it misses none of the changes made
// after that version, before or after the restart.
func TestWatchResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	a, stop := openAPIAt(t, dir, 0)
	a.pushHello()
	var fn api.Function
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, &fn))
	from := fn.ResourceVersion
	for i := range 5 {
		require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/hello", fmt.Sprintf(`{"image":"hello:latest","env":{"N":"%d"}}`, i), nil))
	}
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/two", `{"image":"hello:latest","labels":{"a":"b"}}`, nil))
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/functions/two", "", nil))
	stop()

	b, _ := openAPIAt(t, dir, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := b.client().WatchFunctions(ctx, api.WatchOptions{ResourceVersion: from})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, b.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","env":{"N":"after"}}`, nil))
	type seen struct{ typ, name, n string }
	var got []seen
	for range 8 {
		ev := next(t, events, true)
		require.NoError(t, ev.Err)
		got = append(got, seen{ev.Type, ev.Object.Name, ev.Object.Spec.Env["N"]})
	}
	assert.Equal(t, []seen{
		{"MODIFIED", "hello", "0"}, {"MODIFIED", "hello", "1"}, {"MODIFIED", "hello", "2"}, {"MODIFIED", "hello", "3"},
		{"MODIFIED", "hello", "4"}, {"ADDED", "two", ""}, {"DELETED", "two", ""}, {"MODIFIED", "hello", "after"},
	}, got)
}

func TestWatchCompactedIs410(t *testing.T) {
	a, _ := openAPIAt(t, t.TempDir(), 1)
	a.pushHello()
	for i := range 5 {
		a.do("PUT", "/v1/functions/hello", fmt.Sprintf(`{"image":"hello:latest","env":{"N":"%d"}}`, i), nil)
	}
	resp, _ := a.watch(context.Background(), "&resourceVersion=1", nil)
	assert.Equal(t, http.StatusGone, resp.StatusCode)
	_, err := a.client().WatchFunctions(context.Background(), api.WatchOptions{ResourceVersion: "1"})
	assert.True(t, api.IsGone(err), "%v", err)
}

func TestWatchSelectorSSEAndBookmarks(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	a.srv.bookmarkEvery = 5 * time.Millisecond
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/in", `{"image":"hello:latest","labels":{"app":"shop"}}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/out", `{"image":"hello:latest"}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", ``, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a/functions/in", `{"image":"hello:latest","labels":{"app":"shop"}}`, nil))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := a.client().WatchFunctions(ctx, api.WatchOptions{LabelSelector: "app=shop"})
	require.NoError(t, err)
	ev := next(t, events, true)
	assert.Equal(t, api.WatchAdded, ev.Type)
	assert.Equal(t, "in", ev.Object.Name)
	assert.Equal(t, "default", ev.Object.Namespace)
	// Quiet: a bookmark comes, at the listing's version or later.
	ev = next(t, events, false)
	require.Equal(t, api.WatchBookmark, ev.Type)
	assert.NotEmpty(t, ev.ResourceVersion)
	assert.Nil(t, ev.Object)
	// Entering the selector is ADDED, leaving it DELETED; others' changes
	// and other namespaces are not seen.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/out", `{"image":"hello:latest","port":9000}`, nil))
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/namespaces/team-a/functions/in", `{"image":"hello:latest","port":9000,"labels":{"app":"shop"}}`, nil))
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/out", `{"image":"hello:latest","port":9000,"labels":{"app":"shop"}}`, nil))
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/in", `{"image":"hello:latest"}`, nil))
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/functions/out", "", nil))
	for _, want := range []struct{ typ, name string }{{"ADDED", "out"}, {"DELETED", "in"}, {"DELETED", "out"}} {
		ev = next(t, events, true)
		assert.Equal(t, want.typ, ev.Type)
		assert.Equal(t, want.name, ev.Object.Name)
	}

	// Server-sent events carry the same, with the version as the id.
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/in", `{"image":"hello:latest","labels":{"app":"shop"}}`, nil))
	ev = next(t, events, true)
	assert.Equal(t, api.WatchAdded, ev.Type)
	resp, _ := a.watch(ctx, "&labelSelector=app%3Dshop", http.Header{"Accept": {"text/event-stream"}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	r := bufio.NewReader(resp.Body)
	var block []string
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if line == "\n" {
			break
		}
		block = append(block, strings.TrimSuffix(line, "\n"))
	}
	require.Len(t, block, 3, "%q", block)
	assert.Equal(t, "event: ADDED", block[0])
	assert.True(t, strings.HasPrefix(block[1], "id: "), block[1])
	var sseEv api.WatchEvent
	require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(block[2], "data: ")), &sseEv))
	assert.Equal(t, "in", sseEv.Object.Name)
	assert.Equal(t, strings.TrimPrefix(block[1], "id: "), sseEv.ResourceVersion)
}
