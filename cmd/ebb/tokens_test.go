package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane"
	"github.com/ebbrun/ebb/store/embedded"
)

type noImages struct{}

func (noImages) Import(context.Context, string) (api.Image, error) {
	return api.Image{}, errors.New("no images here")
}
func (noImages) Delete(context.Context, string) error { return nil }

// newRealAPI is the real API server over an embedded store, for commands
// whose point is the server's answer (tokens, permissions).
func newRealAPI(t *testing.T) (url, adminToken string) {
	t.Helper()
	dir := t.TempDir()
	st, err := embedded.Open(filepath.Join(dir, "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	adminToken = strings.Repeat("a1", 32)
	srv, err := controlplane.New(controlplane.Config{Token: adminToken, SpoolDir: filepath.Join(dir, "spool")},
		controlplane.Deps{Store: st, Images: noImages{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL, adminToken
}

func TestTokensCommands(t *testing.T) {
	url, admin := newRealAPI(t)
	c := cli{env: map[string]string{"EBB_API": url, "EBB_TOKEN": admin, "HOME": t.TempDir()}}
	require.Equal(t, 0, c.run(t, "namespaces", "create", "team-a").code)

	r := c.run(t, "tokens", "create", "--namespace", "team-a", "--role", "developer", "--expires", "24h", "--description", "ci")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "shown only this once")
	token := regexp.MustCompile(`ebb_[0-9a-f]{16}_[0-9a-f]{64}`).FindString(r.stdout)
	require.NotEmpty(t, token, r.stdout)
	id := strings.Split(token, "_")[1]

	// The developer token works in team-a, and is refused elsewhere with
	// the missing permission named.
	dev := cli{env: map[string]string{"EBB_API": url, "EBB_TOKEN": token, "HOME": t.TempDir()}}
	r = dev.run(t, "-n", "team-a", "list")
	assert.Equal(t, 0, r.code, r.stderr)
	r = dev.run(t, "list")
	assert.NotEqual(t, 0, r.code)
	oneErrorLine(t, r, "functions:read in namespace default")
	r = dev.run(t, "tokens", "list")
	assert.NotEqual(t, 0, r.code)
	oneErrorLine(t, r, "tokens:read")

	r = c.run(t, "tokens", "list")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, id)
	assert.Contains(t, r.stdout, "developer")
	assert.Contains(t, r.stdout, "ci")
	assert.NotContains(t, r.stdout, token, "a listing never shows the secret")
	var list api.TokenList
	r = c.run(t, "-o", "json", "tokens", "list", "-n", "default")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list))
	assert.Empty(t, list.Tokens, "-n filters by namespace")

	r = c.run(t, "-o", "json", "tokens", "create", "--role", "metrics")
	require.Equal(t, 0, r.code, r.stderr)
	var metrics api.Token
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &metrics))
	assert.Equal(t, "metrics", metrics.Role)
	assert.NotEmpty(t, metrics.Token)

	// Usage errors.
	for _, args := range [][]string{
		{"tokens", "create"},
		{"tokens", "create", "--role", "root"},
		{"tokens", "create", "--role", "admin", "-n", "team-a"},
		{"tokens", "create", "--role", "viewer", "-n", "team-a", "--expires", "-1h"},
		{"tokens", "revoke"},
	} {
		r = c.run(t, args...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
	}

	r = c.run(t, "tokens", "revoke", id)
	require.Equal(t, 0, r.code, r.stderr)
	r = dev.run(t, "-n", "team-a", "list")
	assert.NotEqual(t, 0, r.code)
	oneErrorLine(t, r, "unauthorized")
	r = c.run(t, "tokens", "revoke", id)
	assert.NotEqual(t, 0, r.code, "revoking twice finds nothing")
}
