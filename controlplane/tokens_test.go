package controlplane

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/audit"
	"github.com/ebbrun/ebb/store"
)

func TestTokensLifecycle(t *testing.T) {
	a := newTestAPI(t)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{}`, nil))

	var created api.Token
	require.Equal(t, http.StatusCreated, a.do("POST", "/v1/tokens",
		`{"role":"developer","namespace":"team-a","description":"ci","expiresIn":"24h"}`, &created))
	assert.Regexp(t, `^ebb_[0-9a-f]{16}_[0-9a-f]{64}$`, created.Token, "the secret is shown once, at creation")
	assert.Equal(t, "developer", created.Role)
	assert.Equal(t, "team-a", created.Namespace)
	require.NotNil(t, created.ExpiresAt)
	assert.WithinDuration(t, time.Now().Add(24*time.Hour), *created.ExpiresAt, time.Minute)

	// The new token works in its namespace and nowhere else.
	assert.Equal(t, http.StatusOK, a.doRaw("GET", "/v1/namespaces/team-a/functions", "", nil, created.Token, nil))
	assert.Equal(t, http.StatusForbidden, a.doRaw("GET", "/v1/functions", "", nil, created.Token, nil))
	assert.Equal(t, http.StatusForbidden, a.doRaw("GET", "/v1/tokens", "", nil, created.Token, nil), "developers do not manage tokens")
	assert.Equal(t, http.StatusForbidden, a.doRaw("POST", "/v1/namespaces/team-a/tokens", "application/json",
		strings.NewReader(`{"role":"developer"}`), created.Token, nil), "not even in their own namespace")

	// Listing shows neither the secret nor its hash.
	for _, path := range []string{"/v1/tokens", "/v1/namespaces/team-a/tokens"} {
		var list api.TokenList
		require.Equal(t, http.StatusOK, a.do("GET", path, "", &list))
		require.Len(t, list.Tokens, 1, path)
		assert.Equal(t, created.ID, list.Tokens[0].ID)
		assert.Empty(t, list.Tokens[0].Token)
	}
	kv, err := a.store.Get(t.Context(), store.TokenKey(created.ID))
	require.NoError(t, err)
	secret := created.Token[len(created.Token)-64:]
	assert.NotContains(t, string(kv.Value), secret, "only the hash is stored")
	var other api.TokenList
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-b", `{}`, nil))
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-b/tokens", "", &other))
	assert.Empty(t, other.Tokens)

	// A namespaced path finds only its own namespace's tokens.
	assert.Equal(t, http.StatusNotFound, a.do("DELETE", "/v1/namespaces/team-b/tokens/"+created.ID, "", nil))
	assert.Equal(t, http.StatusOK, a.doRaw("GET", "/v1/namespaces/team-a/functions", "", nil, created.Token, nil))

	// Revoked, it stops at once.
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/tokens/"+created.ID, "", nil))
	assert.Equal(t, http.StatusUnauthorized, a.doRaw("GET", "/v1/namespaces/team-a/functions", "", nil, created.Token, nil))
	assert.Equal(t, http.StatusNotFound, a.do("DELETE", "/v1/tokens/"+created.ID, "", nil))

	// Created at the namespaced path, the namespace comes from the path.
	var viewer api.Token
	require.Equal(t, http.StatusCreated, a.do("POST", "/v1/namespaces/team-a/tokens", `{"role":"viewer"}`, &viewer))
	assert.Equal(t, "team-a", viewer.Namespace)
	assert.Nil(t, viewer.ExpiresAt)

	// Deleting the namespace deletes its tokens.
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/namespaces/team-a", "", nil))
	_, err = a.store.Get(t.Context(), store.TokenKey(viewer.ID))
	assert.ErrorIs(t, err, store.ErrNotFound)
	assert.Equal(t, http.StatusUnauthorized, a.doRaw("GET", "/v1/namespaces/team-a", "", nil, viewer.Token, nil))
}

// TestTokensHostileInput throws malformed and hostile requests at the
// tokens endpoints; each gets a 4xx JSON error and creates nothing.
func TestTokensHostileInput(t *testing.T) {
	a := newTestAPI(t)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", `{}`, nil))
	tests := []struct {
		name, method, path, contentType, body string
		want                                  int
		field                                 string // in the message
	}{
		{"no role", "POST", "/v1/tokens", "application/json", `{}`, 400, "role"},
		{"null body", "POST", "/v1/tokens", "application/json", `null`, 400, "role"},
		{"unknown role", "POST", "/v1/tokens", "application/json", `{"role":"root"}`, 400, "role"},
		{"role in capitals", "POST", "/v1/tokens", "application/json", `{"role":"Admin"}`, 400, "role"},
		{"developer without namespace", "POST", "/v1/tokens", "application/json", `{"role":"developer"}`, 400, "namespace"},
		{"admin with namespace", "POST", "/v1/tokens", "application/json", `{"role":"admin","namespace":"team-a"}`, 400, "namespace"},
		{"metrics in a namespace path", "POST", "/v1/namespaces/team-a/tokens", "application/json", `{"role":"metrics"}`, 400, "namespace"},
		{"path traversal namespace", "POST", "/v1/tokens", "application/json", `{"role":"viewer","namespace":"../team-a"}`, 400, "namespace"},
		{"namespace with a slash", "POST", "/v1/tokens", "application/json", `{"role":"viewer","namespace":"team-a/x"}`, 400, "namespace"},
		{"long namespace", "POST", "/v1/tokens", "application/json", `{"role":"viewer","namespace":"` + strings.Repeat("a", 64) + `"}`, 400, "namespace"},
		{"missing namespace", "POST", "/v1/tokens", "application/json", `{"role":"viewer","namespace":"nope"}`, 404, "nope"},
		{"body and path disagree", "POST", "/v1/namespaces/team-a/tokens", "application/json", `{"role":"viewer","namespace":"default"}`, 400, "namespace"},
		{"negative expiry", "POST", "/v1/tokens", "application/json", `{"role":"admin","expiresIn":"-1h"}`, 400, "expiresIn"},
		{"zero expiry", "POST", "/v1/tokens", "application/json", `{"role":"admin","expiresIn":"0s"}`, 400, "expiresIn"},
		{"word expiry", "POST", "/v1/tokens", "application/json", `{"role":"admin","expiresIn":"forever"}`, 400, "expiresIn"},
		{"overflowing expiry", "POST", "/v1/tokens", "application/json", `{"role":"admin","expiresIn":"9999999999999h"}`, 400, "expiresIn"},
		{"century expiry", "POST", "/v1/tokens", "application/json", `{"role":"admin","expiresIn":"876000h"}`, 400, "expiresIn"},
		{"number expiry", "POST", "/v1/tokens", "application/json", `{"role":"admin","expiresIn":3600}`, 400, ""},
		{"multi-line description", "POST", "/v1/tokens", "application/json", `{"role":"admin","description":"a\nb"}`, 400, "description"},
		{"terminal escape description", "POST", "/v1/tokens", "application/json", `{"role":"admin","description":"\u001b[2J"}`, 400, "description"},
		{"long description", "POST", "/v1/tokens", "application/json", `{"role":"admin","description":"` + strings.Repeat("d", 300) + `"}`, 400, "description"},
		{"oversized body", "POST", "/v1/tokens", "application/json", `{"role":"admin","description":"` + strings.Repeat("d", 5000) + `"}`, 413, ""},
		{"unknown field", "POST", "/v1/tokens", "application/json", `{"role":"admin","secretHash":"00"}`, 400, "secretHash"},
		{"a chosen token", "POST", "/v1/tokens", "application/json", `{"role":"admin","token":"ebb_0123456789abcdef_` + strings.Repeat("0", 64) + `"}`, 400, "token"},
		{"trailing data", "POST", "/v1/tokens", "application/json", `{"role":"admin"}{"role":"admin"}`, 400, ""},
		{"not JSON", "POST", "/v1/tokens", "application/json", `role=admin`, 400, ""},
		{"wrong content type", "POST", "/v1/tokens", "text/plain", `{"role":"admin"}`, 415, ""},
		{"revoke a non-id", "DELETE", "/v1/tokens/nothex", "", ``, 404, ""},
		{"revoke an id in capitals", "DELETE", "/v1/tokens/0123456789ABCDEF", "", ``, 404, ""},
		{"revoke a long id", "DELETE", "/v1/tokens/" + strings.Repeat("a", 5000), "", ``, 404, ""},
		{"revoke an escaped traversal", "DELETE", "/v1/tokens/..%2f..%2fnamespaces%2fteam-a", "", ``, 404, ""},
		{"revoke an unknown id", "DELETE", "/v1/tokens/0123456789abcdef", "", ``, 404, ""},
		{"list a bad namespace", "GET", "/v1/namespaces/Team_A/tokens", "", ``, 400, "namespace"},
		{"list a missing namespace", "GET", "/v1/namespaces/nope/tokens", "", ``, 404, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e api.ErrorBody
			status := a.doRaw(tt.method, tt.path, tt.contentType, strings.NewReader(tt.body), testToken, &e)
			assert.Equal(t, tt.want, status, e.Error.Message)
			if tt.field != "" {
				assert.Contains(t, e.Error.Message, tt.field)
			}
		})
	}
	kvs, _, err := a.store.List(t.Context(), store.PrefixTokens)
	require.NoError(t, err)
	assert.Empty(t, kvs, "no hostile request created a token")
}

func TestExpiredTokenIs401(t *testing.T) {
	var offset atomic.Int64 // how far the server's clock is ahead
	a := newTestAPIWith(t, func(*Config) {})
	a.srv.deps.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	var tok api.Token
	require.Equal(t, http.StatusCreated, a.do("POST", "/v1/tokens", `{"role":"admin","expiresIn":"1h"}`, &tok))
	assert.Equal(t, http.StatusOK, a.doRaw("GET", "/v1/nodes", "", nil, tok.Token, nil))
	offset.Store(int64(time.Hour))
	var e api.ErrorBody
	assert.Equal(t, http.StatusUnauthorized, a.doRaw("GET", "/v1/nodes", "", nil, tok.Token, &e))
	assert.Contains(t, e.Error.Message, "expired")
	var list api.TokenList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/tokens", "", &list))
	require.Len(t, list.Tokens, 1)
	assert.True(t, list.Tokens[0].Expired)
}

// TestAuditNamesScopedTokens checks that the audit log names the token of
// each call by its id: a token's creation (whose secret never reaches the
// file) and a developer's refused call in another namespace.
func TestAuditNamesScopedTokens(t *testing.T) {
	a, log := newAuditedAPI(t)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", "", nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-b", "", nil))
	var dev api.Token
	require.Equal(t, http.StatusCreated, a.do("POST", "/v1/tokens", `{"role":"developer","namespace":"team-a"}`, &dev))
	require.Equal(t, http.StatusForbidden, a.doRaw("PUT", "/v1/namespaces/team-b/functions/hello", "application/json",
		strings.NewReader(`{"image":"hello:latest"}`), dev.Token, nil))

	var got api.AuditList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/audit", "", &got))
	require.Len(t, got.Events, 4)
	assert.Equal(t, "admin", got.Events[2].TokenID)
	refused := got.Events[3]
	assert.Equal(t, dev.ID, refused.TokenID)
	assert.Equal(t, "team-b", refused.Namespace)
	assert.Equal(t, http.StatusForbidden, refused.Status)
	assert.Equal(t, api.CodeForbidden, refused.Code)

	b, err := os.ReadFile(filepath.Join(log.Dir(), audit.FileName))
	require.NoError(t, err)
	assert.NotContains(t, string(b), dev.Token[len(dev.Token)-64:], "a token's secret never reaches the audit log")
}
