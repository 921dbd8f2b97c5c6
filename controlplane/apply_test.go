package controlplane

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/auth"
	"github.com/ebbrun/ebb/store"
)

// applyDoc posts a manifest stream to path and returns the status and the
// decoded answer (results, or the error envelope in out's place).
func (a *testAPI) applyDoc(path, manifest string) (int, api.ApplyResponse) {
	a.t.Helper()
	var out api.ApplyResponse
	code := a.doRaw("POST", path, "application/yaml", strings.NewReader(manifest), testToken, &out)
	return code, out
}

// actions is each result as "kind/name action" or "kind/name error:code".
func actions(resp api.ApplyResponse) []string {
	out := []string{}
	for _, r := range resp.Results {
		if r.Error != nil {
			out = append(out, r.Kind+"/"+r.Name+" error:"+r.Error.Code)
			continue
		}
		out = append(out, r.Kind+"/"+r.Name+" "+r.Action)
	}
	return out
}

const applyStream = `apiVersion: ebb.dev/v1
kind: Namespace
metadata: {name: team-a}
spec:
  quota: {functions: 5}
---
apiVersion: ebb.dev/v1
kind: Secret
metadata: {name: db, namespace: team-a}
spec:
  data:
    password: {value: aHVudGVyMg==}
---
apiVersion: ebb.dev/v1
kind: Function
metadata: {name: hello, namespace: team-a}
spec:
  image: hello:latest
  env: {GREETING: hi}
  secrets: [{secret: db, key: password, env: DB_PASSWORD}]
---
apiVersion: ebb.dev/v1
kind: Function
metadata: {name: plain}
spec:
  image: hello:latest
`

func TestApplyTwiceWritesNothing(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()

	code, resp := a.applyDoc("/v1/apply", applyStream)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"Namespace/team-a created", "Secret/db created", "Function/hello created", "Function/plain created"}, actions(resp))
	assert.Equal(t, "default", resp.Results[3].Namespace, "an object without a namespace lands in the URL's")
	assert.Equal(t, []string{"revisions/hello.team-a/hello.team-a-00001", "revisions/plain/plain-00001"}, a.keys(store.PrefixRevisions))

	before, beforeRev, err := a.store.List(context.Background(), "")
	require.NoError(t, err)
	code, resp = a.applyDoc("/v1/apply", applyStream)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"Namespace/team-a unchanged", "Secret/db unchanged", "Function/hello unchanged", "Function/plain unchanged"}, actions(resp))
	after, afterRev, err := a.store.List(context.Background(), "")
	require.NoError(t, err)
	assert.Equal(t, before, after, "the second apply wrote nothing")
	assert.Equal(t, beforeRev, afterRev)
	assert.Len(t, a.keys(store.PrefixRevisions), 2, "and created no revision")

	// A changed spec is configured and makes the next revision; traffic
	// pinned to it in the same document applies with it.
	changed := strings.Replace(applyStream, "GREETING: hi", "GREETING: hello", 1)
	changed = strings.Replace(changed, "  secrets:", "  traffic:\n  - {revision: hello.team-a-00001, percent: 10, tag: old}\n  - {revision: hello.team-a-00002, percent: 90}\n  secrets:", 1)
	code, resp = a.applyDoc("/v1/apply", changed)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"Namespace/team-a unchanged", "Secret/db unchanged", "Function/hello configured", "Function/plain unchanged"}, actions(resp))
	var fn api.Function
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/functions/hello", "", &fn))
	assert.Equal(t, "hello", fn.Spec.Env["GREETING"])
	require.Len(t, fn.Traffic, 2)
	assert.Equal(t, "hello.team-a-00002", fn.Traffic[1].Revision)

	// Leaving traffic out gives it back to the latest revision.
	code, resp = a.applyDoc("/v1/apply", strings.Replace(applyStream, "GREETING: hi", "GREETING: hello", 1))
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "Function/hello configured", actions(resp)[2])
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/functions/hello", "", &fn))
	assert.Equal(t, []bool{true}, []bool{fn.Traffic[0].LatestRevision})
	assert.Len(t, a.keys(store.RevisionsPrefix("hello.team-a")), 2, "traffic alone makes no revision")

	// Labels are metadata: configured, and still no revision.
	labelled := strings.Replace(applyStream, "metadata: {name: plain}", "metadata: {name: plain, labels: {app: shop}}", 1)
	code, resp = a.applyDoc("/v1/apply", labelled)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "Function/plain configured", actions(resp)[3])
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/plain", "", &fn))
	assert.Equal(t, map[string]string{"app": "shop"}, fn.Labels)
	assert.Len(t, a.keys(store.RevisionsPrefix("plain")), 1)
	code, resp = a.applyDoc("/v1/apply", labelled)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "Function/plain unchanged", actions(resp)[3])
}

func TestApplyFailingDocumentLeavesItsObject(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/keep", `{"image":"hello:latest","env":{"A":"1"}}`, nil))
	keepBefore, err := a.store.Get(context.Background(), store.FunctionKey("keep"))
	require.NoError(t, err)

	stream := `apiVersion: ebb.dev/v1
kind: Function
metadata: {name: keep}
spec:
  image: hello:latest
  env: {A: "2"}
  traffic: [{revision: keep-00009, percent: 100}]
---
apiVersion: ebb.dev/v1
kind: Function
metadata: {name: other}
spec: {image: hello:latest}
---
apiVersion: ebb.dev/v1
kind: Function
metadata: {name: noimage}
spec: {image: missing:latest}
---
apiVersion: ebb.dev/v1
kind: Function
metadata: {name: lost, namespace: nowhere}
spec: {image: hello:latest}
`
	code, resp := a.applyDoc("/v1/apply", stream)
	require.Equal(t, http.StatusOK, code, "failed documents are results, not a failed request")
	assert.Equal(t, []string{"Function/keep error:invalid", "Function/other created", "Function/noimage error:invalid",
		"Function/lost error:not_found"}, actions(resp))
	assert.Contains(t, resp.Results[0].Error.Message, "keep-00009")

	keepAfter, err := a.store.Get(context.Background(), store.FunctionKey("keep"))
	require.NoError(t, err)
	assert.Equal(t, keepBefore, keepAfter, "the failing document left its function untouched")
	assert.Equal(t, []string{"revisions/keep/keep-00001", "revisions/other/other-00001"}, a.keys(store.PrefixRevisions))
	assert.Equal(t, []string{"functions/keep", "functions/other"}, a.keys(store.PrefixFunctions))
}

func TestApplyDryRunWritesNothing(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	before, beforeRev, err := a.store.List(context.Background(), "")
	require.NoError(t, err)
	code, resp := a.applyDoc("/v1/apply?dryRun=server", applyStream)
	require.Equal(t, http.StatusOK, code)
	// team-a is not created in a dry run, so the documents in it cannot
	// be checked against it.
	assert.Equal(t, []string{"Namespace/team-a created", "Secret/db error:not_found", "Function/hello error:not_found", "Function/plain created"}, actions(resp))
	after, afterRev, err := a.store.List(context.Background(), "")
	require.NoError(t, err)
	assert.Equal(t, before, after)
	assert.Equal(t, beforeRev, afterRev)
	assert.Empty(t, a.keys(store.PrefixFunctions))

	code, resp = a.applyDoc("/v1/apply?dryRun=All", "apiVersion: ebb.dev/v1\nkind: Function\nmetadata: {name: x}\nspec: {image: missing:latest}\n")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"Function/x error:invalid"}, actions(resp), "a dry run validates")
}

func TestApplyHostileInput(t *testing.T) {
	a := newTestAPI(t)
	tests := []struct {
		name, path, contentType, body string
		want                          int
	}{
		{"not yaml", "/v1/apply", "application/yaml", "kind: [", http.StatusBadRequest},
		{"unknown kind", "/v1/apply", "application/yaml", "apiVersion: ebb.dev/v1\nkind: Pod\nmetadata: {name: x}\n", http.StatusBadRequest},
		{"wrong content type", "/v1/apply", "text/plain", "{}", http.StatusUnsupportedMediaType},
		{"bad dryRun", "/v1/apply?dryRun=yes", "application/yaml", "", http.StatusBadRequest},
		{"namespace that does not exist", "/v1/namespaces/nowhere/apply", "application/yaml", "", http.StatusNotFound},
		{"empty stream", "/v1/apply", "application/json", "", http.StatusOK},
		{"unresolved secret", "/v1/apply", "application/yaml", "apiVersion: ebb.dev/v1\nkind: Secret\nmetadata: {name: s}\nspec:\n  data:\n    k: {fromEnv: K}\n", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e api.ErrorBody
			code := a.doRaw("POST", tt.path, tt.contentType, strings.NewReader(tt.body), testToken, &e)
			assert.Equal(t, tt.want, code, "%+v", e)
			if tt.want != http.StatusOK {
				assert.NotEmpty(t, e.Error.Message)
			}
		})
	}
}

// A developer of team-a may apply into team-a through either path, and
// each document outside it is refused on its own.
func TestApplyChecksEachDocumentsNamespace(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", "", nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-b", "", nil))
	plain, rec, err := auth.Issue(auth.TokenSpec{Role: auth.RoleDeveloper, Namespace: "team-a"}, time.Now())
	require.NoError(t, err)
	a.put(store.PutJSON(store.TokenKey(rec.ID), rec, store.AnyVersion))

	stream := `apiVersion: ebb.dev/v1
kind: Function
metadata: {name: mine}
spec: {image: hello:latest}
---
apiVersion: ebb.dev/v1
kind: Function
metadata: {name: theirs, namespace: team-b}
spec: {image: hello:latest}
---
apiVersion: ebb.dev/v1
kind: Namespace
metadata: {name: team-c}
`
	var resp api.ApplyResponse
	code := a.doRaw("POST", "/v1/namespaces/team-a/apply", "application/yaml", strings.NewReader(stream), plain, &resp)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"Function/mine created", "Function/theirs error:forbidden", "Namespace/team-c error:forbidden"}, actions(resp))
	assert.Equal(t, []string{"functions/mine.team-a"}, a.keys(store.PrefixFunctions))

	var e api.ErrorBody
	code = a.doRaw("POST", "/v1/apply", "application/yaml", strings.NewReader(stream), plain, &e)
	assert.Equal(t, http.StatusForbidden, code, "the default namespace's path is not team-a's")
}
