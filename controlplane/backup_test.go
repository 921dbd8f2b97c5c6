package controlplane

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/backup"
	"github.com/ebbrun/ebb/store"
)

// takeBackup GETs /v1/backup.
func (a *testAPI) takeBackup(query string) []byte {
	a.t.Helper()
	req, err := http.NewRequest("GET", a.url+"/v1/backup"+query, nil)
	require.NoError(a.t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultTransport.RoundTrip(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	require.NoError(a.t, err)
	require.Equal(a.t, http.StatusOK, resp.StatusCode, buf.String())
	assert.Equal(a.t, api.BackupContentType, resp.Header.Get("Content-Type"))
	return buf.Bytes()
}

func (a *testAPI) restoreBackup(file []byte, out any) int {
	a.t.Helper()
	return a.doRaw("POST", "/v1/restore", api.BackupContentType, bytes.NewReader(file), testToken, out)
}

// withKeyOf is a fresh API holding a's secrets key, as a new machine
// given the key file kept beside the backups.
func withKeyOf(t *testing.T, a *testAPI) *testAPI {
	t.Helper()
	dir := t.TempDir()
	key, err := os.ReadFile(filepath.Join(filepath.Dir(a.spoolDir), "secrets.key"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets.key"), key, 0o600))
	return newTestAPIIn(t, dir, func(*Config) {})
}

func (a *testAPI) desiredState() map[string]string {
	a.t.Helper()
	kvs, _, err := a.store.List(context.Background(), "")
	require.NoError(a.t, err)
	out := map[string]string{}
	for _, kv := range kvs {
		if c, _ := backup.Classify(kv.Key); c == backup.Kept {
			out[kv.Key] = string(kv.Value)
		}
	}
	return out
}

func TestBackupRestoresIntoAFreshCluster(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/secrets/db", `{"stringData":{"password":"hunter2"}}`, nil))
	a.deployN("/v1/functions/web", 2)
	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/functions/web/traffic", `{"traffic":[{"revision":"web-00001","percent":50},{"latestRevision":true,"percent":50}]}`, nil))
	require.Equal(t, http.StatusCreated, a.do("POST", "/v1/tokens", `{"role":"developer","namespace":"team-a"}`, nil))
	// Runtime state is left behind.
	a.put(store.PutJSON(store.EndpointKey("web-00002", "r1"), store.Endpoint{Addr: "10.0.0.9:80"}, store.MustNotExist))

	file := a.takeBackup("")
	b, err := backup.Read(bytes.NewReader(file), backup.Options{})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{store.PrefixEndpoints: 1}, b.Header.Skipped)
	keyIDs := a.srv.deps.Secrets.KeyIDs()
	assert.Equal(t, keyIDs[0], b.Header.KeyID)
	assert.Equal(t, keyIDs, b.Header.SecretKeyIDs)

	t.Run("into a cluster with another key", func(t *testing.T) {
		other := newTestAPI(t)
		var e api.ErrorBody
		assert.Equal(t, http.StatusConflict, other.restoreBackup(file, &e))
		assert.Equal(t, api.CodeKeyMissing, e.Error.Code)
		assert.Contains(t, e.Error.Message, "--secrets-key-file")
		assert.Empty(t, other.desiredState())
	})

	fresh := withKeyOf(t, a)
	var res api.RestoreResult
	require.Equal(t, http.StatusOK, fresh.restoreBackup(file, &res))
	assert.Equal(t, b.Header.Revision, res.BackupRevision)
	assert.Equal(t, b.Header.Records, res.Records)
	assert.Equal(t, a.desiredState(), fresh.desiredState(), "every kept record, byte for byte")
	assert.Empty(t, fresh.keys(store.PrefixEndpoints))

	var fn api.Function
	require.Equal(t, http.StatusOK, fresh.do("GET", "/v1/functions/web", "", &fn))
	assert.Len(t, fn.Traffic, 2)
	values, err := fresh.srv.deps.Secrets.SecretValues(context.Background(), "default", "db")
	require.NoError(t, err)
	assert.Equal(t, "hunter2", string(values["password"]), "the sealed secret opens with the key kept apart")

	var e api.ErrorBody
	assert.Equal(t, http.StatusConflict, fresh.restoreBackup(file, &e), "a second restore finds the cluster not empty")
	assert.Equal(t, api.CodeNotEmpty, e.Error.Code)
	assert.Contains(t, e.Error.Message, "restore into a fresh cluster")
}

func TestRestoreRefusesBadFiles(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	a.deployN("/v1/functions/web", 1)
	good := a.takeBackup("")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(good)
	require.NoError(t, zw.Close())
	flipped := bytes.Clone(good)
	flipped[len(flipped)-40] ^= 0x10

	fresh := withKeyOf(t, a)
	for _, tc := range []struct {
		name string
		body []byte
		msg  string
	}{
		{"empty", nil, "the file is empty"},
		{"random bytes", []byte("\x00\x01\x02 random"), "not an ebb backup"},
		{"a gzip of a backup", gz.Bytes(), "gzip"},
		{"truncated", good[:len(good)-10], "truncated"},
		{"corrupt", flipped, "corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e api.ErrorBody
			assert.Equal(t, http.StatusBadRequest, fresh.restoreBackup(tc.body, &e))
			assert.Equal(t, api.CodeInvalidBackup, e.Error.Code)
			assert.Contains(t, e.Error.Message, tc.msg)
			assert.Contains(t, e.Error.Message, "nothing was restored")
			assert.NotContains(t, e.Error.Message, "\n")
			assert.Empty(t, fresh.desiredState(), "the cluster is untouched")
		})
	}
	entries, err := os.ReadDir(filepath.Dir(fresh.spoolDir))
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.HasPrefix(e.Name(), "restore-"), "restore leaves no temp dir: %s", e.Name())
	}
}

func TestBackupQuery(t *testing.T) {
	a := newTestAPI(t)
	var e api.ErrorBody
	assert.Equal(t, http.StatusBadRequest, a.do("GET", "/v1/backup?images=maybe", "", &e))
	assert.Contains(t, e.Error.Message, "not a boolean")
	assert.Equal(t, http.StatusNotImplemented, a.do("GET", "/v1/backup?images=true", "", &e), "the test importer cannot export")
}

func TestRestoresRunOneAtATime(t *testing.T) {
	a := newTestAPI(t)
	file := a.takeBackup("")
	fresh := withKeyOf(t, a)
	fresh.srv.restoring.Lock() // a restore in progress
	var e api.ErrorBody
	assert.Equal(t, http.StatusConflict, fresh.restoreBackup(file, &e))
	assert.Contains(t, e.Error.Message, "a restore is already running")
	fresh.srv.restoring.Unlock()
	assert.Equal(t, http.StatusOK, fresh.restoreBackup(file, nil))
}
