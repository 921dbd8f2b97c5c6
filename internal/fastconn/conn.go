package fastconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a *net.TCPConn whose Read and Write use raw syscalls. Everything
// else (Close, addresses, deadlines, SyscallConn, CloseWrite) is the
// wrapped connection's.
type Conn struct {
	*net.TCPConn
	raw syscall.RawConn

	rmu     sync.Mutex // Read's state below, for the callback
	rbuf    []byte
	rn      int
	rerr    syscall.Errno
	readFn  func(fd uintptr) bool
	wmu     sync.Mutex // Write's state below
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	writeFn func(fd uintptr) bool

	// WriteAndAwaitReply's state, under both locks.
	exchangeFn func(fd uintptr) bool
	sent       bool // the request is written; the next call waits no more
}

// Wrap returns c as a *Conn when it is a TCP connection, and c itself
// otherwise (a test's in-memory pipe, a TLS connection).
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	fc := &Conn{TCPConn: tc, raw: raw}
	// Bound once, so that Read and Write allocate nothing.
	fc.readFn = fc.doRead
	fc.writeFn = fc.doWrite
	fc.exchangeFn = fc.doExchange
	return fc
}

// Read reads like (*net.TCPConn).Read.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.raw.Read(c.readFn)
	n, errno := c.rn, c.rerr
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *Conn) doRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // park in the netpoller until readable
		default:
			c.rerr = e
			return true
		}
	}
}

// Write writes all of p like (*net.TCPConn).Write, waiting for the socket
// to drain when its buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr = p, 0, 0
	err := c.raw.Write(c.writeFn)
	n, errno := c.wn, c.werr
	c.wbuf = nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

func (c *Conn) doWrite(fd uintptr) bool {
	full := c.writeOut(fd)
	return !full // when full, park until writable
}

// writeOut writes wbuf[wn:] until all of it is written, the socket buffer
// is full (full is true) or write(2) fails (werr is set).
func (c *Conn) writeOut(fd uintptr) (full bool) {
	for c.wn < len(c.wbuf) {
		rest := c.wbuf[c.wn:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			c.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return true
		default:
			c.werr = e
			return false
		}
	}
	return false
}

// WriteAndAwaitReply writes all of p, a request whose reply is read next,
// and then waits until the connection has something to read: the reply,
// an EOF or an error. The Read that follows then finds the reply at once.
//
// It saves the read(2) that Write-then-Read spends on a reply that has
// not come yet: Read must first try read(2), because the netpoller forgets
// readiness at the start of every read, so parking first could sleep
// through a reply that came before it. Here that reset happens before the
// request is written, so any reply comes after it and wakes the wait.
//
// When the socket buffer fills before all of p is written, the rest goes
// through Write and no wait happens. A deadline that passes during the
// wait is left for the next Read to report; n and err describe the write.
func (c *Conn) WriteAndAwaitReply(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.wmu.Lock()
	c.wbuf, c.wn, c.werr, c.sent = p, 0, 0, false
	err := c.raw.Read(c.exchangeFn)
	n, errno, sent := c.wn, c.werr, c.sent
	c.wbuf = nil
	c.wmu.Unlock()
	switch {
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	case err != nil && !sent:
		return n, c.opError("write", err)
	case n < len(p):
		m, err := c.Write(p[n:])
		return n + m, err
	}
	return n, nil
}

// doExchange runs inside RawConn.Read: the first call writes the request,
// the second (after the netpoller saw the socket readable) ends the wait.
func (c *Conn) doExchange(fd uintptr) bool {
	if c.sent {
		return true
	}
	if full := c.writeOut(fd); full || c.werr != 0 {
		return true // when full, the caller writes the rest through Write
	}
	c.sent = true
	return false // park until the reply is readable
}

// opError wraps err as net.TCPConn does, so that errors.Is(err,
// os.ErrDeadlineExceeded) and errors.Is(err, net.ErrClosed) hold as before.
func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// listener wraps every accepted connection.
type listener struct{ net.Listener }

// Listener returns ln with every accepted TCP connection wrapped.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
