package nodelogs

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/nodeagent/logring"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// ticker returns a clock that hands out strictly increasing times, 1ms
// apart; shared by every node, it makes the order lines were written in the
// order a merge must give.
func ticker() func() time.Time {
	var ticks atomic.Int64
	return func() time.Time { return time.Unix(1700000000, ticks.Add(1)*int64(time.Millisecond)) }
}

// node is a node agent's log API: real log rings behind logring's handler.
type node struct {
	logs *logring.Store
	addr string
}

func newNode(t *testing.T, now func() time.Time, token string) *node {
	t.Helper()
	logs, err := logring.New(logring.Config{Dir: t.TempDir(), Now: now})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/v1/logs", logs.Handler(token))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &node{logs: logs, addr: strings.TrimPrefix(srv.URL, "http://")}
}

func (n *node) ring(t *testing.T, replica string) *logring.Ring {
	t.Helper()
	r, err := n.logs.Open(logring.ReplicaRef{Function: "hello", Revision: "hello-00001", ID: replica})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

func newStore(t *testing.T, nodes map[string]string) store.Store {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	for name, addr := range nodes {
		_, err = st.Txn(context.Background(),
			store.PutJSON(store.NodeKey(name), store.Node{Name: name, AgentAddr: addr}, store.AnyVersion))
		require.NoError(t, err)
	}
	return st
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// TestReadMergesNodesByTime is issue 13's bug 2 across nodes: `ebb logs
// --tail N` prints N lines in total, the newest of every node's, in the
// order they were written.
func TestReadMergesNodesByTime(t *testing.T) {
	now := ticker()
	a, b := newNode(t, now, "tok"), newNode(t, now, "tok")
	a1, a2, b1 := a.ring(t, "r1"), a.ring(t, "r2"), b.ring(t, "r3")
	fmt.Fprintln(a1.Stdout(), "one")
	fmt.Fprintln(b1.Stdout(), "two")
	fmt.Fprintln(a2.Stderr(), "three")
	fmt.Fprintln(b1.Stdout(), "four")
	fmt.Fprintln(a1.Stdout(), "five")
	st := newStore(t, map[string]string{"a": a.addr, "b": b.addr, "c": ""}) // c has no agent address: skipped

	all := []string{"r1 stdout: one", "r3 stdout: two", "r2 stderr: three", "r3 stdout: four", "r1 stdout: five"}
	tests := []struct {
		name string
		q    Query
		want []string
	}{
		{"everything", Query{Function: "hello"}, all},
		{"tail counts every node's lines together", Query{Function: "hello", Tail: 3}, all[2:]},
		{"tail of one", Query{Function: "hello", Tail: 1}, all[4:]},
		{"tail above the line count", Query{Function: "hello", Tail: 50}, all},
		{"other function", Query{Function: "other", Tail: 3}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			r := &Reader{Store: st, Token: "tok", Client: &http.Client{}}
			require.NoError(t, r.Read(context.Background(), &out, tt.q))
			assert.Equal(t, tt.want, lines(out.String()))
		})
	}

	t.Run("follow: the merged tail, then new lines of every node", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out := &testenv.Buffer{}
		done := make(chan error, 1)
		r := &Reader{Store: st, Token: "tok", Client: &http.Client{}}
		go func() { done <- r.Read(ctx, out, Query{Function: "hello", Tail: 2, Follow: true}) }()
		waitLines := func(want []string) {
			t.Helper()
			require.Eventually(t, func() bool { return len(lines(out.String())) >= len(want) }, 10*time.Second, time.Millisecond,
				"want %q, have %q", want, out.String())
			assert.Equal(t, want, lines(out.String()))
		}
		waitLines(all[3:])
		fmt.Fprintln(b1.Stdout(), "six")
		waitLines(append(all[3:], "r3 stdout: six"))
		fmt.Fprintln(a2.Stdout(), "seven")
		waitLines(append(all[3:], "r3 stdout: six", "r2 stdout: seven"))
		cancel()
		require.NoError(t, <-done)
	})

	t.Run("a wrong token is an error", func(t *testing.T) {
		r := &Reader{Store: st, Token: "wrong", Client: &http.Client{}}
		err := r.Read(context.Background(), &bytes.Buffer{}, Query{Function: "hello"})
		assert.ErrorContains(t, err, "401")
	})

	t.Run("a node that cannot be reached is an error, not a hang", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		dead := l.Addr().String()
		l.Close()
		st := newStore(t, map[string]string{"a": a.addr, "d": dead})
		var out bytes.Buffer
		r := &Reader{Store: st, Token: "tok", Client: &http.Client{}}
		err = r.Read(context.Background(), &out, Query{Function: "hello", Tail: 1})
		assert.ErrorContains(t, err, "node d")
		assert.Equal(t, []string{"r2 stdout: seven"}, lines(out.String()), "the other nodes' lines still come")
	})
}
