package h2listen

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Preface is the HTTP/2 client connection preface.
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// IsPreface reports whether b, the first bytes of a connection, are (a
// prefix of) the HTTP/2 preface; complete says whether b holds all of it.
func IsPreface(b []byte) (match, complete bool) {
	n := min(len(b), len(Preface))
	if !bytes.Equal(b[:n], []byte(Preface[:n])) {
		return false, false
	}
	return true, n == len(Preface)
}

// Listener is a net.Listener whose connections hand themselves to an
// HTTP/2 server when they open with the preface.
type Listener struct {
	net.Listener
	serveH2 func(net.Conn)
}

// New wraps ln. serveH2 serves one HTTP/2 connection, which still opens
// with the preface, and owns it (it must close it); it runs in a
// goroutine of its own.
func New(ln net.Listener, serveH2 func(net.Conn)) *Listener {
	return &Listener{Listener: ln, serveH2: serveH2}
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c, serveH2: l.serveH2}, nil
}

// Conn is an accepted connection whose first Read decides its protocol.
type Conn struct {
	net.Conn
	serveH2 func(net.Conn)
	sniffed bool // the protocol is decided; Read passes through
	// handed is set once the connection went to the HTTP/2 server: the
	// HTTP/1.1 server's Close must not close it then.
	handed atomic.Bool
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	if c.sniffed {
		return c.Conn.Read(p)
	}
	buf := p
	if len(buf) < len(Preface) {
		// A caller reading in small pieces: decide on a buffer of our own.
		buf = make([]byte, len(Preface))
	}
	n := 0
	for {
		m, err := c.Conn.Read(buf[n:])
		n += m
		match, complete := IsPreface(buf[:n])
		switch {
		case complete:
			c.sniffed = true
			c.handOff(buf[:n])
			return 0, io.EOF
		case !match || err != nil:
			// HTTP/1.x, or a client that closed or timed out within the
			// preface's first bytes: the HTTP/1.1 server sees what it
			// would have.
			c.sniffed = true
			return c.give(p, buf, n), err
		}
	}
}

// give returns the n sniffed bytes in buf to the caller's p: they are
// there already unless p was too small to sniff in, and then what does
// not fit is read first next time.
func (c *Conn) give(p, buf []byte, n int) int {
	if len(p) >= len(Preface) {
		return n
	}
	k := copy(p, buf[:n])
	if k < n {
		c.Conn = &prefixed{Conn: c.Conn, prefix: append([]byte(nil), buf[k:n]...)}
	}
	return k
}

// handOff gives the connection to the HTTP/2 server, with the bytes read
// so far put back in front and the HTTP/1.1 server's deadlines cleared.
func (c *Conn) handOff(read []byte) {
	c.handed.Store(true)
	_ = c.Conn.SetDeadline(time.Time{})
	pc := &prefixed{Conn: c.Conn, prefix: append([]byte(nil), read...)}
	go c.serveH2(pc)
}

// Close implements net.Conn; after a hand-off it leaves the connection to
// the HTTP/2 server.
func (c *Conn) Close() error {
	if c.handed.Load() {
		return nil
	}
	return c.Conn.Close()
}

// SetDeadline, SetReadDeadline and SetWriteDeadline do nothing after a
// hand-off: the HTTP/1.1 server's timeouts no longer apply.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.handed.Load() {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.handed.Load() {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.handed.Load() {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// ReadFrom keeps the socket's own zero-copy path (splice, sendfile) for
// bodies copied into the connection, which wrapping it would hide.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// SyscallConn exposes the socket underneath, which a hang-up watch needs.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return syscallConn(c.Conn) }

func syscallConn(c net.Conn) (syscall.RawConn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errNotSocket
	}
	return sc.SyscallConn()
}

var errNotSocket = errors.New("h2listen: not a socket")

// prefixed is a connection with bytes already read from it put back in
// front.
type prefixed struct {
	net.Conn
	prefix []byte
}

// Read implements net.Conn: the bytes put back first, then the stream.
func (c *prefixed) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// SyscallConn exposes the socket underneath.
func (c *prefixed) SyscallConn() (syscall.RawConn, error) { return syscallConn(c.Conn) }
