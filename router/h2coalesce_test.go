package router

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// A coalescingConn delivers every write, in order, and Close writes out
// what is still pending before it closes: a GOAWAY written just before
// Close reaches the peer.
func TestCoalescingConnDelivers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes int
		size   int
	}{
		{name: "one frame", writes: 1, size: 9},
		{name: "many small frames", writes: 500, size: 13},
		{name: "past the pending bound", writes: 8, size: coalescePending},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			c := coalesce(a)
			got := make(chan []byte, 1)
			go func() {
				all, _ := io.ReadAll(b)
				got <- all
			}()
			var want bytes.Buffer
			for i := range tc.writes {
				p := bytes.Repeat([]byte{byte(i)}, tc.size)
				want.Write(p)
				n, err := c.Write(p)
				require.NoError(t, err)
				require.Equal(t, len(p), n)
				p[0] ^= 0xff // the caller may reuse its buffer at once
			}
			require.NoError(t, c.Close())
			require.Equal(t, want.Bytes(), <-got)
			_, err := c.Write([]byte("late"))
			require.Error(t, err)
		})
	}
}

// A write the peer cannot take fails the later writes, and Close does not
// hang on it.
func TestCoalescingConnWriteError(t *testing.T) {
	a, b := net.Pipe()
	require.NoError(t, b.Close())
	c := coalesce(a)
	_, err := c.Write([]byte("frame"))
	require.NoError(t, err, "the first write is only buffered")
	require.NoError(t, c.Close())
	cc := c.(*coalescingConn)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	require.ErrorIs(t, cc.err, io.ErrClosedPipe)
}

// A TLS connection keeps its ConnectionState, which x/net/http2 reads to
// fill req.TLS.
func TestCoalescingConnTLS(t *testing.T) {
	a, b := net.Pipe()
	t.Cleanup(func() { _ = b.Close() })
	c := coalesce(tls.Client(a, &tls.Config{InsecureSkipVerify: true}))
	_, ok := c.(interface{ ConnectionState() tls.ConnectionState })
	require.True(t, ok)
	require.NoError(t, c.Close())
}
