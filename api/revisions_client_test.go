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

func TestDeleteRevision(t *testing.T) {
	ctx := context.Background()
	c, rec := fakeAPI(t, http.StatusNoContent, "")
	require.NoError(t, c.DeleteRevision(ctx, "hello", "hello-00002"))
	assert.Equal(t, "DELETE", rec.Method)
	assert.Equal(t, "/v1/functions/hello/revisions/hello-00002", rec.Path)

	require.NoError(t, c.InNamespace("team-a").DeleteRevision(ctx, "hello", "hello.team-a-00002"))
	assert.Equal(t, "/v1/namespaces/team-a/functions/hello/revisions/hello.team-a-00002", rec.Path)

	c, _ = fakeAPI(t, http.StatusConflict, `{"error":{"code":"conflict","message":"revision hello-00001 of function \"hello\" cannot be deleted: it receives 100% of the traffic"}}`)
	err := c.DeleteRevision(ctx, "hello", "hello-00001")
	assert.True(t, IsConflict(err), "%v", err)
	assert.Contains(t, err.Error(), "100% of the traffic")

	c, _ = fakeAPI(t, http.StatusNotFound, `{"error":{"code":"not_found","message":"revision \"hello-00009\" of function \"hello\" does not exist"}}`)
	assert.True(t, IsNotFound(c.DeleteRevision(ctx, "hello", "hello-00009")))
}

func TestDeleteRevisionRejectsBadNamesLocally(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)
	for _, tt := range []struct{ fn, rev string }{
		{"hello", ""}, {"hello", ".."}, {"hello", "a/b"}, {"hello", "Hello-00001"}, {"hello", "a?b=c"},
		{"hello", "a..b"}, {"hello", strings.Repeat("a", 100)}, {"", "hello-00001"}, {"a/b", "hello-00001"},
	} {
		err := c.DeleteRevision(context.Background(), tt.fn, tt.rev)
		assert.True(t, IsValidation(err), "DeleteRevision(%q, %q): %v", tt.fn, tt.rev, err)
	}
	assert.Zero(t, calls.Load(), "no request may leave for a bad name")
}
