package bpf

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPortLoadAt(t *testing.T) {
	const sec = uint64(time.Second)
	tests := []struct {
		name       string
		raw        ebbPortLoad
		now        uint64
		want       PortLoad
		consistent bool
	}{
		{
			name:       "idle",
			raw:        ebbPortLoad{TrackedNs: 1 * sec, VipRequests: 3, VipBusyNs: 30e6},
			now:        5 * sec,
			want:       PortLoad{VIPRequests: 3, VIPBusy: 30 * time.Millisecond},
			consistent: true,
		},
		{
			name: "two open since 4s and 4.5s count up to now",
			raw: ebbPortLoad{TrackedNs: 1 * sec, Open: 3, VipRequests: 5, VipBusyNs: 1e9,
				VipOpen: 2, VipOpenStartNs: 4*sec + 4*sec + sec/2},
			now:        5 * sec,
			want:       PortLoad{Open: 3, VIPRequests: 5, VIPOpen: 2, VIPBusy: 2500 * time.Millisecond},
			consistent: true,
		},
		{
			name: "read between a request's open and start-time adds",
			raw: ebbPortLoad{TrackedNs: 1 * sec, Open: 1, VipRequests: 1,
				VipOpen: 1, VipOpenStartNs: 0},
			now:  5 * sec,
			want: PortLoad{Open: 1, VIPRequests: 1, VIPOpen: 1},
		},
		{
			name: "read between an answer's open and start-time subtractions",
			raw: ebbPortLoad{TrackedNs: 1 * sec, VipRequests: 1, VipBusyNs: 1e9,
				VipOpen: 0, VipOpenStartNs: 4 * sec},
			now:  5 * sec,
			want: PortLoad{VIPRequests: 1, VIPBusy: time.Second},
		},
		{
			name:       "a counter caught below zero reads as zero",
			raw:        ebbPortLoad{TrackedNs: 1 * sec, Open: ^uint64(0)},
			now:        5 * sec,
			want:       PortLoad{},
			consistent: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, consistent := portLoadAt(tt.raw, tt.now)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.consistent, consistent)
		})
	}
}

// TestPortLoads runs a real replica stand-in and real clients in the test's
// cgroup and checks what the programs account: requests through a VIP with
// their request-time, open requests from any client, and the close of a
// connection ending the request it left open.
func TestPortLoads(t *testing.T) {
	l, cg := loadAt(t, Options{})
	srv := startHelper(t, cg, "http-serve", helperArgs{})
	var listening struct{ Port uint16 }
	require.NoError(t, json.Unmarshal([]byte(srv.line(t)), &listening))
	port := listening.Port
	require.NoError(t, l.AllowPort(port))
	require.NoError(t, l.TrackPort(port))
	backend := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	vip := netip.MustParseAddrPort("127.77.0.9:80")
	require.NoError(t, l.SetVIP(VIP{Addr: vip, FunctionID: 9, Backends: []Backend{{Addr: backend, Weight: 1}}}))

	load := func() PortLoad {
		t.Helper()
		loads, err := l.PortLoads()
		require.NoError(t, err)
		got, ok := loads[port]
		require.True(t, ok, "port %d is tracked: %v", port, loads)
		return got
	}
	get := func(target netip.AddrPort, ms, count int, keepAlive bool) *helper {
		return startHelper(t, cg, "http-get", helperArgs{
			URL: fmt.Sprintf("http://%s/?ms=%d", target, ms), Count: count, KeepAlive: keepAlive})
	}
	assert.Equal(t, PortLoad{}, load())

	// One slow request through the VIP is open while the replica works,
	// and its request-time is about the replica's 300 ms.
	client := get(vip, 300, 1, false)
	// The helper is another process, and its request is counted by the
	// kernel's eBPF programs as its packets pass: poll the maps until the
	// kernel has seen it. So do the polls below.
	require.Eventually(t, func() bool { return load().VIPOpen == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, 1, load().Open)
	assert.Equal(t, []string{"ok"}, client.result(t).Bodies)
	got := load()
	assert.Equal(t, PortLoad{VIPRequests: 1, VIPBusy: got.VIPBusy}, got)
	assert.GreaterOrEqual(t, got.VIPBusy, 300*time.Millisecond)
	assert.Less(t, got.VIPBusy, 2*time.Second)

	// Each request on a kept-alive connection counts once.
	assert.Len(t, get(vip, 0, 20, true).result(t).Bodies, 20)
	assert.Equal(t, uint64(21), load().VIPRequests)

	// A client that dials the replica directly (a router) is open while it
	// waits, but is not VIP load: a router reports its own.
	client = get(backend, 300, 1, false)
	// Polls the kernel's eBPF maps until the helper process's request is seen.
	require.Eventually(t, func() bool { return load().Open == 1 }, 5*time.Second, time.Millisecond)
	assert.Zero(t, load().VIPOpen)
	open, tracked, err := l.OpenRequests(port)
	require.NoError(t, err)
	assert.True(t, tracked)
	assert.Equal(t, 1, open)
	client.result(t)
	assert.Equal(t, uint64(21), load().VIPRequests)
	assert.Zero(t, load().Open)

	// A client that hangs up mid-request ends its request: the closing
	// connection answers it.
	client = get(vip, 60_000, 1, false)
	// Polls the kernel's eBPF maps until the helper process's request is seen.
	require.Eventually(t, func() bool { return load().VIPOpen == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, client.cmd.Process.Kill())
	// The kernel closes the killed process's socket, and its eBPF programs
	// see the close, on their own time: poll the maps.
	require.Eventually(t, func() bool { got := load(); return got.VIPOpen == 0 && got.Open == 0 },
		5*time.Second, time.Millisecond, "the closed connection ends its request")

	// Tracking again starts from zero.
	require.NoError(t, l.TrackPort(port))
	assert.Equal(t, PortLoad{}, load())
	require.NoError(t, l.UntrackPort(port))
	loads, err := l.PortLoads()
	require.NoError(t, err)
	assert.NotContains(t, loads, port)
	_, tracked, err = l.OpenRequests(port)
	require.NoError(t, err)
	assert.False(t, tracked)
	s := statsOf(t, l)
	assert.GreaterOrEqual(t, s.FlowsTracked, uint64(4))
	assert.Zero(t, s.FlowTrackFailures)
}
