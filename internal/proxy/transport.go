package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ebbrun/ebb/internal/fastconn"
)

// Config tunes how a Transport talks to upstreams. Zero fields take the
// documented defaults.
type Config struct {
	// DialTimeout bounds connecting to an upstream. Default 2s.
	DialTimeout time.Duration
	// MaxIdleConns is how many idle keep-alive connections each upstream
	// keeps; more are closed when they come back. Default 128.
	MaxIdleConns int
	// IdleTimeout closes a pooled connection that has not been used for this
	// long. Default 60s.
	IdleTimeout time.Duration
	// ProbeAfter is the idle time after which a pooled connection is checked
	// for a close by the peer before it is reused, so that a function with a
	// short keep-alive (Node's is 5s) does not turn into a 502. Default 1s.
	ProbeAfter time.Duration
	// ReadBufferSize is the read buffer of each upstream connection; it also
	// bounds the response header size. Default 8 KiB.
	ReadBufferSize int
	// MaxBufferedBody is the largest response body, by Content-Length, that
	// is read whole before the response is written. Larger, chunked and
	// close-delimited bodies stream. Default 64 KiB.
	MaxBufferedBody int
	// MaxInlineRequestBody is the largest request body that is sent in the
	// same write as the request head; larger ones stream. Default 16 KiB.
	MaxInlineRequestBody int
	// Dial connects to an upstream address. Default: TCP with DialTimeout.
	// Tests and benchmarks set it to reach in-memory listeners.
	Dial func(addr string) (net.Conn, error)
}

// Defaults for Config.
const (
	DefaultDialTimeout          = 2 * time.Second
	DefaultMaxIdleConns         = 128
	DefaultIdleTimeout          = 60 * time.Second
	DefaultProbeAfter           = time.Second
	DefaultReadBufferSize       = 8 << 10
	DefaultMaxBufferedBody      = 64 << 10
	DefaultMaxInlineRequestBody = 16 << 10
)

func (c Config) withDefaults() Config {
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = DefaultMaxIdleConns
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ProbeAfter == 0 {
		c.ProbeAfter = DefaultProbeAfter
	}
	if c.ReadBufferSize == 0 {
		c.ReadBufferSize = DefaultReadBufferSize
	}
	if c.MaxBufferedBody == 0 {
		c.MaxBufferedBody = DefaultMaxBufferedBody
	}
	if c.MaxInlineRequestBody == 0 {
		c.MaxInlineRequestBody = DefaultMaxInlineRequestBody
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.DialTimeout < 0:
		return errors.New("proxy: DialTimeout must not be negative")
	case c.MaxIdleConns < 0:
		return errors.New("proxy: MaxIdleConns must not be negative")
	case c.IdleTimeout < 0 || c.ProbeAfter < 0:
		return errors.New("proxy: IdleTimeout and ProbeAfter must not be negative")
	case c.ReadBufferSize != 0 && c.ReadBufferSize < 1024:
		return errors.New("proxy: ReadBufferSize must be at least 1024")
	case c.MaxBufferedBody < 0 || c.MaxInlineRequestBody < 0:
		return errors.New("proxy: body limits must not be negative")
	}
	return nil
}

// Transport owns the upstreams and their connection pools. Run evicts idle
// connections; without Run, pools still work but idle connections live
// until they are probed or their upstream closes.
type Transport struct {
	cfg    Config
	dialer net.Dialer

	mu        sync.Mutex
	upstreams map[*Upstream]struct{}
	tunnels   map[net.Conn]struct{}
	closed    bool
}

// NewTransport returns a Transport with cfg (defaults applied).
func NewTransport(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Transport{
		cfg:       cfg,
		dialer:    net.Dialer{Timeout: cfg.DialTimeout},
		upstreams: make(map[*Upstream]struct{}),
		tunnels:   make(map[net.Conn]struct{}),
	}, nil
}

// Config returns the effective configuration.
func (t *Transport) Config() Config { return t.cfg }

// Upstream returns a new pool for addr. Call Close when the upstream goes
// away; requests still using its connections finish normally.
func (t *Transport) Upstream(addr string) *Upstream {
	u := &Upstream{t: t, addr: addr, slots: make([]atomic.Pointer[conn], t.cfg.MaxIdleConns)}
	t.mu.Lock()
	t.upstreams[u] = struct{}{}
	t.mu.Unlock()
	return u
}

// Run evicts connections idle past IdleTimeout until ctx ends, then closes
// every idle connection and every tunnel still open.
func (t *Transport) Run(ctx context.Context) error {
	every := min(t.cfg.IdleTimeout/2, time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			t.shutdown()
			return nil
		case now := <-tick.C:
			t.evict(now.UnixNano())
		}
	}
}

func (t *Transport) evict(now int64) {
	idle := t.cfg.IdleTimeout.Nanoseconds()
	t.mu.Lock()
	ups := make([]*Upstream, 0, len(t.upstreams))
	for u := range t.upstreams {
		ups = append(ups, u)
	}
	t.mu.Unlock()
	for _, u := range ups {
		u.evictOlder(now - idle)
	}
}

func (t *Transport) shutdown() {
	t.mu.Lock()
	t.closed = true
	ups := make([]*Upstream, 0, len(t.upstreams))
	for u := range t.upstreams {
		ups = append(ups, u)
	}
	tunnels := make([]net.Conn, 0, len(t.tunnels))
	for c := range t.tunnels {
		tunnels = append(tunnels, c)
	}
	t.mu.Unlock()
	for _, u := range ups {
		u.evictOlder(1<<63 - 1)
	}
	for _, c := range tunnels {
		_ = c.Close()
	}
}

// trackTunnel registers a hijacked connection so shutdown can close it. It
// reports false when the transport is already shut down.
func (t *Transport) trackTunnel(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.tunnels[c] = struct{}{}
	return true
}

func (t *Transport) untrackTunnel(c net.Conn) {
	t.mu.Lock()
	delete(t.tunnels, c)
	t.mu.Unlock()
}

// Tunnels returns how many upgraded connections are open; tests use it.
func (t *Transport) Tunnels() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.tunnels)
}

// Upstream is one backend address and its idle keep-alive connections. The
// pool is a fixed array of slots claimed with compare-and-swap, so getting
// and returning a connection takes no lock.
type Upstream struct {
	t      *Transport
	addr   string
	slots  []atomic.Pointer[conn]
	idle   atomic.Int32
	hint   atomic.Uint32
	closed atomic.Bool
}

// Addr is the upstream's host:port.
func (u *Upstream) Addr() string { return u.addr }

// Idle is the number of pooled connections; tests use it.
func (u *Upstream) Idle() int { return int(u.idle.Load()) }

// Close forgets the upstream and closes its idle connections. Connections in
// use are closed when their exchange ends.
func (u *Upstream) Close() {
	if u.closed.Swap(true) {
		return
	}
	u.t.mu.Lock()
	delete(u.t.upstreams, u)
	u.t.mu.Unlock()
	u.evictOlder(1<<63 - 1)
}

// evictOlder closes pooled connections last used before cutoff (unix ns).
func (u *Upstream) evictOlder(cutoff int64) {
	for i := range u.slots {
		c := u.slots[i].Load()
		if c != nil && c.lastUsed.Load() < cutoff && u.slots[i].CompareAndSwap(c, nil) {
			u.idle.Add(-1)
			c.close()
		}
	}
}

// get returns a pooled connection that is believed alive, or nil.
func (u *Upstream) get(now int64) *conn {
	for u.idle.Load() > 0 {
		c := u.take()
		if c == nil {
			return nil
		}
		if now-c.lastUsed.Load() > u.t.cfg.ProbeAfter.Nanoseconds() && !c.alive() {
			c.close()
			continue
		}
		return c
	}
	return nil
}

func (u *Upstream) take() *conn {
	n := len(u.slots)
	start := int(u.hint.Load()) % n
	for i := 0; i < n; i++ {
		j := start - i
		if j < 0 {
			j += n
		}
		c := u.slots[j].Load()
		if c != nil && u.slots[j].CompareAndSwap(c, nil) {
			u.idle.Add(-1)
			return c
		}
	}
	return nil
}

// put returns a healthy connection to the pool, or closes it when the pool
// is full or the upstream is closed.
func (u *Upstream) put(c *conn, now int64) {
	if u.closed.Load() || c.br.Buffered() > 0 {
		c.close()
		return
	}
	c.lastUsed.Store(now)
	c.reused = true
	n := len(u.slots)
	start := int(u.hint.Load()) % n
	for i := 0; i < n; i++ {
		j := (start + i) % n
		if u.slots[j].CompareAndSwap(nil, c) {
			u.idle.Add(1)
			u.hint.Store(uint32(j))
			if u.closed.Load() && u.slots[j].CompareAndSwap(c, nil) {
				// Close raced with us and may have swept this slot already.
				u.idle.Add(-1)
				c.close()
			}
			return
		}
	}
	c.close()
}

func (u *Upstream) dial(now int64) (*conn, error) {
	var (
		nc  net.Conn
		err error
	)
	if d := u.t.cfg.Dial; d != nil {
		nc, err = d(u.addr)
	} else {
		nc, err = u.t.dialer.Dial("tcp", u.addr)
		if err == nil {
			nc = fastconn.Wrap(nc)
		}
	}
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return nil, fmt.Errorf("dial %s: %w: %w", u.addr, ErrOutOfDescriptors, err)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w: %w", u.addr, ErrUnavailable, err)
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, u.t.cfg.ReadBufferSize)}
	c.awaiter, _ = nc.(replyAwaiter)
	c.lastUsed.Store(now)
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c, nil
}

// conn is one upstream connection with its read buffer and a scratch buffer
// for assembling request heads.
type conn struct {
	nc      net.Conn
	awaiter replyAwaiter // nc, when it can; nil otherwise
	raw     syscall.RawConn
	br      *bufio.Reader
	wbuf    []byte
	// lastUsed is read by the evictor while the slot still holds c, which
	// may race with a taker; hence atomic.
	lastUsed atomic.Int64
	// deadline is the unix-ns deadline currently set on nc, so that a run of
	// requests with the same deadline does not reset the timer each time.
	deadline int64
	reused   bool
}

// replyAwaiter writes a request and waits for the reply to be readable in
// one step, saving the read that would find nothing yet
// (fastconn.Conn.WriteAndAwaitReply).
type replyAwaiter interface {
	WriteAndAwaitReply(p []byte) (int, error)
}

// writeRequestHead writes buf, a request whose reply is read next when
// complete is set.
func (c *conn) writeRequestHead(buf []byte, complete bool) (int, error) {
	if complete && c.awaiter != nil {
		return c.awaiter.WriteAndAwaitReply(buf)
	}
	return c.nc.Write(buf)
}

func (c *conn) close() { _ = c.nc.Close() }

func (c *conn) setDeadline(d, now int64) error {
	if d == c.deadline {
		return nil
	}
	if d != 0 && c.deadline != 0 && d > c.deadline {
		// Resetting the runtime timer for every request on a busy connection
		// costs more than the proxy's own work. A deadline up to 1/64 of the
		// timeout (at most 50ms) earlier than asked for is close enough.
		slack := min((d-now)/64, int64(50*time.Millisecond))
		if d-c.deadline <= slack {
			return nil
		}
	}
	c.deadline = d
	if d == 0 {
		return c.nc.SetDeadline(time.Time{})
	}
	return c.nc.SetDeadline(time.Unix(0, d))
}

// alive peeks at the socket without blocking: a pooled connection should
// have nothing to read, so EOF or stray bytes both mean it cannot be reused.
func (c *conn) alive() bool {
	if c.raw == nil {
		return true
	}
	var (
		buf  [1]byte
		n    int
		rerr error
	)
	err := c.raw.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	_ = n
	return err == nil && errors.Is(rerr, syscall.EAGAIN)
}
