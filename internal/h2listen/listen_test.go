package h2listen

import (
	"io"
	"net"
	"strings"
	"testing"

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

// pair is a Listener over one TCP connection: the client's end, and the
// server's as Accept returned it. HTTP/2 connections arrive on h2.
func pair(t *testing.T) (client net.Conn, server net.Conn, h2 chan net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h2 = make(chan net.Conn, 1)
	l := New(inner, func(c net.Conn) { h2 <- c })
	t.Cleanup(func() { _ = l.Close() })
	client, err = net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	server, err = l.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = server.Close() })
	return client, server, h2
}

func write(t *testing.T, c net.Conn, parts ...string) {
	t.Helper()
	for _, p := range parts {
		_, err := c.Write([]byte(p))
		require.NoError(t, err)
	}
}

func TestHTTP1PassesThrough(t *testing.T) {
	for _, bufSize := range []int{4096, 3} {
		client, server, _ := pair(t)
		// The first byte alone matches the preface; the second decides.
		write(t, client, "P")
		req := "POST / HTTP/1.1\r\nHost: x\r\n\r\n"
		go write(t, client, req[1:])
		var got []byte
		buf := make([]byte, bufSize)
		for len(got) < len(req) {
			n, err := server.Read(buf)
			require.NoError(t, err)
			got = append(got, buf[:n]...)
		}
		assert.Equal(t, req, string(got), "read %d bytes at a time", bufSize)
		_, err := server.(*Conn).SyscallConn()
		assert.NoError(t, err, "the socket stays reachable for hang-up watches")
	}
}

func TestHTTP2IsHandedOff(t *testing.T) {
	client, server, h2 := pair(t)
	write(t, client, Preface[:5], Preface[5:]+"frames")
	n, err := server.Read(make([]byte, 4096))
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.EOF, "the HTTP/1.1 server lets go")
	require.NoError(t, server.Close(), "and its Close leaves the connection open")

	hc := <-h2
	defer hc.Close()
	buf := make([]byte, len(Preface+"frames"))
	_, err = io.ReadFull(hc, buf)
	require.NoError(t, err)
	assert.Equal(t, Preface+"frames", string(buf), "the HTTP/2 server reads the preface too")
	write(t, hc, "answer")
	_, err = io.ReadFull(client, buf[:6])
	require.NoError(t, err)
	assert.Equal(t, "answer", string(buf[:6]))
}

func TestClientClosesWithinPreface(t *testing.T) {
	client, server, _ := pair(t)
	write(t, client, "PRI")
	require.NoError(t, client.Close())
	// What arrived reaches the HTTP/1.1 server, then EOF.
	got, err := io.ReadAll(server)
	require.NoError(t, err)
	assert.Equal(t, "PRI", string(got))
}

func TestReadFromReachesTheSocket(t *testing.T) {
	client, server, _ := pair(t)
	_, ok := server.(*Conn).Conn.(io.ReaderFrom)
	require.True(t, ok, "a TCP connection copies by splice and sendfile")
	n, err := server.(*Conn).ReadFrom(strings.NewReader("body"))
	require.NoError(t, err)
	assert.Equal(t, int64(4), n)
	buf := make([]byte, 4)
	_, err = io.ReadFull(client, buf)
	require.NoError(t, err)
	assert.Equal(t, "body", string(buf))
}
