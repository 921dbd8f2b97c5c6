package bpf

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ebbrun/ebb/internal/netnscookie"
	"github.com/ebbrun/ebb/internal/testenv"
)

// testNetns is a network namespace a test made, joined to the host by a
// veth pair: host is the host end's address, addr the namespace's.
type testNetns struct {
	name string
	host netip.Addr
	addr netip.Addr
}

// newTestNetns makes the namespace ebbtst-<id><suffix> with the veth pair
// ebt<id><suffix> (host) and ebp<id><suffix> (inside), the /30 of net at
// offset holding both addresses, and removes both when the test ends.
func newTestNetns(t *testing.T, id, suffix string, net netip.Prefix, offset byte) testNetns {
	t.Helper()
	ip := testenv.RequireBinary(t, "ip")
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(ip, args...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}
	base := net.Addr().As4()
	at := func(i byte) netip.Addr { return netip.AddrFrom4([4]byte{base[0], base[1], base[2], offset + i}) }
	n := testNetns{name: "ebbtst-" + id + suffix, host: at(1), addr: at(2)}
	hostIf, peerIf := "ebt"+id+suffix, "ebp"+id+suffix

	run("netns", "add", n.name)
	t.Cleanup(func() {
		// Deleting the host end takes its peer along; the namespace
		// goes once the last process in it has exited.
		_ = exec.Command(ip, "link", "del", hostIf).Run()
		if out, err := exec.Command(ip, "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	run("link", "add", hostIf, "type", "veth", "peer", "name", peerIf, "netns", n.name)
	run("addr", "add", n.host.String()+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", n.name, "addr", "add", n.addr.String()+"/30", "dev", peerIf)
	run("-n", n.name, "link", "set", peerIf, "up")
	run("-n", n.name, "link", "set", "lo", "up")
	return n
}

// cookie is the namespace's SO_NETNS_COOKIE, read from a socket made on a
// thread that entered it.
func (n testNetns) cookie(t *testing.T) uint64 {
	t.Helper()
	var cookie uint64
	err := func() error {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			return err
		}
		defer own.Close()
		target, err := os.Open("/run/netns/" + n.name)
		if err != nil {
			runtime.UnlockOSThread()
			return err
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			return fmt.Errorf("enter %s: %w", n.name, err)
		}
		cookie, err = netnscookie.Current()
		if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime ends it with the
			// goroutine rather than reuse it in the wrong namespace.
			return fmt.Errorf("leave %s: %w", n.name, err)
		}
		runtime.UnlockOSThread()
		return err
	}()
	require.NoError(t, err)
	return cookie
}

// serveIn starts an HTTP server answering "ok" inside n, in cg, on a free
// port, allow-lists and tracks that port, and returns its address.
func serveIn(t *testing.T, l *Loader, cg string, n testNetns) netip.AddrPort {
	t.Helper()
	h := startHelper(t, cg, "http-serve", helperArgs{Netns: n.name})
	var ready struct{ Port uint16 }
	require.NoError(t, json.Unmarshal([]byte(h.line(t)), &ready))
	require.NoError(t, l.AllowPort(ready.Port))
	require.NoError(t, l.TrackPort(ready.Port))
	return netip.AddrPortFrom(n.addr, ready.Port)
}

// With replicas in network namespaces of their own, a registered replica
// namespace counts as the loader's: its connections with the host are
// redirected and accounted across the two namespaces, and its VIP connects
// go to the replica fallback. An unregistered namespace stays untouched.
func TestReplicaNetns(t *testing.T) {
	l, cg := loadAt(t, Options{})
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:3])
	subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 217, rnd[3], 0}), 24)
	replica := newTestNetns(t, id, "r", subnet, 0)
	other := newTestNetns(t, id, "o", subnet, 4)
	require.NoError(t, l.AddReplicaNetns(replica.cookie(t)))
	require.NoError(t, l.AddReplicaNetns(replica.cookie(t)), "adding again")
	assert.ErrorContains(t, l.AddReplicaNetns(0), "cookie 0")

	replicaSrv := serveIn(t, l, cg, replica)
	otherSrv := serveIn(t, l, cg, other)

	t.Run("host client to a replica's address is redirected and accounted", func(t *testing.T) {
		before := statsOf(t, l)
		res := runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + replicaSrv.String() + "/", Count: 3, KeepAlive: true})
		assert.Equal(t, []string{"ok", "ok", "ok"}, res.Bodies)
		after := statsOf(t, l)
		assert.Equal(t, uint64(2), after.SocketsInserted-before.SocketsInserted, "the host's client and the replica's server socket")
		assert.Positive(t, after.MessagesRedirected-before.MessagesRedirected)
		assert.Zero(t, after.SocketsLatchedPlain-before.SocketsLatchedPlain)
		assert.Zero(t, after.MessagesPassed-before.MessagesPassed, "every send went straight to the peer")
		assert.Equal(t, uint64(1), after.FlowsTracked-before.FlowsTracked)
		loads, err := l.PortLoads()
		require.NoError(t, err)
		assert.Zero(t, loads[replicaSrv.Port()].Open, "every request was answered")
	})

	t.Run("an unregistered namespace's sockets are untouched", func(t *testing.T) {
		before := statsOf(t, l)
		res := runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + otherSrv.String() + "/"})
		assert.Equal(t, []string{"ok"}, res.Bodies)
		after := statsOf(t, l)
		assert.Equal(t, uint64(1), after.SocketsInserted-before.SocketsInserted, "only the host's client socket")
		assert.Equal(t, uint64(1), after.SocketsLatchedPlain-before.SocketsLatchedPlain, "it finds no peer and uses TCP")
		assert.Zero(t, after.MessagesRedirected-before.MessagesRedirected)
	})

	vip := netip.MustParseAddrPort("127.77.9.1:80")
	const fn = 9
	require.NoError(t, l.SetVIP(VIP{Addr: vip, FunctionID: fn, Backends: []Backend{{Addr: replicaSrv, Weight: 1}}}))

	t.Run("a host VIP connect goes to the replica's address", func(t *testing.T) {
		before := statsOf(t, l)
		loadsBefore, err := l.PortLoads()
		require.NoError(t, err)
		res := runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/", Count: 2})
		assert.Equal(t, []string{"ok", "ok"}, res.Bodies)
		assert.Equal(t, []string{vip.String(), vip.String()}, res.Peers, "getpeername shows the VIP")
		after := statsOf(t, l)
		assert.Equal(t, uint64(2), after.ConnectsToBackend-before.ConnectsToBackend)
		assert.Equal(t, uint64(4), after.SocketsInserted-before.SocketsInserted)
		assert.Zero(t, after.SocketsLatchedPlain-before.SocketsLatchedPlain)
		loads, err := l.PortLoads()
		require.NoError(t, err)
		assert.Equal(t, uint64(2), loads[replicaSrv.Port()].VIPRequests-loadsBefore[replicaSrv.Port()].VIPRequests,
			"the replica counts VIP requests across the namespaces")
	})

	// The replica fallback: on the host end of the replica's link, as the
	// bridge's gateway address would be. It answers with the origin the
	// loader reports for the connection.
	fbLn, err := net.Listen("tcp4", netip.AddrPortFrom(replica.host, 0).String())
	require.NoError(t, err)
	fbSrv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o, ok, err := l.FallbackOrigin(netip.MustParseAddrPort(r.RemoteAddr))
			if err != nil || !ok {
				http.Error(w, fmt.Sprintf("no origin for %s: %v", r.RemoteAddr, err), http.StatusMisdirectedRequest)
				return
			}
			_, _ = fmt.Fprintf(w, "fallback %s %d", o.VIP, o.FunctionID)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = fbSrv.Serve(fbLn) }()
	t.Cleanup(func() { _ = fbSrv.Close() })
	fbAddr := netip.MustParseAddrPort(fbLn.Addr().String())
	fromFallback := fmt.Sprintf("fallback %s %d", vip, fn)

	t.Run("a replica's VIP connect goes to the replica fallback", func(t *testing.T) {
		// Without one it is left alone, and refused in the replica's
		// namespace, where nothing listens on the VIP.
		before := statsOf(t, l)
		h := startHelper(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/", Netns: replica.name})
		var r helperResult
		require.NoError(t, json.Unmarshal([]byte(h.line(t)), &r))
		assert.Contains(t, r.Error, "connection refused")
		assert.Equal(t, uint64(1), statsOf(t, l).ConnectsNoFallback-before.ConnectsNoFallback)

		require.NoError(t, l.SetReplicaFallback(fbAddr))
		assert.ErrorContains(t, l.SetReplicaFallback(netip.MustParseAddrPort("[::1]:80")), "IPv4")
		before = statsOf(t, l)
		// Warm: still the fallback, never the backend replica directly.
		res := runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/", Netns: replica.name})
		assert.Equal(t, []string{fromFallback}, res.Bodies)
		assert.Equal(t, []string{vip.String()}, res.Peers, "getpeername shows the VIP")
		after := statsOf(t, l)
		assert.Equal(t, uint64(1), after.ConnectsFromReplicas-before.ConnectsFromReplicas)
		assert.Zero(t, after.ConnectsToBackend-before.ConnectsToBackend)
		assert.Zero(t, after.WakesEmitted-before.WakesEmitted, "the function is warm")

		// Cold: the fallback, and a wake event.
		require.NoError(t, l.SetVIP(VIP{Addr: vip, FunctionID: fn}))
		before = statsOf(t, l)
		res = runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/", Netns: replica.name})
		assert.Equal(t, []string{fromFallback}, res.Bodies)
		after = statsOf(t, l)
		assert.Equal(t, uint64(1), after.ConnectsFromReplicas-before.ConnectsFromReplicas)
		assert.Equal(t, uint64(1), after.WakesEmitted-before.WakesEmitted)
		assert.Zero(t, after.ConnectsToFallback-before.ConnectsToFallback, "the host's fallback is not the replicas'")
	})

	t.Run("an unregistered namespace's VIP connect is left alone", func(t *testing.T) {
		before := statsOf(t, l)
		h := startHelper(t, cg, "http-get", helperArgs{URL: "http://" + vip.String() + "/", Netns: other.name})
		var r helperResult
		require.NoError(t, json.Unmarshal([]byte(h.line(t)), &r))
		assert.Contains(t, r.Error, "connection refused")
		assert.Equal(t, before, statsOf(t, l))
	})

	t.Run("a replica's loopback connections are left alone", func(t *testing.T) {
		before := statsOf(t, l)
		port := testenv.FreePort(t)
		require.NoError(t, l.AllowPort(uint16(port)))
		defer func() { require.NoError(t, l.DisallowPort(uint16(port))) }()
		runHelperIn(t, cg, "echo", helperArgs{Port: port, Sizes: []int{10, 1 << 16}, Netns: replica.name})
		assert.Equal(t, before, statsOf(t, l))
	})

	t.Run("a removed namespace is no longer ours", func(t *testing.T) {
		require.NoError(t, l.RemoveReplicaNetns(replica.cookie(t)))
		require.NoError(t, l.RemoveReplicaNetns(replica.cookie(t)), "removing again")
		before := statsOf(t, l)
		res := runHelperIn(t, cg, "http-get", helperArgs{URL: "http://" + replicaSrv.String() + "/"})
		assert.Equal(t, []string{"ok"}, res.Bodies)
		after := statsOf(t, l)
		assert.Equal(t, uint64(1), after.SocketsInserted-before.SocketsInserted, "only the host's client socket")
		assert.Zero(t, after.MessagesRedirected-before.MessagesRedirected)
	})
}
