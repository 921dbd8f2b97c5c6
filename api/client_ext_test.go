package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClientFetchesEveryPage(t *testing.T) {
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Query().Get("continue") {
		case "":
			fmt.Fprint(w, `{"functions":[{"name":"a"},{"name":"b"}],"continue":"t1"}`)
		case "t1":
			fmt.Fprint(w, `{"functions":[{"name":"c"}],"continue":"t2"}`)
		case "t2":
			fmt.Fprint(w, `{"functions":[]}`)
		default:
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"code":"invalid","message":"bad continue"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)
	fns, err := c.ListFunctions(context.Background())
	require.NoError(t, err)
	names := []string{}
	for _, f := range fns {
		names = append(names, f.Name)
	}
	assert.Equal(t, []string{"a", "b", "c"}, names)
	assert.Equal(t, []string{"", "continue=t1", "continue=t2"}, queries)

	queries = nil
	page, err := c.ListFunctionsPage(context.Background(), ListOptions{Limit: 2, LabelSelector: "app=x"})
	require.NoError(t, err)
	assert.Equal(t, "t1", page.Continue)
	assert.Equal(t, []string{"labelSelector=app%3Dx&limit=2"}, queries)
}

func TestClientWriteOptions(t *testing.T) {
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("If-Match") == `"7"` {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"error":{"code":"conflict","message":"changed"}}`)
			return
		}
		fmt.Fprint(w, `{"name":"hello","resourceVersion":"9"}`)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)
	ctx := context.Background()

	_, _, err = c.PutFunctionIf(ctx, "hello", FunctionSpec{Image: "x"}, "7")
	assert.True(t, IsConflict(err), "%v", err)
	fn, _, err := c.PutFunctionWith(ctx, "hello", FunctionSpec{Image: "x"}, WriteOptions{IfMatch: "8", DryRun: true})
	require.NoError(t, err)
	assert.Equal(t, "9", fn.ResourceVersion)
	assert.Equal(t, `"8"`, got.Header.Get("If-Match"))
	assert.Equal(t, "dryRun=server", got.URL.RawQuery)
	_, err = c.SetTrafficWith(ctx, "hello", []TrafficTarget{{LatestRevision: true, Percent: 100}}, WriteOptions{IfMatch: "*"})
	require.NoError(t, err)
	assert.Equal(t, "*", got.Header.Get("If-Match"))
	assert.Equal(t, "/v1/functions/hello/traffic", got.URL.Path)
	_, err = c.SetQuotaWith(ctx, "team-a", Quota{Replicas: 1}, WriteOptions{})
	require.NoError(t, err)
	assert.Empty(t, got.Header.Get("If-Match"))
	assert.Empty(t, got.URL.RawQuery)
	_, _, err = c.InNamespace("team-a").PutSecretWith(ctx, "db", map[string][]byte{"k": []byte("v")}, WriteOptions{IfMatch: "3"})
	require.NoError(t, err)
	assert.Equal(t, "/v1/namespaces/team-a/secrets/db", got.URL.Path)
	_, _, err = c.CreateNamespaceWith(ctx, "team-b", NamespaceSpec{}, WriteOptions{DryRun: true})
	require.NoError(t, err)
	assert.Equal(t, "/v1/namespaces/team-b", got.URL.Path)
}

func TestClientWatchFunctions(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("resourceVersion") == "1" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusGone)
			fmt.Fprint(w, `{"error":{"code":"gone","message":"compacted"}}`)
			return
		}
		assert.Equal(t, "true", q.Get("watch"))
		assert.Equal(t, "app=x", q.Get("labelSelector"))
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, `{"type":"ADDED","object":{"name":"a"},"resourceVersion":"5"}`+"\n\n")
		fmt.Fprint(w, `{"type":"BOOKMARK","resourceVersion":"6"}`+"\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "not json\n")
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	_, err = c.WatchFunctions(ctx, WatchOptions{ResourceVersion: "1"})
	assert.True(t, IsGone(err), "%v", err)

	events, err := c.WatchFunctions(ctx, WatchOptions{LabelSelector: "app=x", ResourceVersion: "4"})
	require.NoError(t, err)
	recv := func() WatchEvent {
		select {
		case ev := <-events:
			return ev
		case <-time.After(30 * time.Second): // a hang guard
			t.Fatal("no event")
			return WatchEvent{}
		}
	}
	ev := recv()
	assert.Equal(t, WatchAdded, ev.Type)
	assert.Equal(t, "a", ev.Object.Name)
	assert.Equal(t, "5", ev.ResourceVersion)
	ev = recv()
	assert.Equal(t, WatchBookmark, ev.Type)
	assert.Nil(t, ev.Object)
	close(release)
	ev = recv()
	assert.Equal(t, WatchError, ev.Type)
	assert.Error(t, ev.Err)
	_, open := <-events
	assert.False(t, open, "the channel closes after the error")
}
