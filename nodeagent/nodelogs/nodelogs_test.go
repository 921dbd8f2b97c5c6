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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
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

// newNode serves a node's log API on loopback.
func newNode(t *testing.T, now func() time.Time, token string) *node {
	t.Helper()
	logs, mux := nodeAPI(t, now, token)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &node{logs: logs, addr: strings.TrimPrefix(srv.URL, "http://")}
}

func nodeAPI(t *testing.T, now func() time.Time, token string) (*logring.Store, *http.ServeMux) {
	t.Helper()
	logs, err := logring.New(logring.Config{Dir: t.TempDir(), Now: now})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/v1/logs", logs.Handler(token))
	return logs, mux
}

// memNet is an in-memory network for a testing/synctest bubble, which
// real sockets cannot join: node agents' log APIs listen on it and a
// Reader's client dials it. Its connections are net.Pipe's: fasthttputil's
// in-memory conns do not suit net/http's server, whose keep-alive
// connections they cancel (their timeout error is no net.Error).
type memNet struct {
	mu  sync.Mutex
	lns map[string]*pipeListener
}

// newMemNode serves a node's log API on mn at name:80; call it in a bubble.
func newMemNode(t *testing.T, mn *memNet, name string, now func() time.Time, token string) *node {
	t.Helper()
	logs, mux := nodeAPI(t, now, token)
	ln := &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
	addr := name + ":80"
	mn.mu.Lock()
	if mn.lns == nil {
		mn.lns = map[string]*pipeListener{}
	}
	mn.lns[addr] = ln
	mn.mu.Unlock()
	srv := &http.Server{Handler: mux}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	return &node{logs: logs, addr: addr}
}

// client is an HTTP client whose connections go over mn.
func (mn *memNet) client(t *testing.T) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		mn.mu.Lock()
		ln := mn.lns[addr]
		mn.mu.Unlock()
		if ln == nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}
		return ln.dial(ctx)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// pipeListener accepts the server ends of the net.Pipes its dial makes.
type pipeListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
	case <-ctx.Done():
	}
	client.Close()
	server.Close()
	return nil, &net.OpError{Op: "dial", Net: "pipe", Err: syscall.ECONNREFUSED}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

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

// writeLines has replicas r1 and r2 on a and r3 on b write five lines,
// alternating nodes. It returns the rings and the lines as Read prints
// them, in the order they were written.
func writeLines(t *testing.T, a, b *node) (a1, a2, b1 *logring.Ring, all []string) {
	t.Helper()
	a1, a2, b1 = a.ring(t, "r1"), a.ring(t, "r2"), b.ring(t, "r3")
	fmt.Fprintln(a1.Stdout(), "one")
	fmt.Fprintln(b1.Stdout(), "two")
	fmt.Fprintln(a2.Stderr(), "three")
	fmt.Fprintln(b1.Stdout(), "four")
	fmt.Fprintln(a1.Stdout(), "five")
	return a1, a2, b1, []string{"r1 stdout: one", "r3 stdout: two", "r2 stderr: three", "r3 stdout: four", "r1 stdout: five"}
}

// TestReadMergesNodesByTime is issue 13's bug 2 across nodes: `ebb logs
// --tail N` prints N lines in total, the newest of every node's, in the
// order they were written.
func TestReadMergesNodesByTime(t *testing.T) {
	now := ticker()
	a, b := newNode(t, now, "tok"), newNode(t, now, "tok")
	_, _, _, all := writeLines(t, a, b)
	st := newStore(t, map[string]string{"a": a.addr, "b": b.addr, "c": ""}) // c has no agent address: skipped

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
		assert.Equal(t, all[4:], lines(out.String()), "the other nodes' lines still come")
	})
}

// TestFollowMergesNodes follows two nodes at once: the merged tail, then
// new lines of every node. It runs in a testing/synctest bubble, the nodes'
// log APIs served over an in-memory network, so synctest.Wait returns once
// every node has sent, and the Reader written, all there was: the output
// is checked at that instant.
func TestFollowMergesNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := ticker()
		var mn memNet
		a, b := newMemNode(t, &mn, "a", now, "tok"), newMemNode(t, &mn, "b", now, "tok")
		_, a2, b1, all := writeLines(t, a, b)
		st := newStore(t, map[string]string{"a": a.addr, "b": b.addr, "c": ""}) // c has no agent address: skipped

		ctx, cancel := context.WithCancel(context.Background())
		out := &testenv.Buffer{}
		done := make(chan error, 1)
		r := &Reader{Store: st, Token: "tok", Client: mn.client(t)}
		go func() { done <- r.Read(ctx, out, Query{Function: "hello", Tail: 2, Follow: true}) }()
		t.Cleanup(func() {
			cancel()
			require.NoError(t, <-done, "the follow ends cleanly when ctx ends")
		})
		written := func(want []string) {
			t.Helper()
			synctest.Wait()
			assert.Equal(t, want, lines(out.String()))
		}
		written(all[3:])
		fmt.Fprintln(b1.Stdout(), "six")
		written(append(all[3:], "r3 stdout: six"))
		fmt.Fprintln(a2.Stdout(), "seven")
		written(append(all[3:], "r3 stdout: six", "r2 stdout: seven"))
	})
}
