package bpf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/testenv"
)

// backend is a real HTTP server on 127.0.0.1 standing in for a replica.
type backend struct {
	addr netip.AddrPort
	srv  *http.Server
}

func startBackend(t testing.TB, body string) *backend {
	t.Helper()
	be, err := serveBackend(t, body)
	require.NoError(t, err)
	return be
}

// serveBackend is startBackend for goroutines other than the test's.
func serveBackend(t testing.TB, body string) (*backend, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, body)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &backend{addr: netip.MustParseAddrPort(ln.Addr().String()), srv: srv}, nil
}

func statsOf(t testing.TB, l *Loader) Stats {
	t.Helper()
	s, err := l.Stats()
	require.NoError(t, err)
	return s
}

func TestProbe(t *testing.T) {
	requireBPF(t)

	t.Run("root passes", func(t *testing.T) {
		assert.NoError(t, Probe(Options{}))
	})
	t.Run("not a cgroup2 directory", func(t *testing.T) {
		err := Probe(Options{CgroupPath: t.TempDir()})
		var ue *UnavailableError
		require.ErrorAs(t, err, &ue)
		assert.Contains(t, OffStatus(err), "not a cgroup2 file system")
	})
	t.Run("missing cgroup", func(t *testing.T) {
		_, err := Load(Options{CgroupPath: "/nonexistent/ebb"})
		var ue *UnavailableError
		require.ErrorAs(t, err, &ue)
		assert.Contains(t, ue.Error(), "/nonexistent/ebb")
	})
	t.Run("bad options", func(t *testing.T) {
		_, err := Load(Options{VIPPrefix: netip.MustParsePrefix("10.0.0.0/8")})
		assert.ErrorContains(t, err, "127.0.0.0/8")
	})
	t.Run("no capabilities", func(t *testing.T) {
		res := runHelperIn(t, newCgroup(t), "probe-nocaps", helperArgs{})
		assert.Equal(t, "off: no CAP_BPF+CAP_NET_ADMIN or CAP_SYS_ADMIN", res.Status)
	})
}

// bpftoolJSON runs bpftool with JSON output.
func bpftoolJSON(t testing.TB, args ...string) []map[string]any {
	t.Helper()
	bin := testenv.RequireBinary(t, "bpftool")
	out, err := exec.Command(bin, append([]string{"-j"}, args...)...).Output()
	require.NoError(t, err, "bpftool %v", args)
	var rows []map[string]any
	if len(bytes.TrimSpace(out)) == 0 {
		// bpftool prints nothing at all for an empty cgroup.
		return nil
	}
	require.NoError(t, json.Unmarshal(out, &rows), "bpftool %v: %s", args, out)
	return rows
}

// bpftoolProgIDs are the ids of every loaded program.
func bpftoolProgIDs(t testing.TB) map[ebpf.ProgramID]string {
	ids := map[ebpf.ProgramID]string{}
	for _, r := range bpftoolJSON(t, "prog", "show") {
		id, _ := r["id"].(float64)
		name, _ := r["name"].(string)
		ids[ebpf.ProgramID(id)] = name
	}
	return ids
}

// bpftoolCgroupTree lists "attach_type name" for the programs attached in
// the cgroup tree rooted at cg, as `bpftool cgroup tree` shows them.
func bpftoolCgroupTree(t testing.TB, cg string) []string {
	var got []string
	for _, r := range bpftoolJSON(t, "cgroup", "tree", cg) {
		progs, _ := r["programs"].([]any)
		for _, p := range progs {
			p, _ := p.(map[string]any)
			got = append(got, fmt.Sprintf("%v %v", p["attach_type"], p["name"]))
		}
	}
	return got
}

func TestLoadAttachesAndCloseDetaches(t *testing.T) {
	requireBPF(t)
	cg := newCgroup(t)
	l, err := Load(Options{CgroupPath: cg})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = l.Close()
		}
	})
	assert.Equal(t, cg, l.CgroupPath())
	assert.Equal(t, "on: socket redirect, VIPs 127.77.0.0/16, wake-on-connect (cgroup "+cg+")", l.Status())

	ids, err := l.ProgramIDs()
	require.NoError(t, err)
	require.Len(t, ids, 4)
	loaded := bpftoolProgIDs(t)
	var names []string
	for _, id := range ids {
		require.Contains(t, loaded, id, "bpftool prog show lists program %d", id)
		names = append(names, loaded[id])
	}
	assert.ElementsMatch(t, []string{"ebb_sockops", "ebb_sk_msg", "ebb_connect4", "ebb_peername4"}, names)
	assert.ElementsMatch(t, []string{
		"cgroup_sock_ops ebb_sockops",
		"cgroup_inet4_connect ebb_connect4",
		"cgroup_inet4_getpeername ebb_peername4",
	}, bpftoolCgroupTree(t, cg))

	require.NoError(t, l.Close())
	closed = true
	assert.Equal(t, "off: stopped", l.Status())
	assert.Empty(t, bpftoolCgroupTree(t, cg))
	// The kernel frees programs after an RCU grace period.
	require.Eventually(t, func() bool {
		loaded := bpftoolProgIDs(t)
		for _, id := range ids {
			if _, ok := loaded[id]; ok {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "programs still loaded after Close")

	assert.NoError(t, l.Close(), "second Close")
	assert.ErrorIs(t, l.AllowPort(80), errClosed)
	assert.ErrorIs(t, l.RunWakeEvents(context.Background(), func(WakeEvent) {}), errClosed)
}

func TestVIPReachesBackend(t *testing.T) {
	l, cg := loadAt(t, Options{})
	a := startBackend(t, "a")
	b := startBackend(t, "b")
	vip := netip.MustParseAddrPort("127.77.0.1:80")
	require.NoError(t, l.SetVIP(VIP{Addr: vip, FunctionID: 1, Backends: []Backend{
		{Addr: a.addr, Weight: 75},
		{Addr: b.addr, Weight: 25},
	}}))

	const n = 200
	res := runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/", Count: n})
	require.Len(t, res.Bodies, n)
	counts := map[string]int{}
	for i, body := range res.Bodies {
		counts[body]++
		assert.Equal(t, vip.String(), res.Peers[i], "getpeername shows the VIP")
	}
	// 75% of 200 is 150 with a standard deviation of about 6.
	assert.InDelta(t, 150, counts["a"], 30, "weights are followed: %v", counts)
	assert.Equal(t, n, counts["a"]+counts["b"])
	s := statsOf(t, l)
	assert.Equal(t, uint64(n), s.ConnectsToBackend)
	// Go's dialer calls getpeername too.
	assert.GreaterOrEqual(t, s.PeernamesRewritten, uint64(n))
	assert.Zero(t, s.WakesEmitted)

	// Replacing the backends takes effect for the next connect.
	require.NoError(t, l.SetVIP(VIP{Addr: vip, FunctionID: 1, Backends: []Backend{{Addr: b.addr, Weight: 1}}}))
	res = runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/", Count: 10})
	assert.Equal(t, strings.Split(strings.Repeat("b", 10), ""), res.Bodies)

	// Plain addresses are untouched, and getpeername tells the truth.
	res = runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + a.addr.String() + "/"})
	assert.Equal(t, []string{"a"}, res.Bodies)
	assert.Equal(t, []string{a.addr.String()}, res.Peers)

	// A deleted VIP and an address in the range that was never published
	// are left alone, so the connect is refused.
	require.NoError(t, l.DeleteVIP(vip))
	for _, dead := range []string{vip.String(), "127.77.0.2:80"} {
		h := startHelper(t, cg, "http-get", helperArgs{URL: "http://" + dead + "/"})
		var r helperResult
		require.NoError(t, json.Unmarshal([]byte(h.line(t)), &r))
		assert.Contains(t, r.Error, "connection refused", dead)
	}
	assert.Equal(t, uint64(2), statsOf(t, l).ConnectsUnknownVIP)

	assert.ErrorContains(t, l.SetVIP(VIP{Addr: netip.MustParseAddrPort("127.0.0.1:80")}), "want an address in 127.77.0.0/16")
	assert.ErrorContains(t, l.SetVIP(VIP{Addr: vip, Backends: []Backend{{Addr: netip.MustParseAddrPort("[::1]:80"), Weight: 1}}}), "IPv4")
}

func TestColdVIPWakesAndFallbackSucceeds(t *testing.T) {
	l, cg := loadAt(t, Options{})
	vip := netip.MustParseAddrPort("127.77.3.4:80")
	const fn = 42
	require.NoError(t, l.SetVIP(VIP{Addr: vip, FunctionID: fn}))

	// The "node agent": on a wake event it starts the replica and
	// publishes it, and tells the activator where it is.
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan WakeEvent, 16)
	readerDone := make(chan error, 1)
	go func() {
		readerDone <- l.RunWakeEvents(ctx, func(ev WakeEvent) { events <- ev })
	}()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-readerDone)
	})
	ready := make(chan netip.AddrPort, 1)
	var woke WakeEvent
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		select {
		case woke = <-events:
		case <-ctx.Done():
			return
		}
		be, err := serveBackend(t, "warm")
		if err != nil {
			t.Errorf("start replica: %v", err)
			return
		}
		if err := l.SetVIP(VIP{Addr: vip, FunctionID: fn, Backends: []Backend{{Addr: be.addr, Weight: 1}}}); err != nil {
			t.Errorf("publish backend: %v", err)
		}
		ready <- be.addr
	}()

	// The "activator": learns which VIP the client dialed, waits for the
	// replica, and proxies the connection to it.
	act, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { act.Close() })
	require.NoError(t, l.SetFallback(netip.MustParseAddrPort(act.Addr().String())))
	origins := make(chan Origin, 1)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := act.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		o, ok, err := l.FallbackOrigin(netip.MustParseAddrPort(c.RemoteAddr().String()))
		if err != nil || !ok {
			t.Errorf("fallback origin of %s: ok=%v err=%v", c.RemoteAddr(), ok, err)
			return
		}
		origins <- o
		var addr netip.AddrPort
		select {
		case addr = <-ready:
		case <-time.After(10 * time.Second):
			t.Error("replica never became ready")
			return
		}
		up, err := net.Dial("tcp4", addr.String())
		if err != nil {
			t.Errorf("dial replica: %v", err)
			return
		}
		defer up.Close()
		go func() { _, _ = io.Copy(up, c) }()
		_, _ = io.Copy(c, up)
	}()

	res := runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/"})
	assert.Equal(t, []string{"warm"}, res.Bodies)
	assert.Equal(t, []string{vip.String()}, res.Peers, "getpeername shows the VIP, not the activator")
	<-agentDone
	assert.Equal(t, uint32(fn), woke.FunctionID)
	assert.Equal(t, vip, woke.VIP)
	assert.NotZero(t, woke.PID)
	assert.NotZero(t, woke.Cookie)
	assert.Positive(t, woke.Age())
	assert.Less(t, woke.Age(), time.Minute)
	assert.Equal(t, Origin{VIP: vip, FunctionID: fn}, <-origins)

	// Warm now: the next connect goes straight to the replica.
	res = runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/"})
	assert.Equal(t, []string{"warm"}, res.Bodies)
	s := statsOf(t, l)
	assert.Equal(t, uint64(1), s.ConnectsToFallback)
	assert.Equal(t, uint64(1), s.ConnectsToBackend)
	assert.Equal(t, uint64(1), s.WakesEmitted)
	assert.Zero(t, s.WakesDropped)

	// Only one reader at a time.
	assert.ErrorContains(t, l.RunWakeEvents(ctx, func(WakeEvent) {}), "already being read")

	// Without a fallback a cold connect is refused but still wakes.
	require.NoError(t, l.SetVIP(VIP{Addr: vip, FunctionID: fn}))
	require.NoError(t, l.SetFallback(netip.AddrPort{}))
	h := startHelper(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/"})
	var r helperResult
	require.NoError(t, json.Unmarshal([]byte(h.line(t)), &r))
	assert.Contains(t, r.Error, "connection refused")
	select {
	case ev := <-events:
		assert.Equal(t, uint32(fn), ev.FunctionID)
	case <-time.After(10 * time.Second):
		t.Fatal("no wake event for a cold connect without fallback")
	}
	assert.Equal(t, uint64(1), statsOf(t, l).ConnectsNoFallback)

	_, ok, err := l.FallbackOrigin(netip.MustParseAddrPort("127.0.0.1:1"))
	require.NoError(t, err)
	assert.False(t, ok)
}

func TestSocketRedirect(t *testing.T) {
	l, cg := loadAt(t, Options{})
	sizes := []int{10, 1 << 20}
	total := uint64(10 + 1<<20)

	t.Run("allowed port is redirected", func(t *testing.T) {
		port := testenv.FreePort(t)
		require.NoError(t, l.AllowPort(uint16(port)))
		before := statsOf(t, l)
		runHelperIn(t, cg, "echo", helperArgs{Port: port, Sizes: sizes})
		after := statsOf(t, l)
		assert.Equal(t, uint64(2), after.SocketsInserted-before.SocketsInserted, "client and server sockets")
		assert.Positive(t, after.MessagesRedirected-before.MessagesRedirected)
		// Every byte went through the redirect, both ways.
		assert.Equal(t, 2*total, after.BytesRedirected-before.BytesRedirected)
		assert.Zero(t, after.SocketsLatchedPlain-before.SocketsLatchedPlain)
		require.NoError(t, l.DisallowPort(uint16(port)))
	})

	t.Run("other ports are untouched", func(t *testing.T) {
		before := statsOf(t, l)
		runHelperIn(t, cg, "echo", helperArgs{Port: testenv.FreePort(t), Sizes: sizes})
		after := statsOf(t, l)
		assert.Equal(t, before.SocketsInserted, after.SocketsInserted)
		assert.Equal(t, before.MessagesRedirected, after.MessagesRedirected)
	})

	t.Run("peer outside the cgroup falls back to TCP", func(t *testing.T) {
		// The server is this test process, outside the cgroup, so only
		// the client socket is mapped and finds no peer.
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		require.NoError(t, l.AllowPort(uint16(port)))
		defer func() { require.NoError(t, l.DisallowPort(uint16(port))) }()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
		before := statsOf(t, l)
		runHelperIn(t, cg, "dial-echo", helperArgs{Port: port, Sizes: sizes})
		after := statsOf(t, l)
		assert.Equal(t, uint64(1), after.SocketsInserted-before.SocketsInserted)
		assert.Equal(t, uint64(1), after.SocketsLatchedPlain-before.SocketsLatchedPlain)
		assert.Zero(t, after.MessagesRedirected-before.MessagesRedirected)
	})

	t.Run("sendfile on a redirected socket keeps order", func(t *testing.T) {
		port := testenv.FreePort(t)
		require.NoError(t, l.AllowPort(uint16(port)))
		defer func() { require.NoError(t, l.DisallowPort(uint16(port))) }()
		before := statsOf(t, l)
		runHelperIn(t, cg, "sendfile", helperArgs{Port: port, Sizes: []int{1 << 20}})
		after := statsOf(t, l)
		// "head" + the file + "tail", all redirected.
		assert.Equal(t, uint64(4+1<<20+4), after.BytesRedirected-before.BytesRedirected)
	})

	t.Run("Close empties the map and connections carry on", func(t *testing.T) {
		port := testenv.FreePort(t)
		require.NoError(t, l.AllowPort(uint16(port)))
		h := startHelper(t, cg, "echo", helperArgs{Port: port, Sizes: sizes, Hold: true})
		require.Equal(t, "holding", h.line(t))
		n, err := l.RedirectedSockets()
		require.NoError(t, err)
		assert.Equal(t, 2, n)
		require.NoError(t, l.Close())
		_, err = io.WriteString(h.stdin, "go on\n")
		require.NoError(t, err)
		h.result(t)
	})
}

// A process in another network namespace (a container with its own network)
// shares the cgroup but not the host's loopback: its VIP connects and its
// sockets must be left alone.
func TestOtherNetnsUntouched(t *testing.T) {
	l, cg := loadAt(t, Options{})
	be := startBackend(t, "host")
	vip := netip.MustParseAddrPort("127.77.0.1:80")
	require.NoError(t, l.SetVIP(VIP{Addr: vip, FunctionID: 1, Backends: []Backend{{Addr: be.addr, Weight: 1}}}))
	port := testenv.FreePort(t)
	require.NoError(t, l.AllowPort(uint16(port)))

	before := statsOf(t, l)
	h := startHelper(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/", NewNetns: true})
	var r helperResult
	require.NoError(t, json.Unmarshal([]byte(h.line(t)), &r))
	assert.Contains(t, r.Error, "connection refused", "nothing listens on the VIP in the child's namespace")
	runHelperIn(t, cg, "echo", helperArgs{Port: port, Sizes: []int{10, 1 << 20}, NewNetns: true})
	after := statsOf(t, l)
	assert.Equal(t, before, after)

	// The same helper in the host namespace is routed, as a control.
	res := runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/"})
	assert.Equal(t, []string{"host"}, res.Bodies)
}

// Data redirected but not yet read when Close starts survives if it is read
// within the grace period, and what is sent meanwhile follows it in order.
func TestCloseDrainsBeforeUnmapping(t *testing.T) {
	l, cg := loadAt(t, Options{CloseGrace: -1})
	port := testenv.FreePort(t)
	require.NoError(t, l.AllowPort(uint16(port)))
	const size = 100 << 10
	h := startHelper(t, cg, "unread", helperArgs{Port: port, Sizes: []int{size}})
	require.Equal(t, "holding", h.line(t))
	s := statsOf(t, l)
	require.Equal(t, uint64(size), s.BytesRedirected, "the unread bytes went through the redirect")

	// Inside the grace period: let the child send more and read it all.
	done := make(chan helperResult, 1)
	l.drainStarted = func() {
		_, err := io.WriteString(h.stdin, "go on\n")
		assert.NoError(t, err)
		done <- h.result(t)
		// Close holds the loader; read the counters directly.
		s, err := l.readStats()
		assert.NoError(t, err)
		assert.Equal(t, uint64(size), s.BytesRedirected, "sends during the grace period use TCP")
		assert.Positive(t, s.MessagesPassed)
	}
	require.NoError(t, l.Close())
	<-done
}
