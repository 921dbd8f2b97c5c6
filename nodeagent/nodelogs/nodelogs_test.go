package nodelogs

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// agent serves canned lines the way a node agent's /v1/logs does.
func agent(t *testing.T, token string, lines ...string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/v1/logs" || r.URL.Query().Get("function") != "hello" {
			http.Error(w, "bad query", http.StatusBadRequest)
			return
		}
		for _, l := range lines {
			_, _ = w.Write([]byte(l + "\n"))
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestReadMergesNodes(t *testing.T) {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"), embedded.Options{})
	require.NoError(t, err)
	defer st.Close()
	a := agent(t, "tok", "r1 stdout: one", "r1 stdout: two")
	b := agent(t, "tok", "r2 stderr: three")
	_, err = st.Txn(context.Background(),
		store.PutJSON(store.NodeKey("a"), store.Node{Name: "a", AgentAddr: a}, store.AnyVersion),
		store.PutJSON(store.NodeKey("b"), store.Node{Name: "b", AgentAddr: b}, store.AnyVersion),
		store.PutJSON(store.NodeKey("c"), store.Node{Name: "c"}, store.AnyVersion)) // no agent address: skipped
	require.NoError(t, err)

	tests := []struct {
		name   string
		follow bool
	}{{"one pass", false}, {"follow", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			r := &Reader{Store: st, Token: "tok", Client: &http.Client{}}
			require.NoError(t, r.Read(context.Background(), &out, Query{Function: "hello", Follow: tt.follow}))
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			sort.Strings(lines)
			assert.Equal(t, []string{"r1 stdout: one", "r1 stdout: two", "r2 stderr: three"}, lines)
		})
	}

	r := &Reader{Store: st, Token: "wrong", Client: &http.Client{}}
	err = r.Read(context.Background(), &bytes.Buffer{}, Query{Function: "hello"})
	assert.ErrorContains(t, err, "401")

	// A node that cannot be reached is an error, not a hang.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	l.Close()
	_, err = st.Txn(context.Background(), store.PutJSON(store.NodeKey("d"), store.Node{Name: "d", AgentAddr: dead}, store.AnyVersion))
	require.NoError(t, err)
	r = &Reader{Store: st, Token: "tok", Client: &http.Client{}}
	err = r.Read(context.Background(), &bytes.Buffer{}, Query{Function: "hello"})
	assert.ErrorContains(t, err, "node d")
}
