package fastconn

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pair returns a wrapped client connection and the plain server end of a
// real loopback TCP connection.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	srv := <-accepted
	require.NotNil(t, srv)
	fc, ok := Wrap(c).(*Conn)
	require.True(t, ok, "a TCP connection is wrapped")
	t.Cleanup(func() { fc.Close(); srv.Close() })
	return fc, srv
}

func TestConn(t *testing.T) {
	t.Run("round trip, including a read that waits in the netpoller", func(t *testing.T) {
		c, srv := pair(t)
		go func() {
			buf := make([]byte, 5)
			_, _ = io.ReadFull(srv, buf)
			_, _ = srv.Write(append(buf, '!'))
		}()
		n, err := c.Write([]byte("hello"))
		require.NoError(t, err)
		assert.Equal(t, 5, n)
		got := make([]byte, 6)
		_, err = io.ReadFull(c, got)
		require.NoError(t, err)
		assert.Equal(t, "hello!", string(got))
	})

	t.Run("a write larger than the socket buffers completes as the peer reads", func(t *testing.T) {
		c, srv := pair(t)
		payload := make([]byte, 8<<20)
		_, _ = rand.Read(payload)
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(srv)
			got <- b
		}()
		n, err := c.Write(payload)
		require.NoError(t, err)
		assert.Equal(t, len(payload), n)
		require.NoError(t, c.CloseWrite(), "the wrapped connection's methods stay reachable")
		assert.True(t, bytes.Equal(payload, <-got))
	})

	t.Run("EOF when the peer closes", func(t *testing.T) {
		c, srv := pair(t)
		require.NoError(t, srv.Close())
		n, err := c.Read(make([]byte, 16))
		assert.Zero(t, n)
		assert.Equal(t, io.EOF, err)
	})

	t.Run("a read past its deadline fails as a timeout", func(t *testing.T) {
		c, _ := pair(t)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		_, err := c.Read(make([]byte, 16))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
	})

	t.Run("reading a closed connection says so", func(t *testing.T) {
		c, _ := pair(t)
		require.NoError(t, c.Close())
		_, err := c.Read(make([]byte, 16))
		assert.ErrorIs(t, err, net.ErrClosed)
		_, err = c.Write([]byte("x"))
		assert.ErrorIs(t, err, net.ErrClosed)
	})

	t.Run("a reset connection reports the errno", func(t *testing.T) {
		c, srv := pair(t)
		require.NoError(t, srv.(*net.TCPConn).SetLinger(0))
		require.NoError(t, srv.Close())
		_, err := c.Read(make([]byte, 16))
		assert.ErrorIs(t, err, syscall.ECONNRESET)
		var op *net.OpError
		require.ErrorAs(t, err, &op)
		assert.Equal(t, "read", op.Op)
	})

	t.Run("empty reads and writes do nothing", func(t *testing.T) {
		c, _ := pair(t)
		n, err := c.Read(nil)
		assert.Zero(t, n)
		assert.NoError(t, err)
		n, err = c.Write(nil)
		assert.Zero(t, n)
		assert.NoError(t, err)
	})

	t.Run("the file descriptor stays reachable", func(t *testing.T) {
		c, _ := pair(t)
		var sc syscall.Conn = c
		raw, err := sc.SyscallConn()
		require.NoError(t, err)
		fd := -1
		require.NoError(t, raw.Control(func(f uintptr) { fd = int(f) }))
		assert.GreaterOrEqual(t, fd, 0)
	})
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	assert.Same(t, a, Wrap(a))
}

func TestListenerWrapsAccepted(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	wl := Listener(ln)
	defer wl.Close()
	go func() {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err == nil {
			c.Close()
		}
	}()
	c, err := wl.Accept()
	require.NoError(t, err)
	defer c.Close()
	_, ok := c.(*Conn)
	assert.True(t, ok)
	require.NoError(t, wl.Close())
	_, err = wl.Accept()
	assert.True(t, errors.Is(err, net.ErrClosed))
}
