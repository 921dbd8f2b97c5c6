package router

import (
	"crypto/tls"
	"errors"
	"net"
	"runtime"
	"sync"
	"time"
)

// coalescePending bounds the bytes a coalescingConn holds unwritten;
// a Write past it waits for the socket, as a Write to a full socket
// buffer would.
const coalescePending = 256 << 10

// coalesceCloseTimeout bounds how long Close waits to write out what is
// pending (a GOAWAY, the last frames) to a peer that does not read.
const coalesceCloseTimeout = time.Second

// coalescingConn batches the writes of an HTTP/2 connection into fewer
// write(2) calls. x/net/http2 flushes a connection whenever it has no
// frame of its own queued, which, with its streams served one after the
// other on one P, means one write(2) per frame or two for every stream:
// on the benchmark machine the system calls and the wake-ups they cause
// were most of the router's cost per gRPC call (a profile of ebbd under
// the grpc bench: a fifth of its CPU in x/net's flush). Write only
// appends to a buffer and wakes a flusher goroutine, which first yields
// (runtime.Gosched) so that every stream that is ready to write does so,
// and then writes all of it at once: what nginx does with one writev per
// turn of its event loop. A frame waits at most for the goroutines that
// were already runnable.
type coalescingConn struct {
	net.Conn
	kick chan struct{} // one token: the flusher has work

	mu       sync.Mutex
	drained  sync.Cond // signalled when buf was taken or an error set
	buf      []byte    // written, not yet taken by the flusher
	spare    []byte
	flushing bool  // buf is the flusher's to write, or being written
	err      error // the first write error; every later Write returns it
	closed   bool
}

// coalesce wraps c; a TLS connection keeps its ConnectionState, which
// x/net/http2 reads.
func coalesce(c net.Conn) net.Conn {
	cc := &coalescingConn{Conn: c, kick: make(chan struct{}, 1)}
	cc.drained.L = &cc.mu
	go cc.flusher()
	if tc, ok := c.(*tls.Conn); ok {
		return &coalescingTLSConn{coalescingConn: cc, tc: tc}
	}
	return cc
}

// coalescingTLSConn is a coalescingConn over TLS.
type coalescingTLSConn struct {
	*coalescingConn
	tc *tls.Conn
}

// ConnectionState is the TLS connection's.
func (c *coalescingTLSConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

var errCoalescingClosed = errors.New("router: write on a closed HTTP/2 connection")

// Write appends p to what is pending and has the flusher write it soon.
func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && !c.closed && len(c.buf) >= coalescePending {
		c.drained.Wait()
	}
	switch {
	case c.err != nil:
		err := c.err
		c.mu.Unlock()
		return 0, err
	case c.closed:
		c.mu.Unlock()
		return 0, errCoalescingClosed
	}
	c.buf = append(c.buf, p...)
	kick := !c.flushing
	c.flushing = true
	c.mu.Unlock()
	if kick {
		c.kick <- struct{}{}
	}
	return len(p), nil
}

// flusher writes out what Write gathered, until the connection closes.
func (c *coalescingConn) flusher() {
	for range c.kick {
		for {
			// Let every goroutine that is ready run first: the streams
			// that have frames to write add them to this write.
			runtime.Gosched()
			c.mu.Lock()
			b := c.buf
			c.buf = c.spare[:0]
			c.drained.Broadcast()
			c.mu.Unlock()
			var err error
			if len(b) > 0 {
				_, err = c.Conn.Write(b)
			}
			c.mu.Lock()
			if cap(b) <= coalescePending*2 {
				c.spare = b[:0]
			}
			if err != nil && c.err == nil {
				c.err = err
			}
			more := len(c.buf) > 0 && c.err == nil
			if !more {
				c.flushing = false
				c.buf = c.buf[:0]
				c.drained.Broadcast()
			}
			closed := c.closed
			c.mu.Unlock()
			if !more {
				if closed {
					return
				}
				break
			}
		}
	}
}

// Close writes out what is pending, waiting at most
// coalesceCloseTimeout, and closes the connection.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.Conn.Close()
	}
	c.closed = true
	if c.flushing {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(coalesceCloseTimeout))
		for c.flushing {
			c.drained.Wait()
		}
	}
	c.mu.Unlock()
	// The flusher is idle and will not be kicked again.
	close(c.kick)
	return c.Conn.Close()
}
