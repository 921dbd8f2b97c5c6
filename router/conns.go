package router

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ConnReserve is how many file descriptors the derived connection cap
// keeps back for everything in the process but client and replica
// connections: the store, the API and metrics servers and their clients,
// containerd's connection, log files and the process's own (epoll, pipes,
// the executable). A process with a limit of at most 2·ConnReserve keeps
// half of it back instead.
const ConnReserve = 256

// ConnCap is the cap on client connections that a process whose open-file
// limit is nofile can keep without running out of descriptors: what is left
// after the reserve, and at most DefaultMaxConns. It is not halved for the
// replica connections requests are proxied over: a request buffered in the
// activator holds none, the pooled ones are bounded by the replicas'
// concurrency, and a dial that finds no descriptor left waits in the
// activator within its deadline rather than failing. Halving refused a
// burst of 10,000 to a function at zero at a 20,000 limit (106 of them got
// 503). With the 1,048,576 ebbd raises its limit to it is DefaultMaxConns;
// with 20,000 it is 19,744; with 1,024 it is 768.
func ConnCap(nofile uint64) int {
	reserve := min(ConnReserve, nofile/2)
	return int(max(1, min(nofile-reserve, DefaultMaxConns)))
}

// openFileLimit is the process's soft open-file limit, or 0 when it cannot
// be read.
func openFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return lim.Cur
}

// Accept back-off, as net/http's server does it: from 5 ms, doubling, up
// to 1 s while accepts keep failing.
const (
	minAcceptPause = 5 * time.Millisecond
	maxAcceptPause = time.Second
)

// shortage reports whether an accept failed for want of a resource that
// frees up as connections close, rather than because the listener broke.
func shortage(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// listener is the router's accept path. fasthttp's Serve returns on any
// accept error but a timeout, and the router's Run, and ebbd with it, with
// it; so Accept never returns a shortage of descriptors or memory: it waits
// (minAcceptPause, doubling to maxAcceptPause) and accepts again, leaving
// the waiting connections in the kernel's backlog meanwhile. With perIP
// set, a client address with that many connections open has its next one
// answered 429 and closed at once.
type listener struct {
	net.Listener
	log       *slog.Logger
	perIP     int
	shortages prometheus.Counter
	refused   prometheus.Counter

	mu     sync.Mutex // guards open
	open   map[netip.Addr]int
	closed chan struct{}
	once   sync.Once
}

func newListener(ln net.Listener, perIP int, log *slog.Logger, shortages, refused prometheus.Counter) *listener {
	return &listener{
		Listener:  ln,
		log:       log,
		perIP:     perIP,
		shortages: shortages,
		refused:   refused,
		open:      map[netip.Addr]int{},
		closed:    make(chan struct{}),
	}
}

// Accept implements net.Listener.
func (l *listener) Accept() (net.Conn, error) {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !shortage(err) {
				return nil, err
			}
			l.shortages.Inc()
			if pause == 0 {
				l.log.Warn("cannot accept connections; pausing until some close", "err", err)
				pause = minAcceptPause
			} else {
				pause = min(2*pause, maxAcceptPause)
			}
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-l.closed:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		if pause > 0 {
			l.log.Info("accepting connections again")
			pause = 0
		}
		if l.perIP > 0 {
			if c = l.admit(c); c == nil {
				continue
			}
		}
		return c, nil
	}
}

// Close implements net.Listener; it also ends a pause in Accept.
func (l *listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// tooManyFromIP answers a connection past the per-address cap. A freshly
// accepted socket's send buffer is empty, so the write does not block the
// accept loop.
var tooManyFromIP = func() []byte {
	const msg = "ebb: too many connections from your IP address\n"
	return []byte("HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
		strconv.Itoa(len(msg)) + "\r\n\r\n" + msg)
}()

// admit counts c against its address, or answers and closes it and
// returns nil when the address is at its cap. Connections without an IP
// address (in-memory pipes) are not counted.
func (l *listener) admit(c net.Conn) net.Conn {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return c
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return c
	}
	ip = ip.Unmap()
	l.mu.Lock()
	if l.open[ip] >= l.perIP {
		l.mu.Unlock()
		l.refused.Inc()
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(tooManyFromIP)
		_ = c.Close()
		return nil
	}
	l.open[ip]++
	l.mu.Unlock()
	return &ipConn{Conn: c, l: l, ip: ip}
}

func (l *listener) leave(ip netip.Addr) {
	l.mu.Lock()
	if l.open[ip]--; l.open[ip] <= 0 {
		delete(l.open, ip)
	}
	l.mu.Unlock()
}

// ipConn is a connection counted against its client address until closed.
type ipConn struct {
	net.Conn
	l    *listener
	ip   netip.Addr
	done atomic.Bool
}

// Close implements net.Conn.
func (c *ipConn) Close() error {
	if c.done.CompareAndSwap(false, true) {
		c.l.leave(c.ip)
	}
	return c.Conn.Close()
}

// SyscallConn exposes the socket underneath, which the activator's hang-up
// watch needs.
func (c *ipConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNotSocket
	}
	return sc.SyscallConn()
}

var errNotSocket = errors.New("not a socket")
