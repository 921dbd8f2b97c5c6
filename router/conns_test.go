package router

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

func TestConnCap(t *testing.T) {
	for _, tc := range []struct {
		nofile uint64
		want   int
	}{
		{1 << 20, DefaultMaxConns},
		{20000, 19744},
		{1024, 768},
		{512, 256},
		{256, 128},
		{64, 32},
		{2, 1},
		{1, 1},
	} {
		assert.Equal(t, tc.want, ConnCap(tc.nofile), "nofile %d", tc.nofile)
	}
	for _, tc := range []struct {
		name       string
		configured int
		nofile     uint64
		want       int
	}{
		{"default follows the limit", 0, 1024, 768},
		{"a smaller value is kept", 100, 1024, 100},
		{"a larger value is lowered", 1000, 1024, 768},
		{"an unknown limit caps at the default", 0, 0, DefaultMaxConns},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, maxConns(tc.configured, tc.nofile))
		})
	}
}

// acceptResult is one scripted outcome of fakeListener.Accept.
type acceptResult struct {
	c   net.Conn
	err error
}

// fakeListener returns the scripted results, then blocks until closed.
type fakeListener struct {
	results chan acceptResult
	closed  chan struct{}
}

func (f *fakeListener) Accept() (net.Conn, error) {
	select {
	case r := <-f.results:
		return r.c, r.err
	case <-f.closed:
		return nil, net.ErrClosed
	}
}
func (f *fakeListener) Close() error   { close(f.closed); return nil }
func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{} }

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// Out of descriptors, Accept pauses (5 ms, doubling to 1 s) and accepts
// again instead of failing; any other error ends it, and so does Close.
func TestAcceptPausesOnShortage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeListener{results: make(chan acceptResult, 16), closed: make(chan struct{})}
		shortages := prometheus.NewCounter(prometheus.CounterOpts{Name: "s"})
		l := newListener(f, 0, slog.New(slog.DiscardHandler), shortages, prometheus.NewCounter(prometheus.CounterOpts{Name: "r"}))

		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EMFILE, syscall.ENOBUFS} {
			f.results <- acceptResult{err: acceptErr(errno)}
		}
		f.results <- acceptResult{c: c1}
		start := time.Now()
		c, err := l.Accept()
		require.NoError(t, err)
		assert.Same(t, c1, c)
		assert.Equal(t, (5+10+20+40)*time.Millisecond, time.Since(start))
		assert.Equal(t, 4.0, value(t, shortages))

		// The pause starts again from 5 ms after a success, and tops out at 1 s.
		for range 12 {
			f.results <- acceptResult{err: acceptErr(syscall.EMFILE)}
		}
		f.results <- acceptResult{c: c2}
		start = time.Now()
		_, err = l.Accept()
		require.NoError(t, err)
		assert.Equal(t, (5+10+20+40+80+160+320+640)*time.Millisecond+4*time.Second, time.Since(start))

		// Other errors are the caller's.
		f.results <- acceptResult{err: acceptErr(syscall.EINVAL)}
		_, err = l.Accept()
		assert.ErrorIs(t, err, syscall.EINVAL)

		// Close ends a pause at once.
		f.results <- acceptResult{err: acceptErr(syscall.EMFILE)}
		done := make(chan error)
		go func() { _, err := l.Accept(); done <- err }()
		synctest.Wait()
		start = time.Now()
		require.NoError(t, l.Close())
		assert.ErrorIs(t, <-done, net.ErrClosed)
		assert.Zero(t, time.Since(start))
	})
}

// Past MaxConnsPerIP, a client address gets 429 and its connection closed;
// once one of its connections closes it is served again. Closing a socket
// is seen by the router only when the kernel delivers it, so this test
// uses real sockets and polls.
func TestMaxConnsPerIP(t *testing.T) {
	e, addr := rawRouter(t, Config{MaxConnsPerIP: 2})
	keep := make([]net.Conn, 2)
	for i := range keep {
		resp, _, c := roundTrip(t, addr, "GET / HTTP/1.1\r\nHost: fn.localhost\r\n\r\n")
		require.Equal(t, 200, resp.StatusCode)
		keep[i] = c
	}
	resp, body, _ := roundTrip(t, addr, "GET / HTTP/1.1\r\nHost: fn.localhost\r\n\r\n")
	assert.Equal(t, 429, resp.StatusCode)
	assert.Equal(t, "ebb: too many connections from your IP address\n", body)
	assert.Equal(t, 1.0, e.metric("ebb_router_connections_refused_total", "max_conns_per_ip"))

	require.NoError(t, keep[0].Close())
	// Polls until the kernel has delivered the close to the router.
	require.Eventually(t, func() bool {
		resp, _, c := roundTrip(t, addr, "GET / HTTP/1.1\r\nHost: fn.localhost\r\nConnection: close\r\n\r\n")
		c.Close()
		return resp.StatusCode == 200
	}, 5*time.Second, 5*time.Millisecond)
	// The connection still open is served as before.
	_, err := io.WriteString(keep[1], "GET / HTTP/1.1\r\nHost: fn.localhost\r\n\r\n")
	require.NoError(t, err)
	resp, err = http.ReadResponse(bufio.NewReader(keep[1]), nil)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
}

// floodChildEnv names the backend a TestIdleConnectionFlood child routes
// to; its presence makes the test the child.
const floodChildEnv = "EBB_ROUTER_FLOOD_BACKEND"

// floodLimit is the child's open-file limit: far below what ebbd gets, so
// that a few hundred connections exhaust it.
const floodLimit = 256

// A client that opens more idle connections than the router can hold
// must not stop it: the router caps its connections below its open-file
// limit, refuses the excess with a 503, and serves new clients once old
// ones close. Before the cap, accept(2) failed with EMFILE, fasthttp took
// that as fatal and Run returned, taking ebbd down.
//
// The router runs in a child process with a lowered RLIMIT_NOFILE (this
// process, which opens the connections, keeps its own); the test polls
// while that process and the kernel catch up.
func TestIdleConnectionFlood(t *testing.T) {
	if backend := os.Getenv(floodChildEnv); backend != "" {
		floodChild(t, backend)
		return
	}
	if raceEnabled {
		t.Skip("the child's race detector needs descriptors of its own")
	}
	be := startBackend(t, "be", nil)
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnectionFlood$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), floodChildEnv+"="+be.addr)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan struct{}) // closed when the child has exited, with waitErr
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	// The child runs with -test.v, so that what it logs reaches us as it
	// happens; its address comes first on a line of its own.
	out := bufio.NewReader(stdout)
	var childOut testenv.Buffer
	var addr string
	for addr == "" {
		line, err := out.ReadString('\n')
		require.NoError(t, err, "the router's process said:\n%s%s", &childOut, stderr.String())
		if a, ok := strings.CutPrefix(strings.TrimSpace(line), "router "); ok {
			addr = a
		} else {
			_, _ = childOut.Write([]byte(line))
		}
	}
	go func() { _, _ = io.Copy(&childOut, out) }()

	get := func() (int, error) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: fn.localhost\r\nConnection: close\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	code, err := get()
	require.NoError(t, err)
	require.Equal(t, 200, code)

	// Twice the child's limit in idle connections, none sending a byte.
	flood := make([]net.Conn, 0, 2*floodLimit)
	for range 2 * floodLimit {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			// Most likely the router stopped; let its process finish saying why.
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
			}
			t.Fatalf("connection %d of the flood: %v; the router's process said:\n%s%s", len(flood)+1, err, &childOut, stderr.String())
		}
		flood = append(flood, c)
	}
	// The router is at its cap: a newcomer is refused, not left hanging.
	// Polls until the child has accepted the flood from the kernel.
	require.Eventually(t, func() bool { code, _ := get(); return code == 503 }, 10*time.Second, 10*time.Millisecond)
	select {
	case <-exited:
		t.Fatalf("the router's process exited under the flood: %v\n%s%s", waitErr, &childOut, stderr.String())
	default:
	}

	for _, c := range flood {
		c.Close()
	}
	// Polls until the kernel has delivered the closes to the child.
	require.Eventually(t, func() bool { code, _ := get(); return code == 200 }, 10*time.Second, 10*time.Millisecond,
		"a new client is served once the idle ones are gone")
	select {
	case <-exited:
		t.Fatalf("the router's process exited: %v\n%s%s", waitErr, &childOut, stderr.String())
	default:
	}
}

// floodChild runs a router with a low open-file limit, routing fn.localhost
// to backend, prints its address and serves until its stdin closes. It
// fails if the router stops before that.
func floodChild(t *testing.T, backend string) {
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	lim.Cur = floodLimit
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))

	st, err := embedded.Open(filepath.Join(t.TempDir(), "store.db"), embedded.Options{})
	require.NoError(t, err)
	defer st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	// A long header timeout, so that the idle connections last the test.
	r, err := New(Config{ReadHeaderTimeout: time.Minute}, Deps{Store: st, Listener: ln})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	spec := api.FunctionSpec{Image: "img"}.WithDefaults()
	_, err = st.Txn(ctx,
		store.PutJSON(store.RevisionKey("fn", "fn-00001"), store.Revision{Name: "fn-00001", Function: "fn", Generation: 1, Spec: spec}, store.AnyVersion),
		store.PutJSON(store.FunctionKey("fn"), store.Function{Name: "fn", LatestRevision: "fn-00001", Generation: 1}, store.AnyVersion),
		store.PutJSON(store.EndpointKey("fn-00001", "r1"), store.Endpoint{Function: "fn", Revision: "fn-00001", Replica: "r1", Addr: backend}, store.AnyVersion))
	require.NoError(t, err)
	// This router serves a real socket, so the child runs on the wall
	// clock, not in a bubble: poll until its caches have the route.
	require.Eventually(t, func() bool {
		rt := r.table.Load().lookup([]byte("fn.localhost"))
		return rt != nil && rt.targets[0].rev.set.Len() == 1
	}, 5*time.Second, time.Millisecond)
	fmt.Printf("router %s\n", ln.Addr())

	stdinClosed := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stdinClosed) }()
	select {
	case err := <-done:
		t.Fatalf("the router stopped: %v", err)
	case <-stdinClosed:
	}
	cancel()
	require.NoError(t, <-done)
}

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 1)
	return mfs[0].GetMetric()[0].GetCounter().GetValue()
}
