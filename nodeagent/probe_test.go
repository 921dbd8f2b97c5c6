package nodeagent

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memNet is an in-memory network of HTTP servers by address: a
// testing/synctest bubble can wait on it, as it cannot on sockets.
type memNet struct {
	mu    sync.Mutex
	ls    map[string]*fasthttputil.InmemoryListener
	dials int
}

func (n *memNet) dial(_ context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	n.dials++
	l := n.ls[addr]
	n.mu.Unlock()
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	return l.Dial()
}

func (n *memNet) dialCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dials
}

// serve answers every request at addr with status, counting them.
func (n *memNet) serve(t *testing.T, addr string, status int) *atomic.Int32 {
	t.Helper()
	l := fasthttputil.NewInmemoryListener()
	n.mu.Lock()
	if n.ls == nil {
		n.ls = map[string]*fasthttputil.InmemoryListener{}
	}
	n.ls[addr] = l
	n.mu.Unlock()
	var requests atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(status)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &requests
}

const probeAddr = "127.0.0.1:20001"

func TestProbe(t *testing.T) {
	t.Run("passes as soon as the server answers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var n memNet
			p := newProber(n.dial, probeAddr, "/", false, time.Millisecond, 5*time.Second)
			done := make(chan error, 1)
			go func() { done <- p.wait(context.Background(), nil, nil) }()
			// Nothing listens for 100ms: the probe keeps trying, once per
			// interval.
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
			select {
			case err := <-done:
				t.Fatalf("probe ended before anything listened: %v", err)
			default:
			}
			assert.GreaterOrEqual(t, n.dialCount(), 100)
			up := time.Now()
			n.serve(t, probeAddr, http.StatusNotFound) // any status below 500 is ready
			require.NoError(t, <-done)
			assert.LessOrEqual(t, time.Since(up), time.Millisecond, "ready within one interval")
		})
	})
	t.Run("5xx is not ready", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var n memNet
			requests := n.serve(t, probeAddr, http.StatusServiceUnavailable)
			p := newProber(n.dial, probeAddr, "/", false, time.Millisecond, 50*time.Millisecond)
			began := time.Now()
			assert.ErrorIs(t, p.wait(context.Background(), nil, nil), errProbeTimeout)
			assert.Equal(t, 50*time.Millisecond, time.Since(began))
			assert.GreaterOrEqual(t, requests.Load(), int32(50), "asked once per interval")
			// A TCP probe does not look at the answer.
			assert.NoError(t, newProber(n.dial, probeAddr, "/", true, time.Millisecond, time.Second).wait(context.Background(), nil, nil))
		})
	})
	t.Run("gives up when the process exits or a stop comes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var n memNet
			p := newProber(n.dial, probeAddr, "/", false, time.Millisecond, 10*time.Second)
			exited := make(chan struct{})
			close(exited)
			assert.ErrorIs(t, p.wait(context.Background(), exited, nil), errExited)
			stop := make(chan struct{})
			close(stop)
			assert.ErrorIs(t, p.wait(context.Background(), nil, stop), errStopped)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			assert.ErrorIs(t, p.wait(ctx, nil, nil), context.Canceled)
		})
	})
}

func TestParseStatusLine(t *testing.T) {
	tests := []struct {
		line string
		code int
		ok   bool
	}{
		{"HTTP/1.1 200 OK\r\n", 200, true},
		{"HTTP/1.0 404 Not Found\r\n", 404, true},
		{"HTTP/1.1 503\r\n", 503, true},
		{"SSH-2.0-OpenSSH\r\n", 0, false},
		{"HTTP/1.1 abc\r\n", 0, false},
	}
	for _, tt := range tests {
		code, err := parseStatusLine([]byte(tt.line))
		if !tt.ok {
			assert.Error(t, err, tt.line)
			continue
		}
		require.NoError(t, err, tt.line)
		assert.Equal(t, tt.code, code)
	}
}

func TestCountEstablished(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:4E21 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C351 0100007F:4E21 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:4E21 0100007F:C352 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0000000000000000
`
	// Port 0x4E21 = 20001: one listener, one established (ours), one
	// established where 20001 is the remote side, one in TIME_WAIT.
	assert.Equal(t, 1, countEstablished([]byte(table), 20001))
	assert.Equal(t, 0, countEstablished([]byte(table), 20002))
}

// TestBusy is the drain rule of connActivity on tcp_info as the kernel
// reports it.
func TestBusy(t *testing.T) {
	type info struct {
		unacked, lastSent, lastRecv uint32 // lastSent and lastRecv: ms ago
		segsIn, segsOut             uint32
		short                       bool // a kernel without the segment counts
	}
	window := uint32(streamingWindow / time.Millisecond)
	tests := []struct {
		name string
		info *info // nil: no tcp_info at all
		busy bool
	}{
		{name: "no tcp_info: busy rather than cut a request off", busy: true},
		{name: "unacknowledged bytes", info: &info{unacked: 1, lastSent: 5 * window, lastRecv: 6 * window, segsIn: 2, segsOut: 2}, busy: true},
		{name: "received after the last send: waiting for its answer", info: &info{lastSent: 50 * window, lastRecv: 3 * window, segsIn: 4, segsOut: 2}, busy: true},
		{name: "sent within the window: still answering", info: &info{lastSent: window - 1, lastRecv: 5 * window, segsIn: 2, segsOut: 9}, busy: true},
		{name: "answered, then quiet: idle keep-alive", info: &info{lastSent: 2 * window, lastRecv: 3 * window, segsIn: 2, segsOut: 2}},
		{name: "same tick, nothing ever sent: a first request", info: &info{lastSent: 2 * window, lastRecv: 2 * window, segsIn: 1}, busy: true},
		{name: "same tick, answered before", info: &info{lastSent: 2 * window, lastRecv: 2 * window, segsIn: 2, segsOut: 2}},
		{name: "same tick, no segment counts", info: &info{lastSent: 2 * window, lastRecv: 2 * window, short: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw []byte
			if i := tt.info; i != nil {
				raw = make([]byte, tcpInfoSegsLen)
				ne := binary.NativeEndian
				ne.PutUint32(raw[24:], i.unacked)
				ne.PutUint32(raw[44:], i.lastSent)
				ne.PutUint32(raw[52:], i.lastRecv)
				ne.PutUint32(raw[152:], i.segsIn)
				ne.PutUint32(raw[156:], i.segsOut)
				if i.short {
					raw = raw[:tcpInfoMinLen]
				}
			}
			assert.Equal(t, tt.busy, busy(raw))
		})
	}
}

// TestReplicaConns checks the drain signal against real sockets: a request
// in flight is busy, an idle keep-alive connection is not. The sockets and
// their clock are the kernel's, so this test cannot run in a synctest
// bubble: its waits poll until the kernel's view of the sockets catches up,
// and its sleeps let the kernel's clock pass the streaming window.
func TestReplicaConns(t *testing.T) {
	release := make(chan struct{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})}
	go srv.Serve(l)
	defer srv.Close()

	act, err := replicaConns(port)
	require.NoError(t, err)
	assert.Equal(t, connActivity{}, act)

	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	request := func(path string) {
		_, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		require.NoError(t, err)
	}
	readResponse := func() {
		buf := make([]byte, 512)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err := c.Read(buf)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200"))
	}

	// A first request in flight. (Polls: the kernel must see it arrive.)
	request("/slow")
	require.Eventually(t, func() bool {
		act, err := replicaConns(port)
		return err == nil && act.Established == 1 && act.Busy == 1
	}, 5*time.Second, time.Millisecond)
	// Still busy well past the streaming window: it has not answered. The
	// rule is about time on the kernel's clock, which only a real wait
	// moves; TestBusy covers the rule itself.
	time.Sleep(2 * streamingWindow)
	act, err = replicaConns(port)
	require.NoError(t, err)
	assert.Equal(t, 1, act.Busy)
	release <- struct{}{}
	readResponse()

	// Answered, the kept-alive connection goes idle after the window, on
	// the kernel's clock.
	require.Eventually(t, func() bool {
		act, err := replicaConns(port)
		return err == nil && act.Established == 1 && act.Busy == 0
	}, 5*time.Second, 5*time.Millisecond)

	// A second request on the same connection is busy again, once the
	// kernel has seen it.
	request("/slow")
	require.Eventually(t, func() bool {
		act, err := replicaConns(port)
		return err == nil && act.Busy == 1
	}, 5*time.Second, time.Millisecond)
	time.Sleep(2 * streamingWindow) // the kernel's clock, as above
	act, err = replicaConns(port)
	require.NoError(t, err)
	assert.Equal(t, 1, act.Busy)
	close(release)
	readResponse()
}
