package replicanet

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/ebbrun/ebb/internal/testenv"
)

func TestAdoptAfterRestart(t *testing.T) {
	n, cfg := testNet(t, nil)
	ctx := t.Context()
	paths := map[string]string{}
	for i, id := range []string{"keep-1", "keep-2", "gone"} {
		p, err := n.Prepare(ctx, id, cfg.PortMin+i)
		require.NoError(t, err)
		paths[id] = p
	}
	// A veth whose netns file never made it (a crash mid-Prepare).
	orphan := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: VethName("half-made")}, PeerName: VethName("half-made-peer")}
	require.NoError(t, netlink.LinkAdd(orphan))
	br, err := netlink.LinkByName(cfg.Bridge)
	require.NoError(t, err)
	require.NoError(t, netlink.LinkSetMaster(orphan, br))

	// The node agent restarts: a new Net, with the eBPF registry fresh.
	reg := &fakeRegistry{}
	cfg.Registry = reg
	after, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, after.Setup(ctx))
	require.NoError(t, after.Adopt(ctx, []string{"keep-1", "keep-2", "no-netns"}))

	assert.Equal(t, 2, reg.len(), "kept netns registered again")
	for _, id := range []string{"keep-1", "keep-2"} {
		assert.Equal(t, paths[id], after.NetnsPath(id))
		assert.True(t, isNetns(paths[id]))
		_, err := netlink.LinkByName(VethName(id))
		assert.NoError(t, err, id)
	}
	assert.Empty(t, after.NetnsPath("gone"))
	_, err = os.Stat(paths["gone"])
	assert.ErrorIs(t, err, os.ErrNotExist)
	for _, name := range []string{VethName("gone"), VethName("half-made")} {
		_, err := netlink.LinkByName(name)
		assert.Error(t, err, "%s released", name)
	}
	veths, err := replicaVeths(cfg.Bridge)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{VethName("keep-1"), VethName("keep-2")}, veths)

	// Releasing an adopted replica unregisters the cookie learnt at adoption.
	require.NoError(t, after.Release(ctx, "keep-1"))
	assert.Equal(t, 1, reg.len())
}

func TestPrepareUndoesOnError(t *testing.T) {
	reg := &fakeRegistry{failAdd: true}
	n, cfg := testNet(t, func(c *Config) { c.Registry = reg })
	_, err := n.Prepare(t.Context(), "r", cfg.PortMin)
	require.ErrorContains(t, err, "map full")
	assert.Empty(t, n.NetnsPath("r"))
	left, err := Leftovers(cfg.Bridge, cfg.NetnsDir)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"bridge " + cfg.Bridge, "mount " + cfg.NetnsDir, "nft table inet " + TableName(cfg.Bridge)}, left,
		"only what Setup made")
}

func TestTeardownOfNothing(t *testing.T) {
	testNetRoot(t)
	dir := filepath.Join(t.TempDir(), "netns")
	n, err := New(Config{Bridge: "ebbtstnothing", CIDR: validConfig().CIDR, PortMin: 20000, PortMax: 29999, NetnsDir: dir})
	require.NoError(t, err)
	require.NoError(t, n.Teardown(context.Background()))
	require.NoError(t, n.Release(context.Background(), "never-made"))
	require.NoError(t, n.Adopt(context.Background(), nil))
	left, err := Leftovers("ebbtstnothing", dir)
	require.NoError(t, err)
	assert.Empty(t, left)
}

func TestSetupRefusesBadHostState(t *testing.T) {
	n, cfg := testNet(t, nil)
	ctx := t.Context()

	// A CIDR overlapping a route of another interface (the test's own veth).
	clash := cfg
	clash.Bridge = cfg.Bridge + "x"
	out := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ebtsc" + cfg.Bridge[6:]}, PeerName: "ebtsd" + cfg.Bridge[6:]}
	require.NoError(t, netlink.LinkAdd(out))
	t.Cleanup(func() { _ = netlink.LinkDel(out) })
	require.NoError(t, netlink.AddrAdd(out, mustAddr(t, "10.216.250.1/30")))
	require.NoError(t, netlink.LinkSetUp(out))
	clash.CIDR = mustPrefix(t, "10.216.250.0/24")
	c, err := New(clash)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Teardown(context.Background()) })
	assert.ErrorContains(t, c.Setup(ctx), "overlaps route 10.216.250.0/30")

	// A bridge name taken by an interface that is not a bridge.
	notBridge := cfg
	notBridge.Bridge = out.Name
	notBridge.CIDR = mustPrefix(t, "10.215.252.0/24")
	c, err = New(notBridge)
	require.NoError(t, err)
	assert.ErrorContains(t, c.Setup(ctx), "not a bridge")

	// Setup twice is fine, and a changed CIDR replaces the gateway address.
	moved := cfg
	moved.CIDR = mustPrefix(t, "10.215.251.0/24")
	m, err := New(moved)
	require.NoError(t, err)
	require.NoError(t, m.Setup(ctx))
	require.NoError(t, m.Setup(ctx))
	br, err := netlink.LinkByName(cfg.Bridge)
	require.NoError(t, err)
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	require.NoError(t, err)
	require.Len(t, addrs, 1)
	assert.Equal(t, "10.215.251.1/24", addrs[0].IPNet.String())
	_ = n
}

func testNetRoot(t *testing.T) { t.Helper(); testenv.RequireRoot(t) }

func mustAddr(t *testing.T, s string) *netlink.Addr {
	t.Helper()
	a, err := netlink.ParseAddr(s)
	require.NoError(t, err)
	return a
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	require.NoError(t, err)
	return p
}
