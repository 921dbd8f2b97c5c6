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

// readable reports whether c has bytes waiting, without consuming them.
func readable(t *testing.T, c *Conn) bool {
	t.Helper()
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	var n int
	require.NoError(t, raw.Control(func(fd uintptr) {
		n, _, _ = syscall.Recvfrom(int(fd), make([]byte, 1), syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}))
	return n > 0
}

func TestWriteAndAwaitReply(t *testing.T) {
	// echo answers each request of size n with the request and a '!'.
	echo := func(srv net.Conn, n int) {
		buf := make([]byte, n)
		for {
			if _, err := io.ReadFull(srv, buf); err != nil {
				return
			}
			if _, err := srv.Write(append(buf, '!')); err != nil {
				return
			}
		}
	}
	t.Run("returns once the reply is readable", func(t *testing.T) {
		c, srv := pair(t)
		go echo(srv, 5)
		n, err := c.WriteAndAwaitReply([]byte("hello"))
		require.NoError(t, err)
		assert.Equal(t, 5, n)
		assert.True(t, readable(t, c), "the reply is there before the first read")
		got := make([]byte, 6)
		_, err = io.ReadFull(c, got)
		require.NoError(t, err)
		assert.Equal(t, "hello!", string(got))
	})

	t.Run("thousands of back-to-back exchanges never miss a reply", func(t *testing.T) {
		c, srv := pair(t)
		go echo(srv, 4)
		// A missed wake-up would hang; the deadline turns that into a failure.
		require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
		got := make([]byte, 5)
		for i := range 5000 {
			_, err := c.WriteAndAwaitReply([]byte("ping"))
			require.NoError(t, err, "exchange %d", i)
			_, err = io.ReadFull(c, got)
			require.NoError(t, err, "exchange %d", i)
			require.Equal(t, "ping!", string(got))
		}
	})

	t.Run("a peer that closes ends the wait, and Read says EOF", func(t *testing.T) {
		c, srv := pair(t)
		go func() {
			_, _ = io.ReadFull(srv, make([]byte, 3))
			srv.Close()
		}()
		n, err := c.WriteAndAwaitReply([]byte("bye"))
		require.NoError(t, err)
		assert.Equal(t, 3, n)
		_, err = c.Read(make([]byte, 16))
		assert.Equal(t, io.EOF, err)
	})

	t.Run("a deadline that passes while waiting is Read's to report", func(t *testing.T) {
		c, srv := pair(t)
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, 5)
			_, _ = io.ReadFull(srv, b)
			got <- b
		}()
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		n, err := c.WriteAndAwaitReply([]byte("hello"))
		require.NoError(t, err, "the request was written whole")
		assert.Equal(t, 5, n)
		assert.Equal(t, "hello", string(<-got))
		_, err = c.Read(make([]byte, 16))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})

	t.Run("a request larger than the socket buffers is finished by Write", func(t *testing.T) {
		c, srv := pair(t)
		payload := make([]byte, 8<<20)
		_, _ = rand.Read(payload)
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, len(payload))
			_, _ = io.ReadFull(srv, b)
			got <- b
			_, _ = srv.Write([]byte("ok"))
		}()
		n, err := c.WriteAndAwaitReply(payload)
		require.NoError(t, err)
		assert.Equal(t, len(payload), n)
		assert.True(t, bytes.Equal(payload, <-got))
		reply := make([]byte, 2)
		_, err = io.ReadFull(c, reply)
		require.NoError(t, err)
		assert.Equal(t, "ok", string(reply))
	})

	t.Run("a closed connection says so and writes nothing", func(t *testing.T) {
		c, _ := pair(t)
		require.NoError(t, c.Close())
		n, err := c.WriteAndAwaitReply([]byte("x"))
		assert.Zero(t, n)
		assert.ErrorIs(t, err, net.ErrClosed)
	})

	t.Run("a reset connection reports the errno", func(t *testing.T) {
		c, srv := pair(t)
		require.NoError(t, srv.(*net.TCPConn).SetLinger(0))
		require.NoError(t, srv.Close())
		// The first write may still land in the buffer before the RST is
		// seen; the wait then ends on the reset and Read reports it.
		_, err := c.WriteAndAwaitReply([]byte("x"))
		if err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		assert.ErrorIs(t, err, syscall.ECONNRESET)
	})
}
