package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClientQuota(t *testing.T) {
	var got struct {
		method, path, body string
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.method, got.path, got.body = r.Method, r.URL.Path, string(b)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/namespaces/team-a" {
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"name":"team-a","functions":0,"quota":{"replicas":2}}`)
			return
		}
		_, _ = io.WriteString(w, `{"replicas":2,"memory":"1Gi"}`)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)
	ctx := context.Background()

	q, err := c.GetQuota(ctx, "team-a")
	require.NoError(t, err)
	assert.Equal(t, Quota{Replicas: 2, Memory: "1Gi"}, q)
	assert.Equal(t, "GET /v1/namespaces/team-a/quota", got.method+" "+got.path)

	_, err = c.SetQuota(ctx, "team-a", Quota{Replicas: 2, Memory: "1Gi"})
	require.NoError(t, err)
	assert.Equal(t, "PUT /v1/namespaces/team-a/quota", got.method+" "+got.path)
	assert.JSONEq(t, `{"replicas":2,"memory":"1Gi"}`, got.body)

	ns, created, err := c.CreateNamespaceWithQuota(ctx, "team-a", Quota{Replicas: 2})
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, Quota{Replicas: 2}, ns.Quota)
	assert.JSONEq(t, `{"quota":{"replicas":2}}`, got.body)
	_, _, err = c.CreateNamespaceWithQuota(ctx, "team-a", Quota{})
	require.NoError(t, err)
	assert.JSONEq(t, `{}`, got.body, "no quota, no field")
}

// TestClientQuotaRefusesBadInput: a bad quota or namespace never leaves
// the client.
func TestClientQuotaRefusesBadInput(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = c.SetQuota(ctx, "team-a", Quota{Replicas: -1})
	assert.True(t, IsValidation(err), "%v", err)
	_, err = c.SetQuota(ctx, "../x", Quota{Replicas: 1})
	assert.True(t, IsValidation(err), "%v", err)
	_, _, err = c.CreateNamespaceWithQuota(ctx, "team-a", Quota{Memory: "lots"})
	assert.True(t, IsValidation(err), "%v", err)
	_, err = c.GetQuota(ctx, "Team_A")
	assert.True(t, IsValidation(err), "%v", err)
	assert.Zero(t, calls.Load())
}

func TestQuotaJSON(t *testing.T) {
	b, err := json.Marshal(Namespace{Name: "a"})
	require.NoError(t, err)
	assert.NotContains(t, string(b), "quota", "a namespace without a quota shows none")
	b, err = json.Marshal(Quota{Replicas: 2, CPU: 1.5})
	require.NoError(t, err)
	assert.JSONEq(t, `{"replicas":2,"cpu":1.5}`, string(b))
}
