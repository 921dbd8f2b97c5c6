package replicanet

import (
	"context"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPublish checks replicas published at the node's address: another host
// and the node itself reach a replica at PublishIP:port, nothing else is
// translated, a replica cannot use the published address to reach another,
// and Release and Adopt keep the map in step with the replicas.
func TestPublish(t *testing.T) {
	testNetRoot(t)
	farPath, hostEnd, far := outside(t)
	n, cfg := testNet(t, func(c *Config) { c.PublishIP = hostEnd })
	ctx := t.Context()
	if nft, err := exec.LookPath("nft"); err == nil {
		out, _ := exec.Command(nft, "list", "table", "inet", TableName(cfg.Bridge)).CombinedOutput()
		t.Logf("%s", out)
	}

	const port1, port2, port3 = 40011, 40012, 40013
	p1, err := n.Prepare(ctx, "r1", port1)
	require.NoError(t, err)
	p2, err := n.Prepare(ctx, "r2", port2)
	require.NoError(t, err)
	r1Seen := server(t, listenIn(t, p1, netip.AddrPortFrom(n.Addr(port1), port1)))
	server(t, listenIn(t, p2, netip.AddrPortFrom(n.Addr(port2), port2)))
	pub1 := netip.AddrPortFrom(hostEnd, port1)
	pub2 := netip.AddrPortFrom(hostEnd, port2)

	for _, tc := range []struct {
		name, from string
		to         netip.AddrPort
		ok         bool
	}{
		{"another host reaches r1 at the published address", farPath, pub1, true},
		{"another host reaches r2 at the published address", farPath, pub2, true},
		{"the node reaches r1 at the published address", "", pub1, true},
		{"r2 cannot reach r1 through the published address", p2, pub1, false},
		{"r1 cannot reach itself through the published address", p1, pub1, false},
		{"another host still cannot reach r1's bridge address", farPath, netip.AddrPortFrom(n.Addr(port1), port1), false},
		{"a port without replica is not translated", farPath, netip.AddrPortFrom(hostEnd, port3), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ok {
				require.NoError(t, dial(tc.from, tc.to))
			} else {
				require.Error(t, dialBlocked(tc.from, tc.to))
			}
		})
	}
	// Egress still works, but not to replica ports elsewhere: another
	// node's published replicas are reached through a router, never by a
	// replica directly.
	t.Run("a replica reaches another host outside the replica ports", func(t *testing.T) {
		l := listenIn(t, farPath, netip.AddrPortFrom(far, 0))
		server(t, l)
		require.NoError(t, dial(p1, netip.AddrPortFrom(far, portOf(l))))
	})
	t.Run("a replica cannot reach a replica port on another host", func(t *testing.T) {
		l := listenIn(t, farPath, netip.AddrPortFrom(far, 40050))
		server(t, l)
		require.Error(t, dialBlocked(p1, netip.AddrPortFrom(far, 40050)))
		require.NoError(t, dial("", netip.AddrPortFrom(far, 40050)), "the node itself can")
	})

	// r1 saw the far host and the node by their own addresses: DNAT
	// changes the destination only.
	var froms []netip.Addr
	for len(r1Seen) > 0 {
		froms = append(froms, (<-r1Seen).Addr())
	}
	assert.Contains(t, froms, hostEnd, "the node's connection comes from its own address")

	// Setup again (a restarting agent, or Offer) keeps the published map.
	require.NoError(t, n.Setup(ctx))
	require.NoError(t, dial(farPath, pub1), "published after Setup again")

	require.NoError(t, n.Release(ctx, "r1"))
	require.Error(t, dialBlocked(farPath, pub1), "released replica unpublished")

	// A new agent: Setup keeps what the kernel's map holds, so a restart
	// does not cut other hosts off the replicas it will adopt; Adopt then
	// drops the ports of replicas it did not keep.
	p3, err := n.Prepare(ctx, "r3", port3)
	require.NoError(t, err)
	server(t, listenIn(t, p3, netip.AddrPortFrom(n.Addr(port3), port3)))
	pub3 := netip.AddrPortFrom(hostEnd, port3)
	require.NoError(t, dial(farPath, pub3))
	n2, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, n2.Setup(ctx))
	require.NoError(t, dial(farPath, pub2), "still published across the restart")
	require.NoError(t, dial(farPath, pub3), "still published across the restart")
	require.NoError(t, n2.Adopt(ctx, []string{"r2"}))
	require.NoError(t, dial(farPath, pub2), "adopted replica published")
	ports, err := publishedPorts(cfg.Bridge)
	require.NoError(t, err)
	assert.Equal(t, []uint16{port2}, ports, "the replica not adopted is unpublished")

	// Adopt from nothing (a table without map elements) publishes a kept
	// replica again from its address.
	require.NoError(t, installTable(cfg, nil))
	require.Error(t, dialBlocked(farPath, pub2), "map emptied")
	n3, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, n3.Setup(ctx))
	require.NoError(t, n3.Adopt(ctx, []string{"r2"}))
	require.NoError(t, dial(farPath, pub2), "adopted replica published again from its address")
	require.NoError(t, n3.Release(context.Background(), "r2"))
	ports, err = publishedPorts(cfg.Bridge)
	require.NoError(t, err)
	assert.Empty(t, ports)
}
