package router

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ebbrun/ebb/internal/replicaset"
)

// hostile is an HTTP/2 client that writes frames by hand, as an attacker
// would, over real TCP to the router.
type hostile struct {
	t      *testing.T
	c      net.Conn
	fr     *http2.Framer
	enc    *hpack.Encoder
	hbuf   bytes.Buffer
	frames chan frame // every frame the router sent, until the connection ends
}

// frame is what a test needs of a frame the router sent: the Framer
// reuses its frames, so the reader copies these out.
type frame struct {
	typ        http2.FrameType
	stream     uint32
	code       http2.ErrCode
	ack        bool
	maxStreams uint32 // SETTINGS_MAX_CONCURRENT_STREAMS, when sent
}

// abuseEnv is a router on loopback TCP whose function fn has no replica
// and whose activator holds every stream until released, ignoring
// cancellation: the worst case of a slow handler.
func abuseEnv(t *testing.T) (*env, *stallingActivator, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	act := &stallingActivator{release: make(chan struct{})}
	e := newEnv(t, Config{}, Deps{Listener: ln, Activator: act})
	// Before the router stops, which waits for its streams.
	t.Cleanup(func() { close(act.release) })
	e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
	e.waitRoute(host("fn"), 0)
	return e, act, ln.Addr().String()
}

// dialHostile connects and sends preface; with read set, a goroutine
// reads every frame the router sends into h.frames, else nothing reads
// them (a client that never reads).
func dialHostile(t *testing.T, addr string, preface string, read bool) *hostile {
	t.Helper()
	// A small receive buffer: a client that does not read stops the
	// router's writes after kilobytes, not megabytes, of answers.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	// Long enough for a loaded machine: only a router that stalls the
	// connection instead of dropping it runs into it.
	limit := 2 * time.Minute
	if raceEnabled {
		limit = 5 * time.Minute
	}
	require.NoError(t, c.SetDeadline(time.Now().Add(limit)))
	_, err = io.WriteString(c, preface)
	require.NoError(t, err)
	h := &hostile{t: t, c: c, fr: http2.NewFramer(c, c), frames: make(chan frame, 1<<16)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	if !read {
		return h
	}
	rd := http2.NewFramer(io.Discard, c)
	rd.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	go func() {
		defer close(h.frames)
		for {
			f, err := rd.ReadFrame()
			if err != nil {
				return
			}
			fr := frame{typ: f.Header().Type, stream: f.Header().StreamID}
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				fr.code = f.ErrCode
			case *http2.RSTStreamFrame:
				fr.code = f.ErrCode
			case *http2.SettingsFrame:
				fr.ack = f.IsAck()
				fr.maxStreams, _ = f.Value(http2.SettingMaxConcurrentStreams)
			}
			select {
			case h.frames <- fr:
			default: // the test reads what it needs; drop the rest
			}
		}
	}()
	return h
}

// headers opens stream id with a GET to fn.
func (h *hostile) headers(id uint32) error {
	h.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", host("fn")}} {
		_ = h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndStream: true, EndHeaders: true})
}

// goAway waits for the router's GOAWAY, or the connection's end without one.
func (h *hostile) goAway() (frame, bool) {
	for f := range h.frames {
		if f.typ == http2.FrameGoAway {
			return f, true
		}
	}
	return frame{}, false
}

// closed reports whether the connection ends (the reader sees EOF) after
// whatever frames are still in flight.
func (h *hostile) closed() bool {
	for range h.frames {
	}
	return true
}

// stallingActivator holds every stream it is given until released,
// whatever happens to the stream: the worst case of a slow handler.
type stallingActivator struct {
	release chan struct{}
	now     atomic.Int32
	peak    atomic.Int32
	total   atomic.Int32
}

func (a *stallingActivator) Serve(ctx *fasthttp.RequestCtx, _, _ string, _ time.Time) {
	ctx.SetStatusCode(503)
}

func (a *stallingActivator) Acquire(context.Context, string, string, time.Time) (*replicaset.Replica, func(int), error) {
	a.total.Add(1)
	n := a.now.Add(1)
	defer a.now.Add(-1)
	for p := a.peak.Load(); n > p && !a.peak.CompareAndSwap(p, n); p = a.peak.Load() {
	}
	<-a.release
	return nil, nil, errors.New("released")
}

func TestHTTP2GarbageAfterPreface(t *testing.T) {
	e, _, addr := abuseEnv(t)
	h := dialHostile(t, addr, http2.ClientPreface+"this is not a frame at all, just words\r\n", true)
	g, ok := h.goAway()
	require.True(t, ok, "a GOAWAY, not a silent close")
	assert.Contains(t, []http2.ErrCode{http2.ErrCodeFrameSize, http2.ErrCodeProtocol}, g.code)
	assert.True(t, h.closed())

	// Garbage where the first SETTINGS belongs, in a well-formed frame
	// header: a PROTOCOL_ERROR, counted.
	h = dialHostile(t, addr, http2.ClientPreface, true)
	require.NoError(t, h.fr.WritePing(false, [8]byte{}))
	g, ok = h.goAway()
	require.True(t, ok)
	assert.Equal(t, http2.ErrCodeProtocol, g.code)
	assert.True(t, h.closed())
	assert.Positive(t, e.http2Errors(), "counted in ebb_router_http2_errors_total")
}

// A SETTINGS flood from a client that never reads costs the router O(1):
// x/net/http2 owes such a client one coalesced ACK, however many SETTINGS
// it sent, so nothing queues and the connection stays usable. A flood of
// frames that each need their own answer (PING) queues at most 10,000
// answers (x/net's maxQueuedControlFrames), after which the router drops
// the connection.
func TestHTTP2SettingsFlood(t *testing.T) {
	e, _, addr := abuseEnv(t)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	h := dialHostile(t, addr, http2.ClientPreface, false)
	for range 300_000 {
		require.NoError(t, h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535}))
	}
	// A PING round trip: the router has read every SETTINGS before it.
	h2 := dialHostile(t, addr, http2.ClientPreface, true)
	require.NoError(t, h2.fr.WriteSettings())
	require.NoError(t, h2.fr.WritePing(false, [8]byte{1}))
	assert.Less(t, int64(heap())-int64(before), int64(16<<20), "the flood left the heap bounded")

	var werr error
	var data [8]byte
	for i := 0; i < 5_000_000 && werr == nil; i++ {
		werr = h.fr.WritePing(false, data)
	}
	require.Error(t, werr, "the router dropped the connection that never read its PING answers")
	var ne net.Error
	assert.False(t, errors.As(werr, &ne) && ne.Timeout(), "dropped, not stalled: %v", werr)
	assert.Less(t, int64(heap())-int64(before), int64(16<<20))
	_ = e
}

func TestHTTP2RapidReset(t *testing.T) {
	e, act, addr := abuseEnv(t)
	h := dialHostile(t, addr, http2.ClientPreface, true)
	require.NoError(t, h.fr.WriteSettings())
	// CVE-2023-44487: open a stream and reset it at once, over and over.
	// The router runs at most maxConcurrentStreams handlers for the
	// connection; streams reset before a handler was free queue, and past
	// 4× that it sends GOAWAY ENHANCE_YOUR_CALM and closes.
	var werr error
	for id := uint32(1); id < 2*10_000 && werr == nil; id += 2 {
		if werr = h.headers(id); werr == nil {
			werr = h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
	}
	g, ok := h.goAway()
	require.True(t, ok, "GOAWAY before the connection ends")
	assert.Equal(t, http2.ErrCodeEnhanceYourCalm, g.code)
	assert.LessOrEqual(t, act.peak.Load(), int32(maxConcurrentStreams), "never more handlers than streams allowed")
	assert.Equal(t, float64(1), e.metric("ebb_router_http2_errors_total", "conn_ENHANCE_YOUR_CALM_too_many_early_resets"))
}

func TestHTTP2TooManyConcurrentStreams(t *testing.T) {
	e, act, addr := abuseEnv(t)
	h := dialHostile(t, addr, http2.ClientPreface, true)
	require.NoError(t, h.fr.WriteSettings())
	// Acknowledge the router's SETTINGS, so that it knows we know its
	// limit.
	for f := range h.frames {
		if f.typ == http2.FrameSettings && !f.ack {
			require.Equal(t, uint32(maxConcurrentStreams), f.maxStreams)
			require.NoError(t, h.fr.WriteSettingsAck())
			break
		}
	}
	for i := range maxConcurrentStreams {
		require.NoError(t, h.headers(uint32(2*i+1)))
	}
	require.Eventually(t, func() bool { return act.now.Load() == maxConcurrentStreams }, 10*time.Second, time.Millisecond)
	over := uint32(2*maxConcurrentStreams + 1)
	require.NoError(t, h.headers(over))
	for f := range h.frames {
		if f.typ == http2.FrameRSTStream {
			assert.Equal(t, over, f.stream, "the stream past the limit is reset")
			assert.Equal(t, http2.ErrCodeProtocol, f.code)
			break
		}
	}
	assert.Equal(t, int32(maxConcurrentStreams), act.total.Load(), "and never reaches a handler")
	assert.Equal(t, float64(1), e.metric("ebb_router_http2_errors_total", "stream_PROTOCOL_ERROR_over_max_streams"))
}

// http2Errors sums ebb_router_http2_errors_total over its types.
func (e *env) http2Errors() float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(e.t, err)
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "ebb_router_http2_errors_total" {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}
