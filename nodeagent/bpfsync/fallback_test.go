package bpfsync

import (
	"context"
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

// origins answers FallbackOrigin for the client addresses it was told.
type origins struct {
	mu    sync.Mutex
	known map[netip.AddrPort]bpf.Origin
}

func (o *origins) FallbackOrigin(c netip.AddrPort) (bpf.Origin, bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	v, ok := o.known[c]
	return v, ok, nil
}

type namer map[uint32]string

func (n namer) FunctionByID(id uint32) (string, bool) { s, ok := n[id]; return s, ok }

// functionServer answers with the function it was asked to serve.
type functionServer struct{}

func (functionServer) ServeFunction(ctx *fasthttp.RequestCtx, fn string) {
	ctx.SetBodyString("served " + fn + " for host " + string(ctx.Host()))
}

func TestFallback(t *testing.T) {
	or := &origins{known: map[netip.AddrPort]bpf.Origin{}}
	fb, err := NewFallback(FallbackConfig{}, FallbackDeps{Origins: or, Functions: namer{7: "hello"}, Server: functionServer{}})
	require.NoError(t, err)
	require.True(t, fb.Addr().Addr().IsLoopback())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fb.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	// get sends one request on a fresh connection; register, when set,
	// records the connection's origin first, as the connect4 program would.
	get := func(t *testing.T, register func(client netip.AddrPort)) (*http.Response, string) {
		t.Helper()
		conn, err := net.Dial("tcp4", fb.Addr().String())
		require.NoError(t, err)
		if register != nil {
			register(conn.LocalAddr().(*net.TCPAddr).AddrPort())
		}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil },
		}}
		defer client.CloseIdleConnections()
		resp, err := client.Get("http://127.77.0.9/")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(body)
	}

	for _, tc := range []struct {
		name      string
		origin    *bpf.Origin
		wantCode  int
		wantBody  string
		wantClose bool
	}{
		{"a VIP connect is served as its function", &bpf.Origin{VIP: netip.MustParseAddrPort("127.77.0.9:80"), FunctionID: 7},
			200, "served hello for host 127.77.0.9", true},
		{"a function this node does not know", &bpf.Origin{FunctionID: 8}, 421, "ebb: this listener serves connects to function VIPs only\n", true},
		{"a direct connect", nil, 421, "ebb: this listener serves connects to function VIPs only\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var register func(netip.AddrPort)
			if tc.origin != nil {
				register = func(c netip.AddrPort) {
					or.mu.Lock()
					or.known[c] = *tc.origin
					or.mu.Unlock()
				}
			}
			resp, body := get(t, register)
			assert.Equal(t, tc.wantCode, resp.StatusCode)
			assert.Equal(t, tc.wantBody, body)
			assert.Equal(t, tc.wantClose, resp.Close, "the next connect to the VIP must not come back here")
		})
	}
}
