package nodeagent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func serve(t *testing.T, addr string, status int) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

func TestProbe(t *testing.T) {
	t.Run("passes as soon as the server answers", func(t *testing.T) {
		addr := freeAddr(t)
		p := newProber(nil, addr, "/", false, 200*time.Microsecond, 5*time.Second)
		done := make(chan error, 1)
		go func() { done <- p.wait(context.Background(), nil, nil) }()
		serve(t, addr, http.StatusNotFound) // any status below 500 is ready
		require.NoError(t, <-done)
	})
	t.Run("5xx is not ready", func(t *testing.T) {
		addr := freeAddr(t)
		serve(t, addr, http.StatusServiceUnavailable)
		p := newProber(nil, addr, "/", false, time.Millisecond, 50*time.Millisecond)
		assert.ErrorIs(t, p.wait(context.Background(), nil, nil), errProbeTimeout)
		// A TCP probe does not look at the answer.
		assert.NoError(t, newProber(nil, addr, "/", true, time.Millisecond, time.Second).wait(context.Background(), nil, nil))
	})
	t.Run("gives up when the process exits or a stop comes", func(t *testing.T) {
		addr := freeAddr(t)
		p := newProber(nil, addr, "/", false, time.Millisecond, 10*time.Second)
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

// TestReplicaConns checks the drain signal against real sockets: a request
// in flight is busy, an idle keep-alive connection is not.
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

	// A first request in flight.
	request("/slow")
	require.Eventually(t, func() bool {
		act, err := replicaConns(port)
		return err == nil && act.Established == 1 && act.Busy == 1
	}, 5*time.Second, time.Millisecond)
	// Still busy well past the streaming window: it has not answered.
	time.Sleep(2 * streamingWindow) // the rule under test is about elapsed time
	act, err = replicaConns(port)
	require.NoError(t, err)
	assert.Equal(t, 1, act.Busy)
	release <- struct{}{}
	readResponse()

	// Answered, the kept-alive connection goes idle after the window.
	require.Eventually(t, func() bool {
		act, err := replicaConns(port)
		return err == nil && act.Established == 1 && act.Busy == 0
	}, 5*time.Second, 5*time.Millisecond)

	// A second request on the same connection is busy again.
	request("/slow")
	require.Eventually(t, func() bool {
		act, err := replicaConns(port)
		return err == nil && act.Busy == 1
	}, 5*time.Second, time.Millisecond)
	time.Sleep(2 * streamingWindow)
	act, err = replicaConns(port)
	require.NoError(t, err)
	assert.Equal(t, 1, act.Busy)
	close(release)
	readResponse()
}
