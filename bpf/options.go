package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// VIPSlots is how many slots each VIP's backend table has. Backends get slots
// in proportion to their weights, and each connect picks a slot at random, so
// weights are honoured to 1% and a VIP can have at most VIPSlots backends.
const VIPSlots = 100

// Options configures Load. The zero value is valid and means the defaults
// documented on each field.
type Options struct {
	// CgroupPath is the cgroup2 directory the programs attach to. Sockets
	// of processes in it and below it are affected. Empty means the root
	// of the cgroup2 mount found in /proc/self/mountinfo.
	CgroupPath string

	// VIPPrefix is the IPv4 range of function VIPs; connect() to an
	// address outside it is never touched. It must lie in 127.0.0.0/8.
	// The zero value means 127.77.0.0/16.
	VIPPrefix netip.Prefix

	// VIPPort is the port VIPFor hands out. Zero means 80.
	VIPPort uint16

	// MaxVIPs bounds how many VIPs can be published. Zero means 16384.
	MaxVIPs uint32

	// MaxSockets bounds how many redirected sockets (two per connection)
	// the socket map holds; sockets beyond it use plain TCP. Zero means
	// 65536.
	MaxSockets uint32

	// WakeBufferBytes is the size of the wake-event ring buffer, a power of
	// two multiple of the page size. Zero means 256 KiB, room for 8192
	// events the reader has not consumed yet.
	WakeBufferBytes uint32

	// CloseGrace is how long Close lets receivers read data already
	// redirected to them, after it has switched all sends back to TCP and
	// before it takes the sockets out of the socket map: the kernel drops
	// redirected data that is still unread then. Zero means 100ms; a
	// negative value means no wait.
	CloseGrace time.Duration
}

// Defaults for the zero fields of Options.
var (
	DefaultVIPPrefix = netip.MustParsePrefix("127.77.0.0/16")
)

const (
	DefaultVIPPort         = 80
	DefaultMaxVIPs         = 16384
	DefaultMaxSockets      = 65536
	DefaultWakeBufferBytes = 256 * 1024
	DefaultCloseGrace      = 100 * time.Millisecond
)

var loopback = netip.MustParsePrefix("127.0.0.0/8")

// withDefaults returns o with its zero fields set to their defaults. It does
// not resolve CgroupPath, which needs the file system.
func (o Options) withDefaults() Options {
	if !o.VIPPrefix.IsValid() {
		o.VIPPrefix = DefaultVIPPrefix
	}
	if o.VIPPort == 0 {
		o.VIPPort = DefaultVIPPort
	}
	if o.MaxVIPs == 0 {
		o.MaxVIPs = DefaultMaxVIPs
	}
	if o.MaxSockets == 0 {
		o.MaxSockets = DefaultMaxSockets
	}
	if o.WakeBufferBytes == 0 {
		o.WakeBufferBytes = DefaultWakeBufferBytes
	}
	if o.CloseGrace == 0 {
		o.CloseGrace = DefaultCloseGrace
	}
	return o
}

// Validate reports whether the options, after defaults, are usable.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	p := o.VIPPrefix
	switch {
	case !p.Addr().Is4():
		errs = append(errs, fmt.Errorf("vip prefix %s: must be IPv4", p))
	case p != p.Masked():
		errs = append(errs, fmt.Errorf("vip prefix %s: host bits set, want %s", p, p.Masked()))
	case p.Bits() < loopback.Bits() || !loopback.Contains(p.Addr()):
		errs = append(errs, fmt.Errorf("vip prefix %s: must lie in %s", p, loopback))
	case p.Bits() > 30:
		errs = append(errs, fmt.Errorf("vip prefix %s: too small, want at most /30", p))
	}
	if o.WakeBufferBytes&(o.WakeBufferBytes-1) != 0 || o.WakeBufferBytes < 4096 {
		errs = append(errs, fmt.Errorf("wake buffer %d bytes: want a power of two of at least 4096", o.WakeBufferBytes))
	}
	return errors.Join(errs...)
}

// VIPFor returns the n-th VIP of the range (n from 0), skipping the network
// address, on VIPPort. The caller (the control plane) stores which n a
// function got, so that the VIP stays the same across restarts and nodes.
func (o Options) VIPFor(n uint32) (netip.AddrPort, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return netip.AddrPort{}, err
	}
	size := uint64(1) << (32 - o.VIPPrefix.Bits())
	// The network and broadcast addresses are skipped to avoid surprising
	// tools that treat them specially.
	if uint64(n) >= size-2 {
		return netip.AddrPort{}, fmt.Errorf("vip %d: range %s holds %d", n, o.VIPPrefix, size-2)
	}
	base := o.VIPPrefix.Addr().As4()
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v += n + 1
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), o.VIPPort), nil
}
