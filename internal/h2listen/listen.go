package h2listen

import (
	"bytes"
	"errors"
	"net"
	"sync"
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

// Listener is a net.Listener whose Accept returns only the connections
// that do not open with the HTTP/2 preface; the others go to serve.
type Listener struct {
	inner   net.Listener
	serveH2 func(net.Conn)
	timeout time.Duration

	start  sync.Once
	conns  chan net.Conn
	errs   chan error
	closed chan struct{}
	once   sync.Once
}

// New wraps ln. serveH2 serves one HTTP/2 connection, which still opens
// with the preface, and owns it; it runs in its own goroutine. timeout
// bounds how long a connection may take to send its first bytes; one that
// sends none in time, or closes first, is closed.
func New(ln net.Listener, serveH2 func(net.Conn), timeout time.Duration) *Listener {
	return &Listener{
		inner:   ln,
		serveH2: serveH2,
		timeout: timeout,
		conns:   make(chan net.Conn),
		errs:    make(chan error, 1),
		closed:  make(chan struct{}),
	}
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		// Keep the error for later callers too.
		l.errs <- err
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.errs <- err
			return
		}
		go l.sniff(c)
	}
}

// sniff reads the connection's first bytes and routes it.
func (l *Listener) sniff(c net.Conn) {
	var buf [len(Preface)]byte
	n := 0
	if l.timeout > 0 {
		_ = c.SetReadDeadline(time.Now().Add(l.timeout))
	}
	for {
		m, err := c.Read(buf[n:])
		n += m
		match, complete := IsPreface(buf[:n])
		if !match || complete {
			break
		}
		if err != nil {
			// Closed or timed out before saying anything we can route.
			_ = c.Close()
			return
		}
	}
	if l.timeout > 0 {
		_ = c.SetReadDeadline(time.Time{})
	}
	pc := &Conn{Conn: c, prefix: append([]byte(nil), buf[:n]...)}
	if match, _ := IsPreface(buf[:n]); match {
		l.serveH2(pc)
		return
	}
	select {
	case l.conns <- pc:
	case <-l.closed:
		_ = c.Close()
	}
}

// Close implements net.Listener.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.inner.Close()
}

// Addr implements net.Listener.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Conn is a connection with the bytes sniffed from it put back in front.
type Conn struct {
	net.Conn
	prefix []byte
}

// Read implements net.Conn: the sniffed bytes first, then the stream.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// SyscallConn exposes the socket underneath, which a hang-up watch needs.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNotSocket
	}
	return sc.SyscallConn()
}

var errNotSocket = errors.New("h2listen: not a socket")
