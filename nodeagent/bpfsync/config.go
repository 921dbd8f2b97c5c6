package bpfsync

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/bpf"
)

// Config configures a Syncer. Zero fields take the documented defaults.
type Config struct {
	// Node is this node's name: its replica ports (ports/{Node}/) are the
	// ones allow-listed. Required.
	Node string
	// RouterPort is the router's listen port on this node, allow-listed so
	// that client↔router connections are redirected too. Zero means no
	// router on this node.
	RouterPort uint16
	// VIPs is the range VIPs are allocated from: VIPPrefix and VIPPort,
	// with the defaults of bpf.Options. Every node must use the same
	// range, since the allocations are shared through the store.
	VIPs bpf.Options
	// ReplicaCIDR, when set, is this node's replica address range (the
	// node bridge's), where its isolated replicas serve. Every node has
	// its own, often the same range, so another node's endpoint with an
	// address in it is not a VIP backend here: that address is a replica
	// of this node, maybe another function's.
	ReplicaCIDR netip.Prefix
	// PublishIP and ReplicaAddr, when set, say that this node's isolated
	// replicas are published at PublishIP:port, which nftables translates
	// to ReplicaAddr(port). A VIP backend that is one of this node's
	// endpoints is programmed at ReplicaAddr(port) instead: the connection
	// then needs no translation, and sockmap redirection, keyed by both
	// ends' 4-tuples, pairs the caller with the replica.
	PublishIP   netip.Addr
	ReplicaAddr func(port int) netip.Addr
	// RetryInterval is how soon a failed step (a store conflict, a map
	// update) is tried again when no store change comes first. Default 1s.
	RetryInterval time.Duration
	// ActivateTimeout bounds one activation a wake event asks for. Default
	// 5s.
	ActivateTimeout time.Duration
	// StatsInterval is how often VIP load is reported, as a router reports
	// its own. Default 1s.
	StatsInterval time.Duration
}

// Defaults for Config.
const (
	DefaultRetryInterval   = time.Second
	DefaultActivateTimeout = 5 * time.Second
	DefaultStatsInterval   = time.Second
)

func (c Config) withDefaults() Config {
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.ActivateTimeout == 0 {
		c.ActivateTimeout = DefaultActivateTimeout
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = DefaultStatsInterval
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if err := api.ValidateName("bpfsync: node", c.Node); err != nil {
		return err
	}
	if c.RetryInterval < 0 || c.ActivateTimeout < 0 || c.StatsInterval < 0 {
		return errors.New("bpfsync: intervals must not be negative")
	}
	if c.ReplicaCIDR.IsValid() && !c.ReplicaCIDR.Addr().Is4() {
		return fmt.Errorf("bpfsync: replica CIDR %s: want IPv4", c.ReplicaCIDR)
	}
	if err := c.VIPs.Validate(); err != nil {
		return fmt.Errorf("bpfsync: %w", err)
	}
	return nil
}

func (c Config) vipPrefix() netip.Prefix {
	if !c.VIPs.VIPPrefix.IsValid() {
		return bpf.DefaultVIPPrefix
	}
	return c.VIPs.VIPPrefix
}

// vipRange is how many VIPs the configured range holds (bpf.Options.VIPFor
// skips the network and broadcast addresses).
func (c Config) vipRange() uint32 {
	return uint32(uint64(1)<<(32-c.vipPrefix().Bits())) - 2
}

// vipAddr is the VIP at index.
func (c Config) vipAddr(index uint32) (netip.AddrPort, error) { return c.VIPs.VIPFor(index) }
