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

func TestDomains(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a", "", nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-b", "", nil))
	for _, ns := range []string{"team-a", "team-b"} {
		require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/"+ns+"/functions/hello", `{"image":"hello:latest"}`, nil))
	}

	var d api.Domain
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-a/domains/api.example.com", `{"function":"hello"}`, &d))
	assert.Equal(t, api.Domain{Host: "api.example.com", Namespace: "team-a", Function: "hello", CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}, d)
	rec, _, err := store.GetJSON[store.Domain](context.Background(), a.store, store.DomainKey("api.example.com"))
	require.NoError(t, err)
	assert.Equal(t, "team-a", rec.Namespace)

	require.Equal(t, http.StatusOK, a.do("PUT", "/v1/namespaces/team-a/domains/api.example.com", `{"function":"hello","redirect":true}`, &d),
		"the owner may change its mapping")
	assert.True(t, d.Redirect)

	var e api.ErrorBody
	require.Equal(t, http.StatusConflict, a.do("PUT", "/v1/namespaces/team-b/domains/api.example.com", `{"function":"hello"}`, &e),
		"another namespace cannot take the host")
	assert.Equal(t, api.CodeConflict, e.Error.Code)
	assert.Contains(t, e.Error.Message, `namespace "team-a"`, "the error names the owner")

	require.Equal(t, http.StatusNotFound, a.do("DELETE", "/v1/namespaces/team-b/domains/api.example.com", "", &e),
		"nor delete it")
	require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/namespaces/team-b/domains/api.example.com", "", &e))
	require.Equal(t, http.StatusNotFound, a.do("PUT", "/v1/namespaces/team-b/domains/b.example.com", `{"function":"nope"}`, &e),
		"the function must exist")

	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/domains/www.example.com", `{"function":"hello"}`, &d), "the default namespace's path")
	assert.Equal(t, api.DefaultNamespace, d.Namespace)
	var list api.DomainList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/domains", "", &list))
	require.Len(t, list.Domains, 1)
	assert.Equal(t, "api.example.com", list.Domains[0].Host)
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/domains", "", &list))
	require.Len(t, list.Domains, 1)
	assert.Equal(t, "www.example.com", list.Domains[0].Host)

	// Deleting the function orphans the mapping: still owned, listed.
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/namespaces/team-a/functions/hello", "", nil))
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/namespaces/team-a/domains/api.example.com", "", &d))
	require.Equal(t, http.StatusConflict, a.do("PUT", "/v1/namespaces/team-b/domains/api.example.com", `{"function":"hello"}`, &e))

	// Deleting the namespace deletes its mappings; the host is free.
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/namespaces/team-a", "", nil))
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/namespaces/team-b/domains/api.example.com", `{"function":"hello"}`, &d))

	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/namespaces/team-b/domains/api.example.com", "", nil))
	require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/namespaces/team-b/domains/api.example.com", "", &e))
}

func TestDomainsBadInput(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))
	tests := []struct {
		name, host, body string
		status           int
	}{
		{"ipv4", "127.0.0.1", `{"function":"hello"}`, http.StatusBadRequest},
		{"ipv6", "[::1]", `{"function":"hello"}`, http.StatusBadRequest},
		{"wildcard", "*.example.com", `{"function":"hello"}`, http.StatusBadRequest},
		{"one label", "localhost", `{"function":"hello"}`, http.StatusBadRequest},
		{"upper case", "API.example.com", `{"function":"hello"}`, http.StatusBadRequest},
		{"too long", strings.Repeat("a.", 127) + "com", `{"function":"hello"}`, http.StatusBadRequest},
		{"underscore", "a_b.example.com", `{"function":"hello"}`, http.StatusBadRequest},
		{"trailing dot", "api.example.com.", `{"function":"hello"}`, http.StatusBadRequest},
		{"numeric tld", "api.example.42", `{"function":"hello"}`, http.StatusBadRequest},
		{"no function", "api.example.com", `{}`, http.StatusBadRequest},
		{"bad function", "api.example.com", `{"function":"Hello!"}`, http.StatusBadRequest},
		{"unknown field", "api.example.com", `{"function":"hello","tls":"x"}`, http.StatusBadRequest},
		{"not json", "api.example.com", `function=hello`, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e api.ErrorBody
			require.Equal(t, tt.status, a.do("PUT", "/v1/domains/"+tt.host, tt.body, &e))
			assert.Equal(t, api.CodeInvalid, e.Error.Code)
		})
	}
	var list api.DomainList
	require.Equal(t, http.StatusOK, a.do("GET", "/v1/domains", "", &list))
	assert.Empty(t, list.Domains, "nothing bad was stored")
}
