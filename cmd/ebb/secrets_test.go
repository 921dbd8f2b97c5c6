package main

import (
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// The fake API's secrets: values kept as given, never returned.

func nsOf(r *http.Request) string {
	if ns := r.PathValue("ns"); ns != "" {
		return ns
	}
	return api.DefaultNamespace
}

func (f *fakeAPI) secretInfo(ns, name string) api.SecretInfo {
	info := api.SecretInfo{Name: name, Namespace: ns, Generation: 1, KeyID: "kf-test", CreatedAt: t0}
	for k := range f.secrets[ns+"/"+name] {
		info.Keys = append(info.Keys, k)
	}
	sort.Strings(info.Keys)
	return info
}

func (f *fakeAPI) putSecret(w http.ResponseWriter, r *http.Request) {
	ns, name := nsOf(r), r.PathValue("name")
	var body api.SecretData
	if err := api.DecodeStrict(r.Body, &body); err != nil {
		writeErr(w, 400, api.CodeInvalid, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.secrets == nil {
		f.secrets = map[string]map[string][]byte{}
	}
	key := ns + "/" + name
	old, exists := f.secrets[key]
	if exists && r.Header.Get("If-None-Match") == "*" {
		writeErr(w, 409, api.CodeConflict, "secret \""+name+"\" already exists in namespace "+ns)
		return
	}
	data := map[string][]byte{}
	if r.URL.Query().Get("merge") == "true" {
		for k, v := range old {
			data[k] = v
		}
	}
	for k, v := range body.Data {
		data[k] = v
	}
	f.secrets[key] = data
	status := 201
	if exists {
		status = 200
	}
	writeOK(w, status, f.secretInfo(ns, name))
}

func (f *fakeAPI) listSecrets(w http.ResponseWriter, r *http.Request) {
	ns := nsOf(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	list := api.SecretList{Secrets: []api.SecretInfo{}}
	for key := range f.secrets {
		if n, name, _ := strings.Cut(key, "/"); n == ns {
			list.Secrets = append(list.Secrets, f.secretInfo(ns, name))
		}
	}
	writeOK(w, 200, list)
}

func (f *fakeAPI) deleteSecret(w http.ResponseWriter, r *http.Request) {
	key := nsOf(r) + "/" + r.PathValue("name")
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.secrets[key]; !ok {
		writeErr(w, 404, api.CodeNotFound, "secret \""+r.PathValue("name")+"\" does not exist")
		return
	}
	delete(f.secrets, key)
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeAPI) rotateKey(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	writeOK(w, 200, api.RotateKeyResult{KeyID: "kf-new", Rewrapped: len(f.secrets)})
}

func TestSecretsCommands(t *testing.T) {
	c, f := newCLI(t)
	c.env["DB_PASSWORD"] = "from-env-value"
	file := filepath.Join(t.TempDir(), "server.key")
	require.NoError(t, os.WriteFile(file, []byte("-----KEY-----\n"), 0o600))

	r := c.run(t, "secrets", "create", "db", "--from-literal", "user=app", "--from-env", "password=DB_PASSWORD", "--from-file", file)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "created secret db in namespace default (keys: password server.key user)\n", r.stdout)
	assert.Equal(t, map[string][]byte{"user": []byte("app"), "password": []byte("from-env-value"), "server.key": []byte("-----KEY-----\n")},
		f.secrets["default/db"])

	r = c.run(t, "secrets", "create", "db", "--from-literal", "x=y")
	assert.NotEqual(t, 0, r.code)
	oneErrorLine(t, r, "already exists")

	r = c.run(t, "secrets", "set", "db", "--from-literal", "user=admin", "--from-file", "tls.key="+file)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []byte("admin"), f.secrets["default/db"]["user"])
	assert.Equal(t, []byte("from-env-value"), f.secrets["default/db"]["password"], "set keeps the other keys")

	r = c.run(t, "-n", "team-a", "secrets", "set", "db", "--from-literal", "user=a")
	assert.NotEqual(t, 0, r.code, "no namespace team-a yet")
	require.Equal(t, 0, c.run(t, "namespaces", "create", "team-a").code)
	r = c.run(t, "-n", "team-a", "secrets", "set", "api", "--from-literal", "token=t")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, f.secrets, "team-a/api")

	r = c.run(t, "secrets", "list")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "db")
	assert.Contains(t, r.stdout, "password,server.key,tls.key,user")
	assert.NotContains(t, r.stdout, "api", "another namespace's secret")
	for _, v := range []string{"from-env-value", "admin", "-----KEY"} {
		assert.NotContains(t, r.stdout, v)
	}

	r = c.run(t, "secrets", "rotate-key")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "rotated to key kf-new; re-wrapped 2 secrets\n", r.stdout)

	r = c.run(t, "secrets", "delete", "db")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, f.secrets, "default/db")

	for _, bad := range [][]string{
		{"secrets", "create", "x"},
		{"secrets", "create", "x", "--from-literal", "novalue"},
		{"secrets", "create", "x", "--from-literal", "a/b=v"},
		{"secrets", "create", "x", "--from-literal", "a=1", "--from-literal", "a=2"},
		{"secrets", "create", "x", "--from-env", "a=UNSET_VAR"},
		{"secrets", "create", "x", "--from-file", filepath.Join(t.TempDir(), "missing")},
		{"secrets", "create", "Bad_Name", "--from-literal", "a=1"},
	} {
		r = c.run(t, bad...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", bad, r.stderr)
		assert.NotContains(t, r.stderr, "from-env-value")
	}
}
