package h2listen

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIsPreface(t *testing.T) {
	for _, tc := range []struct {
		in              string
		match, complete bool
	}{
		{"", true, false},
		{"P", true, false},
		{"PRI * HTTP/2.0\r\n", true, false},
		{Preface, true, true},
		{Preface + "\x00\x00", true, true},
		{"GET / HTTP/1.1\r\n", false, false},
		{"POST / HTTP/1.1\r\n", false, false},
		{"PUT / HTTP/1.1\r\n", false, false},
		{"PRI * HTTP/1.1\r\n\r\n", false, false},
	} {
		match, complete := IsPreface([]byte(tc.in))
		assert.Equal(t, tc.match, match, "%q", tc.in)
		assert.Equal(t, tc.complete, complete, "%q", tc.in)
	}
}

// listen starts a Listener on loopback whose HTTP/2 connections are sent
// on the returned channel.
func listen(t *testing.T, timeout time.Duration) (*Listener, chan net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h2 := make(chan net.Conn, 4)
	l := New(inner, func(c net.Conn) { h2 <- c }, timeout)
	t.Cleanup(func() { _ = l.Close() })
	return l, h2
}

func TestListenerSplits(t *testing.T) {
	l, h2 := listen(t, 5*time.Second)

	// An HTTP/1.1 connection comes out of Accept with its bytes intact,
	// whichever way the client split its writes.
	c1, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c1.Close()
	_, err = c1.Write([]byte("P"))
	require.NoError(t, err)
	_, err = c1.Write([]byte("OST / HTTP/1.1\r\n\r\n"))
	require.NoError(t, err)
	got, err := l.Accept()
	require.NoError(t, err)
	defer got.Close()
	buf := make([]byte, len("POST / HTTP/1.1\r\n\r\n"))
	_, err = io.ReadFull(got, buf)
	require.NoError(t, err)
	assert.Equal(t, "POST / HTTP/1.1\r\n\r\n", string(buf))

	// An HTTP/2 connection goes to the HTTP/2 server, preface included.
	c2, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c2.Close()
	_, err = c2.Write([]byte(Preface + "after"))
	require.NoError(t, err)
	hc := <-h2
	defer hc.Close()
	buf = make([]byte, len(Preface+"after"))
	_, err = io.ReadFull(hc, buf)
	require.NoError(t, err)
	assert.Equal(t, Preface+"after", string(buf))
	_, isTCP := hc.(*Conn).Conn.(*net.TCPConn)
	assert.True(t, isTCP)
	_, err = hc.(*Conn).SyscallConn()
	assert.NoError(t, err, "the socket stays reachable for hang-up watches")
}

func TestListenerClosesSilentConnections(t *testing.T) {
	l, _ := listen(t, 50*time.Millisecond)
	go func() { _, _ = l.Accept() }() // starts the accept loop
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	// The listener gives up on a connection that says nothing: the read
	// sees it closed rather than hanging.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
}

func TestListenerCloseEndsAccept(t *testing.T) {
	l, _ := listen(t, time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	require.NoError(t, l.Close())
	assert.ErrorIs(t, <-done, net.ErrClosed)
}
