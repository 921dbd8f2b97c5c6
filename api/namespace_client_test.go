package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateQualifiedName(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"default function", "hello", ""},
		{"namespaced function", "hello.team-a", ""},
		{"namespaced revision", "hello.team-a-00001", ""},
		{"longest revision", strings.Repeat("f", 31) + "." + strings.Repeat("n", 31) + "-00001", ""},
		{"too long", strings.Repeat("f", 63) + "." + strings.Repeat("n", 10), "longer than"},
		{"two dots", "a.b.c", "DNS label"},
		{"empty namespace", "hello.", "DNS label"},
		{"empty function", ".team-a", "must not be empty"},
		{"traversal", "../x", "must not be empty"},
		{"traversal after a name", "a/../x", "DNS label"},
		{"slash", "a/b", "DNS label"},
		{"unicode", "héllo", "DNS label"},
		{"empty", "", "must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateQualifiedName("revision", tc.in)
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.wantErr)
			assert.True(t, IsValidation(err))
		})
	}
}

func TestClientNamespacePaths(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		call       func(t *testing.T, c *Client)
		wantMethod string
		wantPath   string
		wantQuery  string
	}{
		{"list in namespace", 200, `{"functions":[]}`, func(t *testing.T, c *Client) {
			_, err := c.InNamespace("team-a").ListFunctions(context.Background())
			require.NoError(t, err)
		}, "GET", "/v1/namespaces/team-a/functions", ""},
		{"get in namespace", 200, `{"name":"hello","namespace":"team-a"}`, func(t *testing.T, c *Client) {
			fn, err := c.InNamespace("team-a").GetFunction(context.Background(), "hello")
			require.NoError(t, err)
			assert.Equal(t, "team-a", fn.Namespace)
		}, "GET", "/v1/namespaces/team-a/functions/hello", ""},
		{"traffic in namespace", 200, `{}`, func(t *testing.T, c *Client) {
			_, err := c.InNamespace("team-a").SetTraffic(context.Background(), "hello", nil)
			require.NoError(t, err)
		}, "PUT", "/v1/namespaces/team-a/functions/hello/traffic", ""},
		{"logs in namespace", 200, ``, func(t *testing.T, c *Client) {
			rc, err := c.InNamespace("team-a").Logs(context.Background(), "hello", LogOptions{Tail: 3})
			require.NoError(t, err)
			require.NoError(t, rc.Close())
		}, "GET", "/v1/namespaces/team-a/functions/hello/logs", "tail=3"},
		{"default keeps the old paths", 200, `{"functions":[]}`, func(t *testing.T, c *Client) {
			d := c.InNamespace(DefaultNamespace)
			assert.Equal(t, DefaultNamespace, d.Namespace())
			_, err := d.ListFunctions(context.Background())
			require.NoError(t, err)
		}, "GET", "/v1/functions", ""},
		{"create namespace", 201, `{"name":"team-a"}`, func(t *testing.T, c *Client) {
			ns, created, err := c.CreateNamespace(context.Background(), "team-a")
			require.NoError(t, err)
			assert.True(t, created)
			assert.Equal(t, "team-a", ns.Name)
		}, "PUT", "/v1/namespaces/team-a", ""},
		{"get namespace", 200, `{"name":"team-a","functions":2}`, func(t *testing.T, c *Client) {
			ns, err := c.GetNamespace(context.Background(), "team-a")
			require.NoError(t, err)
			assert.Equal(t, 2, ns.Functions)
		}, "GET", "/v1/namespaces/team-a", ""},
		{"list namespaces", 200, `{"namespaces":[{"name":"default"}]}`, func(t *testing.T, c *Client) {
			list, err := c.ListNamespaces(context.Background())
			require.NoError(t, err)
			assert.Equal(t, []Namespace{{Name: "default"}}, list)
		}, "GET", "/v1/namespaces", ""},
		{"delete namespace", 204, ``, func(t *testing.T, c *Client) {
			require.NoError(t, c.DeleteNamespace(context.Background(), "team-a", false))
		}, "DELETE", "/v1/namespaces/team-a", ""},
		{"delete namespace forced", 204, ``, func(t *testing.T, c *Client) {
			require.NoError(t, c.DeleteNamespace(context.Background(), "team-a", true))
		}, "DELETE", "/v1/namespaces/team-a", "force=true"},
		{"delete refused", 409, `{"error":{"code":"conflict","message":"namespace \"team-a\" has functions with ready replicas (hello)"}}`, func(t *testing.T, c *Client) {
			err := c.DeleteNamespace(context.Background(), "team-a", false)
			assert.True(t, IsConflict(err))
			assert.ErrorContains(t, err, "ready replicas (hello)")
		}, "DELETE", "/v1/namespaces/team-a", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rec := fakeAPI(t, tt.status, tt.body)
			tt.call(t, c)
			assert.Equal(t, tt.wantMethod, rec.Method)
			assert.Equal(t, tt.wantPath, rec.Path)
			assert.Equal(t, tt.wantQuery, rec.Query)
		})
	}
}

func TestClientRejectsBadNamespacesLocally(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)
	ctx := context.Background()
	for _, ns := range []string{"..", "a/b", "Team", "a.b", "a?b=c", strings.Repeat("n", 64)} {
		_, err := c.InNamespace(ns).ListFunctions(ctx)
		assert.True(t, IsValidation(err), "ListFunctions in %q: %v", ns, err)
		_, err = c.InNamespace(ns).GetFunction(ctx, "hello")
		assert.True(t, IsValidation(err), "GetFunction in %q: %v", ns, err)
		_, _, err = c.CreateNamespace(ctx, ns)
		assert.True(t, IsValidation(err), "CreateNamespace(%q): %v", ns, err)
		_, err = c.GetNamespace(ctx, ns)
		assert.True(t, IsValidation(err))
		assert.True(t, IsValidation(c.DeleteNamespace(ctx, ns, true)))
	}
	assert.Zero(t, calls.Load(), "no request may leave for a bad namespace")
}
