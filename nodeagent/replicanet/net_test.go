package replicanet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/ebbrun/ebb/internal/testenv"
)

// blockedWait is how long a dial that the policy drops is given before the
// test counts it as refused: a dropped SYN never answers, so some bound is
// needed. An allowed dial on the same paths answers in under 1 ms, as
// Prepare returns only once the veth forwards.
const blockedWait = 400 * time.Millisecond

// fakeRegistry records the netns cookies registered for eBPF.
type fakeRegistry struct {
	mu      sync.Mutex
	cookies map[uint64]bool
	failAdd bool
}

func (r *fakeRegistry) AddReplicaNetns(c uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failAdd {
		return errors.New("map full")
	}
	if r.cookies == nil {
		r.cookies = map[uint64]bool{}
	}
	r.cookies[c] = true
	return nil
}

func (r *fakeRegistry) RemoveReplicaNetns(c uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.cookies, c)
	return nil
}

func (r *fakeRegistry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cookies)
}

// testNet returns a set-up network on a bridge and CIDR of its own
// (10.215.<random>.0/24, ports 40000-40099), torn down at the end of the
// test, which then asserts nothing is left.
func testNet(t testing.TB, change func(*Config)) (*Net, Config) {
	t.Helper()
	testenv.RequireRoot(t)
	suffix := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	cfg := Config{
		Bridge:   "ebbtst" + suffix,
		CIDR:     netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 215, byte(rand.Uint32()), 0}), 24),
		PortMin:  40000,
		PortMax:  40099,
		NetnsDir: filepath.Join(t.TempDir(), "netns"),
	}
	if change != nil {
		change(&cfg)
	}
	n, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, n.Teardown(context.Background()))
		left, err := Leftovers(cfg.Bridge, cfg.NetnsDir)
		assert.NoError(t, err)
		assert.Empty(t, left)
		if nft, err := exec.LookPath("nft"); err == nil {
			out, err := exec.Command(nft, "list", "tables").CombinedOutput()
			assert.NoError(t, err, "%s", out)
			assert.NotContains(t, string(out), TableName(cfg.Bridge))
		}
	})
	require.NoError(t, n.Setup(t.Context()))
	return n, cfg
}

// server accepts on l until it is closed, says "ok" to each client and
// reports who connected.
func server(t *testing.T, l net.Listener) <-chan netip.AddrPort {
	t.Cleanup(func() { l.Close() })
	seen := make(chan netip.AddrPort, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			seen <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
			_, _ = c.Write([]byte("ok"))
			c.Close()
		}
	}()
	return seen
}

func listenIn(t *testing.T, netnsPath string, addr netip.AddrPort) net.Listener {
	t.Helper()
	var l net.Listener
	require.NoError(t, Do(netnsPath, func() (err error) {
		l, err = net.Listen("tcp4", addr.String())
		return err
	}))
	return l
}

// dial connects from the netns (the host's if "") and reads the server's
// "ok": a connection that only looks open does not count.
func dial(netnsPath string, to netip.AddrPort) error {
	return dialWithin(netnsPath, to, 10*time.Second)
}

// dialBlocked is dial for connections the policy must drop.
func dialBlocked(netnsPath string, to netip.AddrPort) error {
	return dialWithin(netnsPath, to, blockedWait)
}

func dialWithin(netnsPath string, to netip.AddrPort, within time.Duration) error {
	fn := func() error {
		c, err := net.DialTimeout("tcp4", to.String(), within)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if string(b) != "ok" {
			return fmt.Errorf("got %q", b)
		}
		return nil
	}
	if netnsPath == "" {
		return fn()
	}
	return Do(netnsPath, fn)
}

func portOf(l net.Listener) uint16 { return l.Addr().(*net.TCPAddr).AddrPort().Port() }

// outside is a host for egress checks: a netns of the test's own with a
// veth to the host, 10.216.<random>.1/30 on the host end and .2 inside.
func outside(t *testing.T) (path string, hostEnd, far netip.Addr) {
	t.Helper()
	b := byte(rand.Uint32())
	hostEnd = netip.AddrFrom4([4]byte{10, 216, b, 1})
	far = netip.AddrFrom4([4]byte{10, 216, b, 2})
	path = filepath.Join(t.TempDir(), "outside")
	require.NoError(t, newNetns(path))
	t.Cleanup(func() { assert.NoError(t, removeNetns(path)) })
	ns, err := os.Open(path)
	require.NoError(t, err)
	defer ns.Close()
	name := fmt.Sprintf("ebtso%06x", rand.Uint32()&0xffffff)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns.Fd()))}
	require.NoError(t, netlink.LinkAdd(veth))
	t.Cleanup(func() { assert.NoError(t, netlink.LinkDel(veth)) })
	require.NoError(t, netlink.AddrAdd(veth, &netlink.Addr{IPNet: &net.IPNet{IP: hostEnd.AsSlice(), Mask: net.CIDRMask(30, 32)}}))
	require.NoError(t, netlink.LinkSetUp(veth))
	require.NoError(t, Do(path, func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: far.AsSlice(), Mask: net.CIDRMask(30, 32)}}); err != nil {
			return err
		}
		return netlink.LinkSetUp(eth)
	}))
	return path, hostEnd, far
}

func TestNetwork(t *testing.T) {
	reg := &fakeRegistry{}
	n0, cfg := testNet(t, func(c *Config) { c.Registry = reg })
	ctx := t.Context()
	gw := n0.Gateway()

	// Listeners on the gateway, one of whose ports is then offered: Setup
	// again, by a second Net, replaces the table and adopts the bridge.
	closedL := mustListen(t, netip.AddrPortFrom(gw, 0))
	closed := server(t, closedL)
	offeredL := mustListen(t, netip.AddrPortFrom(gw, 0))
	offeredSeen := server(t, offeredL)
	cfg.OfferedPorts = []uint16{portOf(offeredL)}
	n, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, n.Setup(ctx))
	if nft, err := exec.LookPath("nft"); err == nil {
		out, _ := exec.Command(nft, "list", "table", "inet", TableName(cfg.Bridge)).CombinedOutput()
		t.Logf("%s", out)
	}

	const port1, port2 = 40001, 40002
	p1, err := n.Prepare(ctx, "r1", port1)
	require.NoError(t, err)
	p2, err := n.Prepare(ctx, "r2", port2)
	require.NoError(t, err)
	assert.Equal(t, p1, n.NetnsPath("r1"))
	assert.True(t, isNetns(p1))
	assert.Equal(t, 2, reg.len(), "both netns cookies registered")

	t.Run("inside", func(t *testing.T) {
		require.NoError(t, Do(p1, func() error {
			b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
			require.NoError(t, err)
			assert.Equal(t, "0", strings.TrimSpace(string(b)))
			eth, err := netlink.LinkByName("eth0")
			require.NoError(t, err)
			v4, err := netlink.AddrList(eth, netlink.FAMILY_V4)
			require.NoError(t, err)
			require.Len(t, v4, 1)
			assert.Equal(t, n.Addr(port1).String()+"/24", v4[0].IPNet.String())
			v6, err := netlink.AddrList(nil, netlink.FAMILY_V6)
			require.NoError(t, err)
			assert.Empty(t, v6, "IPv6 is off inside")
			routes, err := netlink.RouteGet(net.IPv4(10, 216, 0, 1))
			require.NoError(t, err)
			assert.Equal(t, gw.String(), routes[0].Gw.String())
			return nil
		}))
		link, err := netlink.LinkByName(VethName("r1"))
		require.NoError(t, err)
		br, err := netlink.LinkByName(cfg.Bridge)
		require.NoError(t, err)
		assert.Equal(t, br.Attrs().Index, link.Attrs().MasterIndex)
		v6, err := netlink.AddrList(br, netlink.FAMILY_V6)
		require.NoError(t, err)
		assert.Empty(t, v6, "IPv6 is off on the bridge")
		pi, err := netlink.LinkGetProtinfo(link)
		require.NoError(t, err)
		assert.True(t, pi.Isolated, "bridge port isolated")
	})

	r1 := netip.AddrPortFrom(n.Addr(port1), port1)
	r1Seen := server(t, listenIn(t, p1, r1))
	outPath, hostEnd, far := outside(t)
	farL := listenIn(t, outPath, netip.AddrPortFrom(far, 0))
	farSeen := server(t, farL)
	hostEndL := mustListen(t, netip.AddrPortFrom(hostEnd, 0))
	hostEndSeen := server(t, hostEndL)

	t.Run("host reaches replica", func(t *testing.T) {
		require.NoError(t, dial("", r1))
		assert.Equal(t, gw, (<-r1Seen).Addr())
	})
	t.Run("replica reaches offered gateway port", func(t *testing.T) {
		require.NoError(t, dial(p2, netip.AddrPortFrom(gw, portOf(offeredL))))
		assert.Equal(t, n.Addr(port2), (<-offeredSeen).Addr())
	})
	t.Run("egress is masqueraded", func(t *testing.T) {
		require.NoError(t, dial(p2, netip.AddrPortFrom(far, portOf(farL))))
		assert.Equal(t, hostEnd, (<-farSeen).Addr(), "source rewritten to the host's outgoing address")
	})
	t.Run("blocked", func(t *testing.T) {
		cases := []struct {
			name string
			to   netip.AddrPort
		}{
			{"another replica", r1},
			{"gateway, port not offered", netip.AddrPortFrom(gw, portOf(closedL))},
			{"another host address", netip.AddrPortFrom(hostEnd, portOf(hostEndL))},
			{"host loopback", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), portOf(closedL))},
		}
		var wg sync.WaitGroup
		errs := make([]error, len(cases))
		for i, c := range cases {
			wg.Go(func() { errs[i] = dialBlocked(p2, c.to) })
		}
		wg.Wait()
		for i, c := range cases {
			assert.Error(t, errs[i], c.name)
		}
		assert.Empty(t, r1Seen)
		assert.Empty(t, closed)
		assert.Empty(t, hostEndSeen)
	})
	t.Run("no replica to replica through the gateway either", func(t *testing.T) {
		// Even with a route via the gateway (root inside the netns; a
		// replica has no CAP_NET_ADMIN there), the forward chain drops it.
		require.NoError(t, Do(p2, func() error {
			eth, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: &net.IPNet{IP: r1.Addr().AsSlice(), Mask: net.CIDRMask(32, 32)}, Gw: gw.AsSlice()})
		}))
		assert.Error(t, dialBlocked(p2, r1))
		assert.Empty(t, r1Seen)
	})

	t.Run("release", func(t *testing.T) {
		br, err := netlink.LinkByName(cfg.Bridge)
		require.NoError(t, err)
		mac := br.Attrs().HardwareAddr.String()
		require.NoError(t, n.Release(ctx, "r1"))
		br, err = netlink.LinkByName(cfg.Bridge)
		require.NoError(t, err)
		assert.Equal(t, mac, br.Attrs().HardwareAddr.String(), "the gateway's MAC does not follow the ports")
		// r2's ARP entry for the gateway still holds: no wait for it to expire.
		require.NoError(t, dialWithin(p2, netip.AddrPortFrom(gw, portOf(offeredL)), blockedWait))
		<-offeredSeen
		assert.Empty(t, n.NetnsPath("r1"))
		_, err = os.Stat(p1)
		assert.ErrorIs(t, err, os.ErrNotExist)
		_, err = netlink.LinkByName(VethName("r1"))
		assert.Error(t, err)
		assert.Equal(t, 1, reg.len())
		require.NoError(t, n.Release(ctx, "r1"), "releasing twice is fine")
	})
	t.Run("prepare replaces", func(t *testing.T) {
		p, err := n.Prepare(ctx, "r2", port2+1)
		require.NoError(t, err)
		assert.Equal(t, p2, p)
		assert.Equal(t, 1, reg.len(), "the old cookie went with the old netns")
		require.NoError(t, Do(p, func() error {
			eth, err := netlink.LinkByName("eth0")
			require.NoError(t, err)
			v4, err := netlink.AddrList(eth, netlink.FAMILY_V4)
			require.NoError(t, err)
			require.Len(t, v4, 1)
			assert.Equal(t, n.Addr(port2+1), netip.MustParseAddr(v4[0].IP.String()))
			return nil
		}))
	})
	t.Run("teardown", func(t *testing.T) {
		require.NoError(t, n.Teardown(ctx))
		left, err := Leftovers(cfg.Bridge, cfg.NetnsDir)
		require.NoError(t, err)
		assert.Empty(t, left)
		assert.Zero(t, reg.len())
		require.NoError(t, n.Teardown(ctx), "teardown of nothing")
	})
}

func mustListen(t *testing.T, a netip.AddrPort) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp4", a.String())
	require.NoError(t, err)
	return l
}

// A port, and so an address, that goes to another replica is reachable
// though the host's neighbour table still holds the address from its last
// replica: with a random link address per replica, probes failed for 30 s
// after a burst, until the stale entry expired. (Right after a Release the
// kernel sometimes still loses a first SYN, which costs its 1 s
// retransmission; the node agent hands a port out again only after every
// other, so that is rare.)
func TestAddressReused(t *testing.T) {
	n, _ := testNet(t, nil)
	ctx := t.Context()
	const port = 40011
	to := netip.AddrPortFrom(n.Addr(port), port)
	for _, id := range []string{"first", "second", "third"} {
		path, err := n.Prepare(ctx, id, port)
		require.NoError(t, err)
		l := listenIn(t, path, to)
		server(t, l)
		require.NoError(t, dialWithin("", to, 3*time.Second), "replica %s is reachable at %s", id, to)
		l.Close()
		require.NoError(t, n.Release(ctx, id))
	}
}
