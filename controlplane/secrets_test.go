package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/envelope"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

type secretsEnv struct {
	secrets *Secrets
	store   store.Store
	keys    *envelope.KeyFile
	dbPath  string
	keyPath string
}

func newSecretsEnv(t *testing.T) *secretsEnv {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "state.db")
	st, err := embedded.Open(db, embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	keyPath := filepath.Join(dir, "secrets.key")
	keys, err := envelope.OpenKeyFile(keyPath, true)
	require.NoError(t, err)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	return &secretsEnv{secrets: NewSecrets(st, keys, func() time.Time { return now }), store: st, keys: keys, dbPath: db, keyPath: keyPath}
}

// putFunction writes a function and its first revision as the API does.
func (e *secretsEnv) putFunction(t *testing.T, q string, spec api.FunctionSpec) {
	t.Helper()
	fn := store.Function{Name: q, Spec: spec, Generation: 1, LatestRevision: api.RevisionName(q, 1),
		Traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 100}}}
	rev := store.Revision{Name: fn.LatestRevision, Function: q, Generation: 1, Spec: spec}
	_, err := e.store.Txn(context.Background(),
		store.PutJSON(store.FunctionKey(q), fn, store.MustNotExist),
		store.PutJSON(store.RevisionKey(q, rev.Name), rev, store.MustNotExist))
	require.NoError(t, err)
}

func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	return 0
}

func TestSecretsPutOpen(t *testing.T) {
	e := newSecretsEnv(t)
	ctx := context.Background()
	value := []byte("correct-horse-battery-staple")
	rec, err := e.secrets.put(ctx, "team-a", "db", map[string][]byte{"password": value, "user": []byte("app")}, false, true)
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Generation)
	assert.Equal(t, e.keys.KeyID(), rec.KeyID)

	got, err := e.secrets.SecretValues(ctx, "team-a", "db")
	require.NoError(t, err)
	assert.Equal(t, value, got["password"])
	assert.Equal(t, []byte("app"), got["user"])

	_, err = e.secrets.SecretValues(ctx, "team-b", "db")
	assert.ErrorIs(t, err, ErrSecretNotFound, "namespaces do not share secrets")

	// Create refuses an existing secret; merge keeps the other keys.
	_, err = e.secrets.put(ctx, "team-a", "db", map[string][]byte{"x": []byte("y")}, false, true)
	assert.Equal(t, http.StatusConflict, statusOf(err))
	rec, err = e.secrets.put(ctx, "team-a", "db", map[string][]byte{"user": []byte("admin")}, true, false)
	require.NoError(t, err)
	assert.Equal(t, 2, rec.Generation)
	got, err = e.secrets.SecretValues(ctx, "team-a", "db")
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{"password": value, "user": []byte("admin")}, got)
	// A plain put replaces the data.
	_, err = e.secrets.put(ctx, "team-a", "db", map[string][]byte{"only": []byte("1")}, false, false)
	require.NoError(t, err)
	got, err = e.secrets.SecretValues(ctx, "team-a", "db")
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{"only": []byte("1")}, got)

	// A merge past the cap is refused with 413.
	big := bytes.Repeat([]byte("x"), api.MaxSecretBytes-len("big")) // at the cap alone, over it with the key kept
	_, err = e.secrets.put(ctx, "team-a", "db", map[string][]byte{"big": big}, true, false)
	assert.Equal(t, http.StatusRequestEntityTooLarge, statusOf(err))

	// No value is in the store's file in plain text.
	require.NoError(t, e.store.Close())
	raw, err := os.ReadFile(e.dbPath)
	require.NoError(t, err)
	assert.False(t, bytes.Contains(raw, value), "a secret value in state.db")
	assert.False(t, bytes.Contains(raw, []byte("admin")), "a secret value in state.db")
}

func TestSecretsCheckRefsAndDelete(t *testing.T) {
	e := newSecretsEnv(t)
	ctx := context.Background()
	_, err := e.secrets.put(ctx, "default", "db", map[string][]byte{"password": []byte("pw")}, false, false)
	require.NoError(t, err)
	tests := []struct {
		name    string
		ns      string
		refs    []api.Secret
		wantErr string
	}{
		{name: "present", ns: "default", refs: []api.Secret{{Secret: "db", Key: "password", Env: "A"}, {Secret: "db", Key: "password", File: "pw"}}},
		{name: "missing secret", ns: "default", refs: []api.Secret{{Secret: "db", Key: "password", Env: "A"}, {Secret: "cache", Key: "url", Env: "B"}},
			wantErr: `secrets[1].secret: secret "cache" does not exist in namespace default; create it with`},
		{name: "missing key", ns: "default", refs: []api.Secret{{Secret: "db", Key: "user", Env: "A"}},
			wantErr: `secrets[0].key: secret "db" in namespace default has no key "user"`},
		{name: "other namespace", ns: "team-a", refs: []api.Secret{{Secret: "db", Key: "password", Env: "A"}},
			wantErr: `secret "db" does not exist in namespace team-a`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.secrets.CheckRefs(ctx, tt.ns, tt.refs)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, api.IsValidation(err))
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}

	e.putFunction(t, "web", api.FunctionSpec{Image: "hello", Secrets: []api.Secret{{Secret: "db", Key: "password", Env: "A"}}})
	err = e.secrets.delete(ctx, "default", "db")
	assert.Equal(t, http.StatusConflict, statusOf(err))
	assert.ErrorContains(t, err, "used by [web]")
	assert.Equal(t, http.StatusNotFound, statusOf(e.secrets.delete(ctx, "default", "nope")))
	_, err = e.store.Txn(ctx, store.Delete(store.FunctionKey("web"), store.AnyVersion))
	require.NoError(t, err)
	require.NoError(t, e.secrets.delete(ctx, "default", "db"))
	_, err = e.secrets.SecretValues(ctx, "default", "db")
	assert.ErrorIs(t, err, ErrSecretNotFound)
}

func TestSecretUpdateRollsItsFunctions(t *testing.T) {
	e := newSecretsEnv(t)
	ctx := context.Background()
	_, err := e.secrets.put(ctx, "default", "db", map[string][]byte{"password": []byte("v1")}, false, false)
	require.NoError(t, err)
	uses := api.FunctionSpec{Image: "hello", Secrets: []api.Secret{{Secret: "db", Key: "password", Env: "A"}}}
	e.putFunction(t, "web", uses)
	e.putFunction(t, "other", api.FunctionSpec{Image: "hello"})
	e.putFunction(t, "web.team-a", uses) // same secret name, other namespace

	_, err = e.secrets.put(ctx, "default", "db", map[string][]byte{"password": []byte("v2")}, false, false)
	require.NoError(t, err)

	gen := func(q string) (int, int) {
		fn, _, err := store.GetJSON[store.Function](ctx, e.store, store.FunctionKey(q))
		require.NoError(t, err)
		revs, _, err := store.ListJSON[store.Revision](ctx, e.store, store.RevisionsPrefix(q))
		require.NoError(t, err)
		return fn.Generation, len(revs)
	}
	g, n := gen("web")
	assert.Equal(t, 2, g, "the function using the secret has a new revision")
	assert.Equal(t, 2, n)
	rev, _, err := store.GetJSON[store.Revision](ctx, e.store, store.RevisionKey("web", api.RevisionName("web", 2)))
	require.NoError(t, err)
	assert.Equal(t, uses, rev.Spec, "with the same spec")
	g, _ = gen("other")
	assert.Equal(t, 1, g, "a function without the secret is untouched")
	g, _ = gen("web.team-a")
	assert.Equal(t, 1, g, "a function of another namespace is untouched")
	users, err := e.secrets.usedBy(ctx, "default", "db")
	require.NoError(t, err)
	assert.Equal(t, []string{"web"}, users)
}

func TestSecretsRotateKeyUnderReads(t *testing.T) {
	e := newSecretsEnv(t)
	ctx := context.Background()
	for _, name := range []string{"a", "b", "c"} {
		_, err := e.secrets.put(ctx, "default", name, map[string][]byte{"k": []byte("value-" + name)}, false, false)
		require.NoError(t, err)
	}
	_, err := e.secrets.put(ctx, "team-a", "d", map[string][]byte{"k": []byte("value-d")}, false, false)
	require.NoError(t, err)
	before := map[string][]byte{}
	recs, _, err := store.ListJSON[store.Secret](ctx, e.store, store.PrefixSecrets)
	require.NoError(t, err)
	for _, kv := range recs {
		before[kv.Key] = kv.Value.Values["k"]
	}
	oldID := e.keys.KeyID()

	// Readers run throughout the rotation; none may fail.
	var failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				v, err := e.secrets.SecretValues(ctx, "default", "b")
				if err != nil || string(v["k"]) != "value-b" {
					failures.Add(1)
				}
			}
		}()
	}
	res, err := e.secrets.RotateKey(ctx)
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	assert.Zero(t, failures.Load(), "reads failed during the rotation")
	assert.Equal(t, 4, res.Rewrapped)
	assert.NotEqual(t, oldID, res.KeyID)
	assert.Equal(t, []string{res.KeyID}, e.keys.KeyIDs(), "the old key is retired")

	recs, _, err = store.ListJSON[store.Secret](ctx, e.store, store.PrefixSecrets)
	require.NoError(t, err)
	for _, kv := range recs {
		assert.Equal(t, res.KeyID, kv.Value.KeyID)
		assert.Equal(t, before[kv.Key], kv.Value.Values["k"], "values are not re-encrypted, only their data key re-wrapped")
		ns, name := kv.Value.Namespace, kv.Value.Name
		got, err := e.secrets.SecretValues(ctx, ns, name)
		require.NoError(t, err)
		assert.Equal(t, "value-"+name, string(got["k"]))
	}
	// The key file on disk holds the new key alone.
	reloaded, err := envelope.LoadKeyFile(e.keyPath)
	require.NoError(t, err)
	assert.Equal(t, []string{res.KeyID}, reloaded.KeyIDs())
}

func TestSecretsInternalHandler(t *testing.T) {
	e := newSecretsEnv(t)
	_, err := e.secrets.put(context.Background(), "team-a", "db", map[string][]byte{"pw": []byte("hunter2")}, false, false)
	require.NoError(t, err)
	var reads []string
	e.secrets.OnNodeRead(func(ns, name, node string, err error) {
		reads = append(reads, fmt.Sprintf("%s/%s by %s ok=%v", ns, name, node, err == nil))
	})
	// A stand-in for nodecred: the token names node n1.
	h := e.secrets.InternalHandler(func(r *http.Request) (string, bool) {
		return "n1", r.Header.Get("Authorization") == "Bearer node-token-0123456789"
	})
	tests := []struct {
		name, method, path, token string
		want                      int
		wantData                  map[string][]byte
	}{
		{name: "values", method: "GET", path: "/internal/v1/secrets/team-a/db", token: "node-token-0123456789", want: 200, wantData: map[string][]byte{"pw": []byte("hunter2")}},
		{name: "no token", method: "GET", path: "/internal/v1/secrets/team-a/db", want: 401},
		{name: "wrong token", method: "GET", path: "/internal/v1/secrets/team-a/db", token: "node-token-0123456788", want: 401},
		{name: "missing", method: "GET", path: "/internal/v1/secrets/team-b/db", token: "node-token-0123456789", want: 404},
		{name: "bad path", method: "GET", path: "/internal/v1/secrets/team-a", token: "node-token-0123456789", want: 400},
		{name: "not GET", method: "PUT", path: "/internal/v1/secrets/team-a/db", token: "node-token-0123456789", want: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, tt.want, rec.Code, rec.Body.String())
			if tt.wantData != nil {
				var got api.SecretData
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
				assert.Equal(t, tt.wantData, got.Data)
				assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
			} else {
				assert.NotContains(t, rec.Body.String(), "hunter2")
			}
		})
	}
	// Reads are observed, authorised ones only, without values; in-process
	// node agents' reads too.
	_, err = e.secrets.ForNode("n2").SecretValues(context.Background(), "team-a", "db")
	require.NoError(t, err)
	assert.Equal(t, []string{"team-a/db by n1 ok=true", "team-b/db by n1 ok=false", "team-a/db by n2 ok=true"}, reads)
}

func TestSecretsAPI(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{}`, nil))

	// Create in default (old path) and in team-a; the answer has no value.
	var info api.SecretInfo
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/secrets/db", `{"stringData":{"password":"hunter2-default"}}`, &info))
	assert.NotEmpty(t, info.ResourceVersion)
	assert.Equal(t, api.SecretInfo{Name: "db", Namespace: "default", Keys: []string{"password"}, Generation: 1, KeyID: info.KeyID,
		CreatedAt: info.CreatedAt, UpdatedAt: info.UpdatedAt, ResourceVersion: info.ResourceVersion}, info)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a/secrets/db",
		`{"data":{"password":"aHVudGVyMi10ZWFt"},"stringData":{"user":"app"}}`, &info)) // base64 of hunter2-team
	assert.Equal(t, []string{"password", "user"}, info.Keys)

	var list api.SecretList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/secrets", "", &list))
	require.Len(t, list.Secrets, 1)
	assert.Equal(t, "team-a", list.Secrets[0].Namespace)
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/default/secrets/db", "", &info))
	assert.Equal(t, "default", info.Namespace)

	// The API never returns a value, on any route.
	for _, path := range []string{"/v1/secrets", "/v1/secrets/db", "/v1/namespaces/team-a/secrets", "/v1/namespaces/team-a/secrets/db"} {
		req, err := http.NewRequest("GET", a.url+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		for _, v := range []string{"hunter2", "aHVudGVyMi"} {
			assert.NotContains(t, string(raw), v, path)
		}
	}

	// Bad input.
	tests := []struct {
		name, method, path, body string
		want                     int
		wantMsg                  string
	}{
		{"no keys", "PUT", "/v1/secrets/x", `{}`, 400, "at least one key"},
		{"bad key", "PUT", "/v1/secrets/x", `{"stringData":{"a/b":"v"}}`, 400, "data"},
		{"bad name", "PUT", "/v1/secrets/X_1", `{"stringData":{"a":"v"}}`, 400, "name"},
		{"unknown field", "PUT", "/v1/secrets/x", `{"values":{"a":"v"}}`, 400, "values"},
		{"over 1 MiB", "PUT", "/v1/secrets/x", `{"stringData":{"a":"` + strings.Repeat("x", api.MaxSecretBytes) + `"}}`, 413, "over the limit"},
		{"body far over", "PUT", "/v1/secrets/x", `{"stringData":{"a":"` + strings.Repeat("x", 2*api.MaxSecretBytes) + `"}}`, 413, ""},
		{"create existing", "PUT", "/v1/secrets/db", `{"stringData":{"a":"v"}}`, 409, "already exists"},
		{"missing", "GET", "/v1/secrets/nope", "", 404, `secret "nope" does not exist in namespace default`},
		{"no such namespace", "GET", "/v1/namespaces/team-z/secrets", "", 404, "team-z"},
		{"function with inline value", "PUT", "/v1/functions/f", `{"image":"hello:latest","secrets":[{"name":"db","value":"pw","env":"DB"}]}`, 400, "create a secret object"},
		{"function with missing secret", "PUT", "/v1/functions/f", `{"image":"hello:latest","secrets":[{"secret":"cache","key":"url","env":"URL"}]}`, 400, `secret "cache" does not exist in namespace default`},
		{"function with missing image pull secret", "PUT", "/v1/functions/f", `{"image":"127.0.0.1:5000/team/hello:v1","imagePullSecret":"regcred"}`, 400, `imagePullSecret: secret "regcred" does not exist in namespace default`},
		{"function with a bad image pull secret name", "PUT", "/v1/functions/f", `{"image":"hello:latest","imagePullSecret":"Reg_Cred"}`, 400, "imagePullSecret"},
		{"function with an unqualified image never pushed", "PUT", "/v1/functions/f", `{"image":"team/nope:v1"}`, 400, `image "docker.io/team/nope:v1" has not been pushed`},
		{"function with missing key", "PUT", "/v1/functions/f", `{"image":"hello:latest","secrets":[{"secret":"db","key":"user","env":"U"}]}`, 400, `secret "db" in namespace default has no key "user"`},
		{"function with another namespace's secret", "PUT", "/v1/namespaces/team-a/functions/f", `{"image":"hello:latest","secrets":[{"secret":"db","key":"password","env":"P"},{"secret":"db","key":"nope","env":"Q"}]}`, 400, `secret "db" in namespace team-a has no key "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, a.url+tt.path, strings.NewReader(tt.body))
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+testToken)
			if tt.name == "create existing" {
				req.Header.Set("If-None-Match", "*")
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			var e api.ErrorBody
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
			assert.Equal(t, tt.want, resp.StatusCode, e.Error.Message)
			assert.Contains(t, e.Error.Message, tt.wantMsg)
		})
	}

	// A function of an image a registry holds, not pushed here, with the
	// registry's credentials in a secret.
	var fn api.Function
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/pulled",
		`{"image":"127.0.0.1:5000/team/hello:v1","imagePullSecret":"db"}`, &fn))
	assert.Equal(t, "127.0.0.1:5000/team/hello:v1", fn.Spec.Image)
	assert.Equal(t, "db", fn.Spec.ImagePullSecret)
	var used api.SecretInfo
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/secrets/db", "", &used))
	assert.Equal(t, []string{"pulled"}, used.UsedBy, "an image pull secret is in use too")
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/functions/pulled", "", nil))

	// A function using the secret; updating the secret rolls it.
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/web",
		`{"image":"hello:latest","secrets":[{"secret":"db","key":"password","env":"DB_PASSWORD"},{"secret":"db","key":"password","file":"pw"}]}`, &fn))
	assert.Equal(t, "web-00001", fn.LatestRevision)
	assert.Equal(t, []api.Secret{{Secret: "db", Key: "password", Env: "DB_PASSWORD"}, {Secret: "db", Key: "password", File: "pw"}}, fn.Spec.Secrets)
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/secrets/db?merge=true", `{"stringData":{"user":"u"}}`, &info))
	assert.Equal(t, []string{"password", "user"}, info.Keys)
	assert.Equal(t, []string{"web"}, info.UsedBy)
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/functions/web", "", &fn))
	assert.Equal(t, "web-00002", fn.LatestRevision, "a secret update rolls the functions that use it")
	assert.Equal(t, http.StatusConflict, a.do("DELETE", "/v1/secrets/db", "", nil), "in use")

	// Rotation re-wraps both secrets.
	var rot api.RotateKeyResult
	require.Equal(t, http.StatusOK, a.do("POST", "/v1/secrets/rotate-key", "", &rot))
	assert.Equal(t, 2, rot.Rewrapped)
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/secrets/db", "", &info))
	assert.Equal(t, rot.KeyID, info.KeyID)

	// Deleting the namespace deletes its secrets.
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/namespaces/team-a", "", nil))
	n, _, err := a.store.List(context.Background(), store.SecretsPrefix("team-a"))
	require.NoError(t, err)
	assert.Empty(t, n)
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/functions/web", "", nil))
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/secrets/db", "", nil))
}

func TestMigrateInlineSecrets(t *testing.T) {
	e := newSecretsEnv(t)
	ctx := context.Background()
	inline := func(pw string) api.FunctionSpec {
		return api.FunctionSpec{Image: "hello", Secrets: []api.Secret{
			{Name: "db", Value: pw, Env: "DB_PASSWORD"}, {Name: "tls", Value: "-----KEY-----", File: "key.pem"}}}
	}
	// An earlier version's records: revision 1 had another password.
	fn := store.Function{Name: "web.team-a", Spec: inline("pw-new-plain"), Generation: 2, LatestRevision: "web.team-a-00002"}
	_, err := e.store.Txn(ctx,
		store.PutJSON(store.FunctionKey(fn.Name), fn, store.MustNotExist),
		store.PutJSON(store.RevisionKey(fn.Name, "web.team-a-00001"), store.Revision{Name: "web.team-a-00001", Function: fn.Name, Generation: 1, Spec: inline("pw-old-plain")}, store.MustNotExist),
		store.PutJSON(store.RevisionKey(fn.Name, "web.team-a-00002"), store.Revision{Name: "web.team-a-00002", Function: fn.Name, Generation: 2, Spec: inline("pw-new-plain")}, store.MustNotExist))
	require.NoError(t, err)
	e.putFunction(t, "plain", api.FunctionSpec{Image: "hello"})

	moved, err := e.secrets.MigrateInline(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"web.team-a": "inline-web"}, moved)

	data, err := e.secrets.SecretValues(ctx, "team-a", "inline-web")
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{"db": []byte("pw-new-plain"), "db.00001": []byte("pw-old-plain"), "tls": []byte("-----KEY-----")}, data)
	got, _, err := store.GetJSON[store.Function](ctx, e.store, store.FunctionKey(fn.Name))
	require.NoError(t, err)
	assert.Equal(t, []api.Secret{{Secret: "inline-web", Key: "db", Env: "DB_PASSWORD"}, {Secret: "inline-web", Key: "tls", File: "key.pem"}}, got.Spec.Secrets)
	rev1, _, err := store.GetJSON[store.Revision](ctx, e.store, store.RevisionKey(fn.Name, "web.team-a-00001"))
	require.NoError(t, err)
	assert.Equal(t, []api.Secret{{Secret: "inline-web", Key: "db.00001", Env: "DB_PASSWORD"}, {Secret: "inline-web", Key: "tls", File: "key.pem"}}, rev1.Spec.Secrets)
	require.NoError(t, got.Spec.WithDefaults().Validate(), "the migrated spec is valid today")

	// No record holds a value any more, and a second run changes nothing.
	all, _, err := e.store.List(ctx, "")
	require.NoError(t, err)
	for _, kv := range all {
		for _, v := range []string{"pw-new-plain", "pw-old-plain", "-----KEY-----"} {
			assert.NotContains(t, string(kv.Value), v, kv.Key)
		}
	}
	again, err := e.secrets.MigrateInline(ctx)
	require.NoError(t, err)
	assert.Empty(t, again)
}

// A namespace's quota of secrets caps the secret objects it holds.
func TestSecretsQuota(t *testing.T) {
	a := newTestAPI(t)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{"quota":{"secrets":1}}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a/secrets/one", `{"stringData":{"k":"v"}}`, nil))
	var e api.ErrorBody
	require.Equal(t, http.StatusForbidden, a.do("PUT", "/v1/namespaces/team-a/secrets/two", `{"stringData":{"k":"v"}}`, &e))
	assert.Equal(t, "quota_exceeded", e.Error.Code)
	assert.Contains(t, e.Error.Message, "secrets 1 of 1 used")
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/namespaces/team-a/secrets/one", `{"stringData":{"k":"w"}}`, nil), "replacing one adds nothing")
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/secrets/two", `{"stringData":{"k":"v"}}`, nil), "default has no quota")
}
