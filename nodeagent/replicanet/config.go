package replicanet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
)

// Registry learns which network namespaces hold replicas, so that eBPF
// programs count their sockets as ours. *bpf.Loader implements it.
type Registry interface {
	AddReplicaNetns(cookie uint64) error
	RemoveReplicaNetns(cookie uint64) error
}

// Config is the network of one node agent.
type Config struct {
	// Bridge is the node bridge's name, a Linux interface name.
	Bridge string
	// CIDR holds the gateway (base + 1) and one address per replica port
	// (base + 2 + port - PortMin). IPv4 and private.
	CIDR netip.Prefix
	// PortMin and PortMax bound the replica ports, as the node's port
	// allocator does.
	PortMin, PortMax int
	// NetnsDir holds one netns file per replica, named by replica id. The
	// Net owns it: every file in it is one of its replicas.
	NetnsDir string
	// OfferedPorts are the TCP ports on the gateway address that replicas
	// may reach: the router's port and the replica fallback port.
	OfferedPorts []uint16
	// PublishIP, if set, is the node's own address, where each replica is
	// published at PublishIP:port as well: connections to it from other
	// hosts, and from the node itself, are translated (DNAT) to the
	// replica's bridge address, which no other host can reach. IPv4, not
	// loopback, outside CIDR. Unset on a single machine (host IP 127.0.0.1).
	PublishIP netip.Addr
	// Registry, if set, is told every replica netns's cookie.
	Registry Registry
	// Log receives what Setup changes on the host (nil: discarded).
	Log *slog.Logger
}

// privateRanges are where a replica CIDR may lie: a public range would shadow
// real hosts for every process of the node.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
}

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	if err := validIfname(c.Bridge); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if isVethName(c.Bridge) {
		return fmt.Errorf("bridge %q: names like eb<12 hex> are replica veths", c.Bridge)
	}
	if c.PortMin < 1 || c.PortMax > 65535 || c.PortMin > c.PortMax {
		return fmt.Errorf("replica ports %d-%d: want 1 <= min <= max <= 65535", c.PortMin, c.PortMax)
	}
	if err := c.validCIDR(); err != nil {
		return err
	}
	if !filepath.IsAbs(c.NetnsDir) || filepath.Clean(c.NetnsDir) != c.NetnsDir || c.NetnsDir == "/" {
		return fmt.Errorf("netns dir %q: want a clean absolute path other than /", c.NetnsDir)
	}
	if a := c.PublishIP; a.IsValid() && (!a.Is4() || a.IsLoopback() || a.IsUnspecified() || c.CIDR.Contains(a)) {
		return fmt.Errorf("publish address %s: want an IPv4 address of the node, not loopback and outside %s", a, c.CIDR)
	}
	for _, p := range c.OfferedPorts {
		if p == 0 {
			return errors.New("offered port 0")
		}
	}
	return nil
}

func (c Config) validCIDR() error {
	p := c.CIDR
	if !p.IsValid() {
		return errors.New("replica CIDR missing or invalid")
	}
	if !p.Addr().Is4() {
		return fmt.Errorf("replica CIDR %s: want IPv4", p)
	}
	if p.Masked() != p {
		return fmt.Errorf("replica CIDR %s: not a network address (did you mean %s?)", p, p.Masked())
	}
	private := false
	for _, r := range privateRanges {
		if r.Contains(p.Addr()) && p.Bits() >= r.Bits() {
			private = true
		}
	}
	if !private {
		return fmt.Errorf("replica CIDR %s: want a private range (10/8, 172.16/12, 192.168/16, 100.64/10)", p)
	}
	// network + gateway + broadcast + one address per port.
	need := uint64(c.PortMax-c.PortMin+1) + 3
	if p.Bits() > 30 || uint64(1)<<(32-p.Bits()) < need {
		return fmt.Errorf("replica CIDR %s too small for %d replica ports (needs %d addresses)", p, c.PortMax-c.PortMin+1, need)
	}
	return nil
}

// Addr is where the replica that holds port serves; the zero Addr if port
// is outside PortMin-PortMax.
func (c Config) Addr(port int) netip.Addr {
	if port < c.PortMin || port > c.PortMax {
		return netip.Addr{}
	}
	return addOffset(c.CIDR.Addr(), uint32(2+port-c.PortMin))
}

// portOf is the replica port whose address is addr; false if addr is none.
func (c Config) portOf(addr netip.Addr) (int, bool) {
	if !addr.Is4() || !c.CIDR.Contains(addr) {
		return 0, false
	}
	b, base := addr.As4(), c.CIDR.Addr().As4()
	off := int(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])) -
		int(uint32(base[0])<<24|uint32(base[1])<<16|uint32(base[2])<<8|uint32(base[3]))
	port := c.PortMin + off - 2
	if port < c.PortMin || port > c.PortMax {
		return 0, false
	}
	return port, true
}

// Gateway is the bridge's address, where replicas reach the offered ports.
func (c Config) Gateway() netip.Addr { return addOffset(c.CIDR.Addr(), 1) }

// TableName is the nftables table (family inet) of the bridge.
func TableName(bridge string) string { return "ebb-" + bridge }

// VethName is the host end of replica id's veth: "eb" and 12 hex digits of
// a hash of id, as an interface name holds at most 15 bytes. Ids differ in
// 48 bits of hash, so two replicas of a node collide with negligible odds.
func VethName(id string) string {
	h := sha256.Sum256([]byte(id))
	return "eb" + hex.EncodeToString(h[:6])
}

// isVethName reports whether name is shaped as VethName makes them.
func isVethName(name string) bool {
	if len(name) != 14 || !strings.HasPrefix(name, "eb") {
		return false
	}
	for _, r := range name[2:] {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

func addOffset(a netip.Addr, off uint32) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += off
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// validIfname accepts what the kernel's dev_valid_name does, restricted to
// the characters every tool quotes safely.
func validIfname(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("interface name %q: want 1 to 15 bytes", name)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("interface name %q is reserved", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("interface name %q: only letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// validID accepts a replica id that names a file directly under NetnsDir.
func validID(id string) error {
	if id == "" || len(id) > 255 || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("replica id %q cannot name a netns file", id)
	}
	return nil
}
