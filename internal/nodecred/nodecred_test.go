package nodecred

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	path := Path(dir, RoleRouter)
	c, err := LoadOrCreate(path, "node-1", RoleRouter)
	require.NoError(t, err)
	assert.Regexp(t, `^ebbn_node-1_router_[0-9a-f]{64}$`, c.String())
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	again, err := LoadOrCreate(path, "node-1", RoleRouter)
	require.NoError(t, err)
	assert.Equal(t, c, again, "the credential survives restarts")

	renamed, err := LoadOrCreate(path, "node-2", RoleRouter)
	require.NoError(t, err)
	assert.Equal(t, "node-2", renamed.Node, "a renamed node gets a credential of its own")
	assert.NotEqual(t, c.Secret, renamed.Secret)

	require.NoError(t, os.Chmod(path, 0o644))
	_, err = LoadOrCreate(path, "node-2", RoleRouter)
	assert.ErrorContains(t, err, "chmod 600")

	require.NoError(t, os.Chmod(path, 0o600))
	require.NoError(t, os.WriteFile(path, []byte("garbage"), 0o600))
	_, err = LoadOrCreate(path, "node-2", RoleRouter)
	assert.ErrorContains(t, err, "malformed")

	_, err = LoadOrCreate(filepath.Join(dir, "x"), "Node_1", RoleRouter)
	assert.Error(t, err)
	_, err = LoadOrCreate(filepath.Join(dir, "x"), "node-1", "admin")
	assert.Error(t, err)
}

func TestLoadOrCreateConcurrentStartsAgree(t *testing.T) {
	path := Path(t.TempDir(), RoleNodeAgent)
	const n = 8
	got := make([]Credential, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := LoadOrCreate(path, "node-1", RoleNodeAgent)
			assert.NoError(t, err)
			got[i] = c
		})
	}
	wg.Wait()
	for _, c := range got[1:] {
		assert.Equal(t, got[0], c)
	}
}

func TestParse(t *testing.T) {
	secret := strings.Repeat("ab", 32)
	c, ok := Parse("ebbn_node-1_nodeagent_" + secret)
	require.True(t, ok)
	assert.Equal(t, Credential{Node: "node-1", Role: RoleNodeAgent, Secret: secret}, c)
	for _, bad := range []string{
		"",
		"ebbn_",
		"ebbn_node-1_nodeagent_",
		"ebbn_node-1_admin_" + secret,
		"ebbn_Node-1_router_" + secret,
		"ebbn_node-1_router_" + secret + "_x",
		"ebbn_node-1_router_" + secret[:62],
		"ebbn_../x_router_" + secret,
		"ebb_0123456789abcdef_" + secret, // an API token
	} {
		_, ok := Parse(bad)
		assert.False(t, ok, "%q", bad)
	}
}

func TestVerifyAndRequire(t *testing.T) {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	dir := t.TempDir()
	router, err := LoadOrCreate(Path(dir, RoleRouter), "node-1", RoleRouter)
	require.NoError(t, err)
	cp, err := LoadOrCreate(Path(dir, RoleControlPlane), "cp", RoleControlPlane)
	require.NoError(t, err)
	unregistered, err := LoadOrCreate(Path(dir, RoleNodeAgent), "node-1", RoleNodeAgent)
	require.NoError(t, err)
	require.NoError(t, Register(ctx, st, router, time.Now()))
	require.NoError(t, Register(ctx, st, cp, time.Now()))
	kv, err := st.Get(ctx, store.NodeCredKey("node-1", RoleRouter))
	require.NoError(t, err)
	assert.NotContains(t, string(kv.Value), router.Secret, "the store keeps only a hash")

	internal := &Verifier{Store: st, Roles: []string{RoleRouter, RoleNodeAgent}}
	h := Require(internal, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := Caller(r.Context())
		if !ok || c != (Credential{Node: "node-1", Role: RoleRouter}) {
			w.WriteHeader(http.StatusTeapot) // the handler must see the verified caller
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	forged := router
	forged.Secret = strings.Repeat("0", 64)
	otherNode := router
	otherNode.Node = "node-2"
	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"registered router", "Bearer " + router.String(), http.StatusNoContent},
		{"no header", "", http.StatusUnauthorized},
		{"control plane's credential on a router endpoint", "Bearer " + cp.String(), http.StatusUnauthorized},
		{"unregistered", "Bearer " + unregistered.String(), http.StatusUnauthorized},
		{"wrong secret", "Bearer " + forged.String(), http.StatusUnauthorized},
		{"another node's name", "Bearer " + otherNode.String(), http.StatusUnauthorized},
		{"not bearer", router.String(), http.StatusUnauthorized},
		{"an API token", "Bearer ebb_0123456789abcdef_" + strings.Repeat("a", 64), http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/internal/v1/stats", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, tt.want, rec.Code)
			if tt.want == http.StatusUnauthorized {
				assert.Contains(t, rec.Body.String(), `"unauthorized"`)
			}
		})
	}

	// A re-registered credential (a wiped data dir) replaces the old one.
	fresh, err := LoadOrCreate(Path(t.TempDir(), RoleRouter), "node-1", RoleRouter)
	require.NoError(t, err)
	require.NoError(t, Register(ctx, st, fresh, time.Now()))
	_, err = internal.Verify(ctx, "Bearer "+router.String())
	assert.ErrorIs(t, err, ErrUnauthenticated)
	got, err := internal.Verify(ctx, "Bearer "+fresh.String())
	require.NoError(t, err)
	assert.Equal(t, Credential{Node: "node-1", Role: RoleRouter}, got)
}
