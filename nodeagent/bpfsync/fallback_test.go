package bpfsync

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/bpf"
)

// origins stands in for the loader's fallback_conns map: it reports next
// for whatever client asks (the test sets it before connecting, as the
// connect program would), and records the clients asked about.
type origins struct {
	mu    sync.Mutex
	next  *bpf.Origin
	asked []netip.AddrPort
}

func (o *origins) FallbackOrigin(c netip.AddrPort) (bpf.Origin, bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.asked = append(o.asked, c)
	if o.next == nil {
		return bpf.Origin{}, false, nil
	}
	return *o.next, true, nil
}

func (o *origins) set(next *bpf.Origin) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next = next
	o.asked = nil
}

func (o *origins) askedAbout() []netip.AddrPort {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]netip.AddrPort(nil), o.asked...)
}

// targets records where the Fallback points the programs.
type targets struct {
	mu      sync.Mutex
	host    []netip.AddrPort
	replica []netip.AddrPort
	err     error
}

func (t *targets) SetFallback(a netip.AddrPort) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.host = append(t.host, a)
	return t.err
}

func (t *targets) SetReplicaFallback(a netip.AddrPort) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.replica = append(t.replica, a)
	return t.err
}

func (t *targets) set() ([]netip.AddrPort, []netip.AddrPort) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]netip.AddrPort(nil), t.host...), append([]netip.AddrPort(nil), t.replica...)
}

type namer map[uint32]string

func (n namer) FunctionByID(id uint32) (string, bool) { s, ok := n[id]; return s, ok }

// functionServer answers with the function it was asked to serve.
type functionServer struct{}

func (functionServer) ServeFunction(ctx *fasthttp.RequestCtx, fn string) {
	ctx.SetBodyString("served " + fn + " for host " + string(ctx.Host()))
}

// runFallback starts a Fallback until the test ends.
func runFallback(t *testing.T, cfg FallbackConfig, or *origins, tg *targets) *Fallback {
	t.Helper()
	fb, err := NewFallback(cfg, FallbackDeps{Origins: or, Targets: tg, Functions: namer{7: "hello"}, Server: functionServer{}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fb.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return fb
}

// exchange sends n requests on one fresh connection to addr, stopping
// early when the server closes it, and returns the responses' bodies, the
// last response, and the connection's local address.
func exchange(t *testing.T, addr netip.AddrPort, n int) ([]string, *http.Response, netip.AddrPort) {
	t.Helper()
	conn, err := net.Dial("tcp4", addr.String())
	require.NoError(t, err)
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	dialed := false
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			if dialed {
				return nil, errors.New("the fallback closed the connection")
			}
			dialed = true
			return conn, nil
		},
	}}
	defer client.CloseIdleConnections()
	var bodies []string
	var last *http.Response
	for range n {
		resp, err := client.Get("http://127.77.0.9/")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		bodies = append(bodies, string(body))
		last = resp
		if resp.Close {
			break
		}
	}
	return bodies, last, local
}

func TestFallback(t *testing.T) {
	or := &origins{}
	tg := &targets{}
	fb := runFallback(t, FallbackConfig{}, or, tg)
	require.True(t, fb.Addr().Addr().IsLoopback())
	assert.False(t, fb.ReplicaAddr().IsValid())
	require.Eventually(t, func() bool { h, _ := tg.set(); return len(h) > 0 }, 5*time.Second, time.Millisecond)
	host, replica := tg.set()
	assert.Equal(t, []netip.AddrPort{fb.Addr()}, host, "the programs send host processes' cold connects here")
	assert.Equal(t, []netip.AddrPort{{}}, replica, "no replica listener: replicas' VIP connects are refused")

	for _, tc := range []struct {
		name     string
		origin   *bpf.Origin
		wantCode int
		wantBody string
	}{
		{"a VIP connect is served as its function", &bpf.Origin{VIP: netip.MustParseAddrPort("127.77.0.9:80"), FunctionID: 7},
			200, "served hello for host 127.77.0.9"},
		{"a function this node does not know", &bpf.Origin{FunctionID: 8}, 421, "ebb: this listener serves connects to function VIPs only\n"},
		{"a direct connect", nil, 421, "ebb: this listener serves connects to function VIPs only\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			or.set(tc.origin)
			bodies, resp, local := exchange(t, fb.Addr(), 2)
			assert.Equal(t, tc.wantCode, resp.StatusCode)
			assert.Equal(t, []string{tc.wantBody}, bodies)
			assert.True(t, resp.Close, "the next connect to the VIP must not come back here")
			assert.Equal(t, []netip.AddrPort{local}, or.askedAbout())
		})
	}
}

// The replica listener serves through the same function lookup but keeps
// connections alive, asking the loader for the origin once per connection.
func TestFallbackForReplicas(t *testing.T) {
	or := &origins{}
	tg := &targets{}
	fb := runFallback(t, FallbackConfig{ReplicaAddr: "127.0.0.2:0"}, or, tg)
	require.Equal(t, netip.MustParseAddr("127.0.0.2"), fb.ReplicaAddr().Addr())
	require.NotZero(t, fb.ReplicaAddr().Port())
	require.Eventually(t, func() bool { _, r := tg.set(); return len(r) > 0 }, 5*time.Second, time.Millisecond)
	host, replica := tg.set()
	assert.Equal(t, []netip.AddrPort{fb.Addr()}, host)
	assert.Equal(t, []netip.AddrPort{fb.ReplicaAddr()}, replica, "the programs send replicas' VIP connects here")

	t.Run("a replica's VIP connect is served and kept alive", func(t *testing.T) {
		or.set(&bpf.Origin{VIP: netip.MustParseAddrPort("127.77.0.9:80"), FunctionID: 7})
		bodies, resp, local := exchange(t, fb.ReplicaAddr(), 3)
		assert.Equal(t, []string{"served hello for host 127.77.0.9", "served hello for host 127.77.0.9", "served hello for host 127.77.0.9"}, bodies)
		assert.Equal(t, 200, resp.StatusCode)
		assert.False(t, resp.Close)
		assert.Equal(t, []netip.AddrPort{local}, or.askedAbout(), "one lookup per connection")
	})
	t.Run("a direct connect is refused and closed", func(t *testing.T) {
		or.set(nil)
		bodies, resp, _ := exchange(t, fb.ReplicaAddr(), 2)
		assert.Equal(t, 421, resp.StatusCode)
		assert.Equal(t, []string{"ebb: this listener serves connects to function VIPs only\n"}, bodies)
		assert.True(t, resp.Close)
	})
	t.Run("the host listener still closes", func(t *testing.T) {
		or.set(&bpf.Origin{FunctionID: 7})
		bodies, resp, _ := exchange(t, fb.Addr(), 2)
		assert.Len(t, bodies, 1)
		assert.True(t, resp.Close)
	})
}

func TestFallbackErrors(t *testing.T) {
	deps := FallbackDeps{Origins: &origins{}, Targets: &targets{}, Functions: namer{}, Server: functionServer{}}
	t.Run("missing deps", func(t *testing.T) {
		d := deps
		d.Targets = nil
		_, err := NewFallback(FallbackConfig{}, d)
		assert.ErrorContains(t, err, "Targets")
	})
	t.Run("replica address that cannot be bound", func(t *testing.T) {
		_, err := NewFallback(FallbackConfig{ReplicaAddr: "192.0.2.1:0"}, deps)
		assert.ErrorContains(t, err, "fallback listen 192.0.2.1:0")
	})
	t.Run("the loader refuses the addresses", func(t *testing.T) {
		d := deps
		d.Targets = &targets{err: errors.New("bpf loader is closed")}
		fb, err := NewFallback(FallbackConfig{ReplicaAddr: "127.0.0.2:0"}, d)
		require.NoError(t, err)
		assert.ErrorContains(t, fb.Run(context.Background()), "bpf loader is closed")
		// Both listeners are closed.
		for _, a := range []netip.AddrPort{fb.Addr(), fb.ReplicaAddr()} {
			_, err := net.Dial("tcp4", a.String())
			assert.Error(t, err, a.String())
		}
	})
}
