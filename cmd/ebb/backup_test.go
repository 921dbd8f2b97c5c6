package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/backup"
)

// backupServer serves GET /v1/backup and POST /v1/restore.
type backupServer struct {
	mu       sync.Mutex
	file     []byte // what GET /v1/backup sends
	query    string
	restored []byte // what POST /v1/restore received
	refuse   int    // non-zero: POST /v1/restore answers this status
}

func sampleBackup(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := backup.NewWriter(&buf, backup.Header{Revision: 7, CreatedAt: testNow, SecretKeyIDs: []string{"0a1b2c3d4e5f6071"}, Records: 1})
	require.NoError(t, err)
	require.NoError(t, w.Record("functions/hello", []byte(`{}`)))
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func newBackupCLI(t *testing.T) (cli, *backupServer) {
	s := &backupServer{file: sampleBackup(t)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/backup":
			s.query = r.URL.RawQuery
			w.Header().Set("Content-Type", api.BackupContentType)
			_, _ = w.Write(s.file)
		case r.Method == http.MethodPost && r.URL.Path == "/v1/restore":
			s.restored, _ = io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			if s.refuse != 0 {
				w.WriteHeader(s.refuse)
				_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotEmpty, Message: "the cluster is not empty: it holds 1 keys under functions/"}})
				return
			}
			_ = json.NewEncoder(w).Encode(api.RestoreResult{Revision: 3, Records: 1, BackupRevision: 7, BackupCreatedAt: testNow})
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return cli{env: map[string]string{"EBB_API": srv.URL, "EBB_TOKEN": "tok", "HOME": t.TempDir()}}, s
}

func TestBackupCommand(t *testing.T) {
	c, s := newBackupCLI(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.ebbak")

	r := c.run(t, "backup", "-o", path, "--with-images")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "images=true", s.query)
	assert.Equal(t, "backup of store revision 7 written to "+path+": 1 records, 0 images, "+strconv.Itoa(len(s.file))+" bytes\n"+
		"its secrets need key 0a1b2c3d4e5f6071: keep the secrets key file apart from it\n", r.stdout)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, s.file, got)

	// A stream cut short (the server failed midway) is not saved.
	s.file = s.file[:len(s.file)-20]
	cut := filepath.Join(dir, "cut.ebbak")
	r = c.run(t, "backup", "-o", cut)
	assert.Equal(t, 1, r.code)
	oneErrorLine(t, r, "the downloaded backup does not verify: backup is truncated")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "neither the cut file nor its temp file is left")

	r = c.run(t, "backup")
	assert.Equal(t, 2, r.code)
	oneErrorLine(t, r, "missing -o FILE")
}

func TestRestoreCommand(t *testing.T) {
	c, s := newBackupCLI(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.ebbak")
	require.NoError(t, os.WriteFile(good, s.file, 0o600))

	r := c.run(t, "restore", good)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, s.file, s.restored)
	assert.Equal(t, "restored the backup of store revision 7 taken "+testNow.UTC().Format("2006-01-02 15:04:05 MST")+": 1 records, 0 images\n", r.stdout)

	s.restored = nil
	bad := filepath.Join(dir, "bad.ebbak")
	require.NoError(t, os.WriteFile(bad, []byte("PK\x03\x04 a zip"), 0o600))
	r = c.run(t, "restore", bad)
	assert.Equal(t, 1, r.code)
	oneErrorLine(t, r, "not an ebb backup: it is a zip file; nothing was restored")
	assert.Nil(t, s.restored, "a bad file is refused before anything is sent")

	s.refuse = http.StatusConflict
	r = c.run(t, "restore", good)
	assert.NotEqual(t, 0, r.code)
	oneErrorLine(t, r, "the cluster is not empty")
}
