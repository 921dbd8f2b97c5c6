package controlplane

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// keys lists the store's keys under prefix.
func (a *testAPI) keys(prefix string) []string {
	a.t.Helper()
	kvs, _, err := a.store.List(context.Background(), prefix)
	require.NoError(a.t, err)
	out := []string{}
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

func (a *testAPI) put(ops ...store.Op) {
	a.t.Helper()
	_, err := a.store.Txn(context.Background(), ops...)
	require.NoError(a.t, err)
}

func TestNamespaceLifecycle(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()

	var list api.NamespaceList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces", "", &list))
	require.Len(t, list.Namespaces, 1, "default exists from the start")
	assert.Equal(t, api.DefaultNamespace, list.Namespaces[0].Name)

	// A function in a namespace that does not exist: 404 naming it; no
	// namespace is created on the way.
	var e api.ErrorBody
	require.Equal(t, http.StatusNotFound, a.do("PUT", "/v1/namespaces/team-a/functions/hello", `{"image":"hello:latest"}`, &e))
	assert.Contains(t, e.Error.Message, `namespace "team-a" does not exist`)
	assert.Empty(t, a.keys(store.PrefixNamespaces))
	assert.Empty(t, a.keys(store.PrefixFunctions))

	var ns api.Namespace
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", "", &ns))
	assert.Equal(t, "team-a", ns.Name)
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/namespaces/team-a", "{}", &ns), "creating it again is a no-op")

	var fn api.Function
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a/functions/hello", `{"image":"hello:latest"}`, &fn))
	assert.Equal(t, "hello", fn.Name)
	assert.Equal(t, "team-a", fn.Namespace)
	assert.Equal(t, "http://hello.team-a.localhost:8080/", fn.URL)
	assert.Equal(t, "hello.team-a-00001", fn.LatestRevision)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest","env":{"WHO":"default"}}`, &fn))
	assert.Equal(t, "hello", fn.Name)
	assert.Equal(t, api.DefaultNamespace, fn.Namespace)
	assert.Equal(t, "http://hello.localhost:8080/", fn.URL)
	assert.Equal(t, "hello-00001", fn.LatestRevision)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/default/functions/other", `{"image":"hello:latest"}`, &fn),
		"default is also addressed by its name")
	assert.ElementsMatch(t, []string{"functions/hello", "functions/hello.team-a", "functions/other"}, a.keys(store.PrefixFunctions))

	// A tag's URL is {tag}-{fn}.{ns}.{domain}.
	body := `{"traffic":[{"latestRevision":true,"percent":100,"tag":"canary"}]}`
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/namespaces/team-a/functions/hello/traffic", body, &fn))
	require.Len(t, fn.Traffic, 1)
	assert.Equal(t, "http://canary-hello.team-a.localhost:8080/", fn.Traffic[0].URL)
	assert.Equal(t, "hello.team-a-00001", fn.Traffic[0].Revision)

	// Listing isolates: each path sees its own namespace only.
	names := func(path string) []string {
		var fl api.FunctionList
		require.Equal(t, http.StatusOK, a.do("GET", path, "", &fl))
		out := []string{}
		for _, f := range fl.Functions {
			out = append(out, f.Namespace+"/"+f.Name)
		}
		return out
	}
	assert.ElementsMatch(t, []string{"default/hello", "default/other"}, names("/v1/functions"))
	assert.ElementsMatch(t, []string{"default/hello", "default/other"}, names("/v1/namespaces/default/functions"))
	assert.Equal(t, []string{"team-a/hello"}, names("/v1/namespaces/team-a/functions"))

	var revs api.RevisionList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/functions/hello/revisions", "", &revs))
	require.Len(t, revs.Revisions, 1)
	assert.Equal(t, api.Revision{Name: "hello.team-a-00001", Function: "hello", Namespace: "team-a"},
		api.Revision{Name: revs.Revisions[0].Name, Function: revs.Revisions[0].Function, Namespace: revs.Revisions[0].Namespace})

	// other exists in default only: never through team-a's paths.
	for _, p := range []string{"", "/revisions", "/logs"} {
		require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/namespaces/team-a/functions/other"+p, "", &e), p)
		assert.Contains(t, e.Error.Message, `"other" in namespace "team-a"`)
	}

	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces", "", &list))
	require.Len(t, list.Namespaces, 2)
	assert.Equal(t, api.Namespace{Name: "default", Functions: 2}, list.Namespaces[0])
	assert.Equal(t, "team-a", list.Namespaces[1].Name)
	assert.Equal(t, 1, list.Namespaces[1].Functions)
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a", "", &ns))
	assert.Equal(t, 1, ns.Functions)

	// A ready replica makes the delete refuse, naming the function.
	rev := "hello.team-a-00001"
	a.put(
		store.PutJSON(store.EndpointKey(rev, "r1"), store.Endpoint{Function: "hello.team-a", Revision: rev, Replica: "r1"}, store.AnyVersion),
		store.PutJSON(store.ScaleKey(rev), store.Scale{Revision: rev, Function: "hello.team-a", Desired: 1}, store.AnyVersion),
		store.PutJSON(store.KeepAliveKey(rev), store.KeepAlive{Revision: rev, Function: "hello.team-a"}, store.AnyVersion),
		store.PutJSON(store.AssignmentKey("n1", rev), store.Assignment{Function: "hello.team-a", Revision: rev, Replicas: 1}, store.AnyVersion),
		store.PutJSON(store.AssignmentKey("n1", "hello-00001"), store.Assignment{Function: "hello", Revision: "hello-00001", Replicas: 1}, store.AnyVersion),
	)
	require.Equal(t, http.StatusConflict, a.do("DELETE", "/v1/namespaces/team-a", "", &e))
	assert.Contains(t, e.Error.Message, "(hello)")
	assert.Contains(t, a.keys(store.PrefixNamespaces), "namespaces/team-a", "a refused delete changes nothing")
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a", "", &ns))
	assert.False(t, ns.Deleting)

	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/namespaces/team-a?force=true", "", nil))
	assert.Empty(t, a.keys(store.PrefixNamespaces))
	assert.ElementsMatch(t, []string{"functions/hello", "functions/other"}, a.keys(store.PrefixFunctions))
	assert.ElementsMatch(t, []string{"revisions/hello/hello-00001", "revisions/other/other-00001"}, a.keys(store.PrefixRevisions))
	assert.Empty(t, a.keys(store.PrefixScales))
	assert.Empty(t, a.keys(store.PrefixKeepAlive))
	assert.Equal(t, []string{"assignments/n1/hello-00001"}, a.keys(store.PrefixAssignments), "only the namespace's assignments go")
	require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/namespaces/team-a/functions", "", &e))
	assert.Contains(t, e.Error.Message, `namespace "team-a" does not exist`)
	require.Equal(t, http.StatusNotFound, a.do("DELETE", "/v1/namespaces/team-a", "", &e))

	// Created again, it starts empty.
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", "", &ns))
	assert.Empty(t, names("/v1/namespaces/team-a/functions"))
}

// TestNamespaceDeleteFencesCreates checks that a function cannot be created
// in a namespace being deleted, so none outlives it, and that deleting it
// again finishes the job.
func TestNamespaceDeleteFencesCreates(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-b", "", nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-b/functions/a", `{"image":"hello:latest"}`, nil))

	// A delete stopped after its first step leaves the namespace marked.
	rec, version, err := store.GetJSON[store.Namespace](context.Background(), a.store, store.NamespaceKey("team-b"))
	require.NoError(t, err)
	rec.Deleting = true
	a.put(store.PutJSON(store.NamespaceKey("team-b"), rec, version))

	var e api.ErrorBody
	require.Equal(t, http.StatusConflict, a.do("PUT", "/v1/namespaces/team-b/functions/b", `{"image":"hello:latest"}`, &e))
	assert.Contains(t, e.Error.Message, "being deleted")
	require.Equal(t, http.StatusConflict, a.do("PUT", "/v1/namespaces/team-b", "", &e))
	var ns api.Namespace
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-b", "", &ns))
	assert.True(t, ns.Deleting)

	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/namespaces/team-b", "", nil))
	assert.Empty(t, a.keys(store.PrefixNamespaces))
	assert.Empty(t, a.keys(store.PrefixFunctions))
	assert.Empty(t, a.keys(store.PrefixRevisions))

	// The fence is a version check in the function's transaction: a
	// function write that read the namespace before it was marked fails.
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-b", "", nil))
	check, err := a.srv.namespaceOpen(context.Background(), "c.team-b")
	require.NoError(t, err)
	rec, version, err = store.GetJSON[store.Namespace](context.Background(), a.store, store.NamespaceKey("team-b"))
	require.NoError(t, err)
	rec.Deleting = true
	a.put(store.PutJSON(store.NamespaceKey("team-b"), rec, version))
	_, err = a.store.Txn(context.Background(), append(check, store.PutJSON(store.FunctionKey("c.team-b"), store.Function{Name: "c.team-b"}, store.MustNotExist))...)
	require.ErrorIs(t, err, store.ErrConflict)
}

// TestNamespaceCascades checks the extension point other objects of a
// namespace (secrets, tokens) hook into: their keys go in the delete's
// transaction, and only the namespace's.
func TestNamespaceCascades(t *testing.T) {
	a := newTestAPI(t)
	a.srv.cascades = append(a.srv.cascades, deletePrefix(func(ns string) string { return "things/" + ns + "/" }))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", "", nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-ab", "", nil))
	a.put(
		store.Put("things/team-a/x", []byte("1"), store.MustNotExist),
		store.Put("things/team-a/y", []byte("1"), store.MustNotExist),
		store.Put("things/team-ab/x", []byte("1"), store.MustNotExist),
	)
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/namespaces/team-a", "", nil))
	assert.Equal(t, []string{"things/team-ab/x"}, a.keys("things/"))
	assert.Equal(t, []string{"namespaces/team-ab"}, a.keys(store.PrefixNamespaces))
}

// TestNamespaceBadInput throws hostile input at every namespace route and
// at the namespaced function routes: none is served, none writes.
func TestNamespaceBadInput(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", "", nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a/functions/hello", `{"image":"hello:latest"}`, nil))
	long := strings.Repeat("n", 64)
	// A wrong method finds no route: 404 with the JSON envelope, as on
	// every other path.
	tests := []struct {
		name, method, path, body string
		want                     int
		code                     string
	}{
		{"namespace not a DNS label", "PUT", "/v1/namespaces/Team_A", ``, 400, api.CodeInvalid},
		{"namespace with a dot", "PUT", "/v1/namespaces/a.b", ``, 400, api.CodeInvalid},
		{"namespace unicode", "PUT", "/v1/namespaces/%C3%A9quipe", ``, 400, api.CodeInvalid},
		{"namespace escaped slash", "PUT", "/v1/namespaces/a%2Fb", ``, 400, api.CodeInvalid},
		{"namespace escaped dots", "GET", "/v1/namespaces/%2E%2E/functions", ``, 400, api.CodeInvalid},
		{"namespace too long", "PUT", "/v1/namespaces/" + long, ``, 400, api.CodeInvalid},
		{"namespace NUL", "GET", "/v1/namespaces/a%00b", ``, 400, api.CodeInvalid},
		{"namespace body unknown field", "PUT", "/v1/namespaces/x", `{"quotas":{"replicas":2}}`, 400, api.CodeInvalid},
		{"namespace body not JSON", "PUT", "/v1/namespaces/x", `not json`, 400, api.CodeInvalid},
		{"namespace body too large", "PUT", "/v1/namespaces/x", `{"` + strings.Repeat("a", 5000) + `":1}`, 413, api.CodeTooLarge},
		{"namespace wrong method", "POST", "/v1/namespaces/x", `{}`, 404, api.CodeNotFound},
		{"namespaces wrong method", "DELETE", "/v1/namespaces", ``, 404, api.CodeNotFound},
		{"delete default", "DELETE", "/v1/namespaces/default", ``, 400, api.CodeInvalid},
		{"delete force not a bool", "DELETE", "/v1/namespaces/team-a?force=maybe", ``, 400, api.CodeInvalid},
		{"delete missing", "DELETE", "/v1/namespaces/nope", ``, 404, api.CodeNotFound},
		{"get missing", "GET", "/v1/namespaces/nope", ``, 404, api.CodeNotFound},
		{"functions of missing namespace", "GET", "/v1/namespaces/nope/functions", ``, 404, api.CodeNotFound},
		{"logs of missing namespace", "GET", "/v1/namespaces/nope/functions/hello/logs", ``, 404, api.CodeNotFound},
		{"function name with a dot", "PUT", "/v1/namespaces/team-a/functions/hello.team-a", `{"image":"hello:latest"}`, 400, api.CodeInvalid},
		{"qualified name in default", "GET", "/v1/functions/hello.team-a", ``, 400, api.CodeInvalid},
		{"function and namespace too long together", "PUT", "/v1/namespaces/team-a/functions/" + strings.Repeat("f", 60), `{"image":"hello:latest"}`, 400, api.CodeInvalid},
		{"function escaped slash", "GET", "/v1/namespaces/team-a/functions/a%2F..%2Fb", ``, 400, api.CodeInvalid},
		{"function unicode", "PUT", "/v1/namespaces/team-a/functions/h%C3%A9llo", `{"image":"hello:latest"}`, 400, api.CodeInvalid},
		{"function unknown field", "PUT", "/v1/namespaces/team-a/functions/x", `{"image":"hello:latest","namespace":"default"}`, 400, api.CodeInvalid},
		{"function wrong method", "POST", "/v1/namespaces/team-a/functions/hello", `{}`, 404, api.CodeNotFound},
		{"traffic to another namespace's revision", "PUT", "/v1/namespaces/team-a/functions/hello/traffic", `{"traffic":[{"revision":"hello-00001","percent":100}]}`, 400, api.CodeInvalid},
		{"traffic body too large", "PUT", "/v1/namespaces/team-a/functions/hello/traffic", `{"traffic":[` + strings.Repeat(" ", 5000) + `]}`, 413, api.CodeTooLarge},
		{"unknown sub-route", "GET", "/v1/namespaces/team-a/secrets-nope", ``, 404, api.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e api.ErrorBody
			got := a.doRaw(tt.method, tt.path, "application/json", strings.NewReader(tt.body), testToken, &e)
			assert.Equal(t, tt.want, got, "message: %s", e.Error.Message)
			assert.Equal(t, tt.code, e.Error.Code)
		})
	}
	// Nothing half-written.
	assert.Equal(t, []string{"namespaces/team-a"}, a.keys(store.PrefixNamespaces))
	assert.Equal(t, []string{"functions/hello.team-a"}, a.keys(store.PrefixFunctions))
	assert.Equal(t, []string{"revisions/hello.team-a/hello.team-a-00001"}, a.keys(store.PrefixRevisions))
}

func TestNamespaceRoutesNeedTheToken(t *testing.T) {
	a := newTestAPI(t)
	for _, p := range []string{"/v1/namespaces", "/v1/namespaces/default", "/v1/namespaces/default/functions"} {
		assert.Equal(t, http.StatusUnauthorized, a.doRaw("GET", p, "", nil, "", nil), p)
	}
	assert.Equal(t, http.StatusUnauthorized, a.doRaw("PUT", "/v1/namespaces/x", "", nil, "", nil))
	assert.Equal(t, http.StatusUnauthorized, a.doRaw("DELETE", "/v1/namespaces/x", "", nil, "", nil))
	assert.Empty(t, a.keys(store.PrefixNamespaces))
}
