package replicanet

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ebbrun/ebb/internal/netnscookie"
)

// Net is the replica network of one node: its bridge, its nftables table and
// one netns per replica. Its methods may run concurrently for different
// replica ids; calls for one id must not overlap (the node agent serialises
// a replica's life).
type Net struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	cookies   map[string]uint64 // replica id -> netns cookie, when cfg.Registry is set
	published map[string]uint16 // replica id -> its port in the published map, when cfg.PublishIP is set
	// inherited are the ports an earlier agent published, kept through
	// Setup's install until Adopt says which replicas remain, so a restart
	// does not cut other nodes off the replicas it keeps.
	inherited map[uint16]bool

	// nftMu orders changes of the table: a whole-table install carries the
	// published map's elements, so an element change must not slip between
	// its snapshot and its flush.
	nftMu sync.Mutex
}

// New checks cfg; it changes nothing on the host (see Setup).
func New(cfg Config) (*Net, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("replica network: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.OfferedPorts = append([]uint16(nil), cfg.OfferedPorts...)
	return &Net{cfg: cfg, log: log, cookies: map[string]uint64{}, published: map[string]uint16{}, inherited: map[uint16]bool{}}, nil
}

// InNamespace runs fn on a thread inside id's network namespace.
func (n *Net) InNamespace(id string, fn func() error) error {
	path := n.NetnsPath(id)
	if path == "" {
		return fmt.Errorf("replica %s has no network namespace", id)
	}
	return Do(path, fn)
}

// Config is the network's configuration, offered ports included.
func (n *Net) Config() Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	cfg := n.cfg
	cfg.OfferedPorts = append([]uint16(nil), n.cfg.OfferedPorts...)
	return cfg
}

// Offer lets replicas reach the gateway on ports as well, such as a
// listener bound after Setup made the gateway address, and installs the
// table again with them.
func (n *Net) Offer(ctx context.Context, ports ...uint16) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, p := range ports {
		if p == 0 {
			return errors.New("replica network: cannot offer port 0")
		}
	}
	n.mu.Lock()
	n.cfg.OfferedPorts = append(n.cfg.OfferedPorts, ports...)
	n.mu.Unlock()
	return n.install()
}

// install writes the whole table: n's policy and its published replicas.
func (n *Net) install() error {
	n.nftMu.Lock()
	defer n.nftMu.Unlock()
	cfg := n.Config()
	n.mu.Lock()
	elems := make(map[uint16]netip.Addr, len(n.published)+len(n.inherited))
	for port := range n.inherited {
		if a := n.cfg.Addr(int(port)); a.IsValid() {
			elems[port] = a
		}
	}
	for _, port := range n.published {
		elems[port] = n.cfg.Addr(int(port))
	}
	n.mu.Unlock()
	return installTable(cfg, elems)
}

// publish puts id's port in the published map (unpublish takes it out), if
// the node publishes replicas at all.
func (n *Net) publish(id string, port int) error {
	if !n.cfg.PublishIP.IsValid() {
		return nil
	}
	n.nftMu.Lock()
	defer n.nftMu.Unlock()
	if err := setPublished(n.cfg.Bridge, uint16(port), n.cfg.Addr(port)); err != nil {
		return err
	}
	n.mu.Lock()
	n.published[id] = uint16(port)
	n.mu.Unlock()
	return nil
}

func (n *Net) unpublish(id string) error {
	n.nftMu.Lock()
	defer n.nftMu.Unlock()
	n.mu.Lock()
	port, ok := n.published[id]
	n.mu.Unlock()
	if !ok {
		return nil
	}
	if err := setPublished(n.cfg.Bridge, port, netip.Addr{}); err != nil {
		return err
	}
	n.mu.Lock()
	delete(n.published, id)
	n.mu.Unlock()
	return nil
}

// Addr is where the replica that holds port serves.
func (n *Net) Addr(port int) netip.Addr { return n.cfg.Addr(port) }

// Gateway is the bridge's address.
func (n *Net) Gateway() netip.Addr { return n.cfg.Gateway() }

// NetnsPath is id's netns file, "" if there is none.
func (n *Net) NetnsPath(id string) string {
	if validID(id) != nil {
		return ""
	}
	p := filepath.Join(n.cfg.NetnsDir, id)
	if _, err := os.Lstat(p); err != nil {
		return ""
	}
	return p
}

// Setup makes (or adopts) the bridge with the gateway address, turns on IPv4
// forwarding and installs the nftables table, replacing an older one
// atomically. It may run again at any time.
func (n *Net) Setup(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.checkRoutes(); err != nil {
		return err
	}
	if err := sharedDir(n.cfg.NetnsDir); err != nil {
		return err
	}
	br, err := n.ensureBridge()
	if err != nil {
		return err
	}
	// Before the bridge is up, so it never gets an IPv6 link-local address.
	if err := writeSysctl("net/ipv6/conf/"+n.cfg.Bridge+"/disable_ipv6", "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if mac := bridgeMAC(n.cfg.Bridge); br.Attrs().HardwareAddr.String() != mac.String() {
		if err := netlink.LinkSetHardwareAddr(br, mac); err != nil {
			return fmt.Errorf("bridge %s address %s: %w", n.cfg.Bridge, mac, err)
		}
	}
	if err := n.ensureGateway(br); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge %s up: %w", n.cfg.Bridge, err)
	}
	fwd, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return fmt.Errorf("read ip_forward: %w", err)
	}
	if strings.TrimSpace(string(fwd)) != "1" {
		if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		n.log.Info("replica network: turned on net.ipv4.ip_forward for replica egress", "bridge", n.cfg.Bridge)
	}
	if n.cfg.PublishIP.IsValid() {
		ports, err := publishedPorts(n.cfg.Bridge)
		if err != nil {
			return err
		}
		n.mu.Lock()
		for _, p := range ports {
			n.inherited[p] = true
		}
		n.mu.Unlock()
	}
	if err := n.install(); err != nil {
		return err
	}
	n.log.Info("replica network ready", "bridge", n.cfg.Bridge, "cidr", n.cfg.CIDR, "gateway", n.cfg.Gateway(), "table", "inet "+TableName(n.cfg.Bridge), "publish_ip", n.cfg.PublishIP)
	return nil
}

// checkRoutes refuses a CIDR that overlaps a route of another interface: the
// bridge would shadow (or be shadowed by) a real network.
func (n *Net) checkRoutes() error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	var brIndex int
	if l, err := netlink.LinkByName(n.cfg.Bridge); err == nil {
		brIndex = l.Attrs().Index
	}
	for _, r := range routes {
		if r.Dst == nil || r.LinkIndex == brIndex && brIndex != 0 {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 {
			continue // a default route overlaps everything and is fine
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		if netip.PrefixFrom(a, ones).Overlaps(n.cfg.CIDR) {
			name := fmt.Sprint(r.LinkIndex)
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			return fmt.Errorf("replica CIDR %s overlaps route %s on %s", n.cfg.CIDR, r.Dst, name)
		}
	}
	return nil
}

// bridgeMAC is a fixed, locally administered address for the bridge. Left
// to itself a Linux bridge takes the lowest address of its ports, so it
// would change as replicas come and go, and every replica's ARP entry for
// the gateway would point at a gone address for seconds.
func bridgeMAC(bridge string) net.HardwareAddr {
	h := sha256.Sum256([]byte("ebb bridge " + bridge))
	return net.HardwareAddr{0x02, h[0], h[1], h[2], h[3], h[4]}
}

// replicaMAC is the replica's eth0 address, a function of its IPv4
// address. An address comes back as soon as its port does, and the host's
// neighbour table may still hold it for the last replica that had it: with
// a random MAC the new replica would get no frame until that entry expired
// (tens of seconds of failed probes); with this one the entry is right.
func replicaMAC(addr netip.Addr) net.HardwareAddr {
	a := addr.As4()
	return net.HardwareAddr{0x02, 0xeb, a[0], a[1], a[2], a[3]}
}

func (n *Net) ensureBridge() (netlink.Link, error) {
	l, err := netlink.LinkByName(n.cfg.Bridge)
	if err == nil {
		if l.Type() != "bridge" {
			return nil, fmt.Errorf("%s exists and is a %s, not a bridge", n.cfg.Bridge, l.Type())
		}
		return l, nil
	}
	if !isNotFound(err) {
		return nil, fmt.Errorf("look up bridge %s: %w", n.cfg.Bridge, err)
	}
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.cfg.Bridge}}); err != nil {
		return nil, fmt.Errorf("create bridge %s: %w", n.cfg.Bridge, err)
	}
	n.log.Info("replica network: created bridge", "bridge", n.cfg.Bridge)
	l, err = netlink.LinkByName(n.cfg.Bridge)
	if err != nil {
		return nil, fmt.Errorf("look up bridge %s: %w", n.cfg.Bridge, err)
	}
	return l, nil
}

// ensureGateway leaves the gateway as the bridge's only IPv4 address (an
// earlier run may have used another CIDR).
func (n *Net) ensureGateway(br netlink.Link) error {
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: n.cfg.Gateway().AsSlice(), Mask: net.CIDRMask(n.cfg.CIDR.Bits(), 32)}}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", n.cfg.Bridge, err)
	}
	for _, a := range addrs {
		if a.IPNet.String() != gw.IPNet.String() {
			if err := netlink.AddrDel(br, &a); err != nil {
				return fmt.Errorf("remove old address %s of %s: %w", a.IPNet, n.cfg.Bridge, err)
			}
		}
	}
	if err := netlink.AddrReplace(br, gw); err != nil {
		return fmt.Errorf("gateway address %s on %s: %w", gw.IPNet, n.cfg.Bridge, err)
	}
	return nil
}

// Prepare makes replica id's network namespace, its veth on the bridge and
// its address Addr(port), and returns the netns path to give the container.
// An existing network of id is released first. On error nothing is left.
func (n *Net) Prepare(ctx context.Context, id string, port int) (string, error) {
	if err := validID(id); err != nil {
		return "", err
	}
	addr := n.cfg.Addr(port)
	if !addr.IsValid() {
		return "", fmt.Errorf("replica %s: port %d outside %d-%d", id, port, n.cfg.PortMin, n.cfg.PortMax)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := n.Release(ctx, id); err != nil {
		return "", fmt.Errorf("replace network of %s: %w", id, err)
	}
	path, err := n.prepare(ctx, id, addr)
	if err == nil {
		err = n.publish(id, port)
	}
	if err != nil {
		if rerr := n.Release(context.WithoutCancel(ctx), id); rerr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", rerr))
		}
		return "", fmt.Errorf("prepare network of %s (port %d): %w", id, port, err)
	}
	return path, nil
}

func (n *Net) prepare(ctx context.Context, id string, addr netip.Addr) (string, error) {
	br, err := netlink.LinkByName(n.cfg.Bridge)
	if err != nil {
		return "", fmt.Errorf("bridge %s (did Setup run?): %w", n.cfg.Bridge, err)
	}
	if err := os.MkdirAll(n.cfg.NetnsDir, 0o755); err != nil {
		return "", fmt.Errorf("netns dir: %w", err)
	}
	path := filepath.Join(n.cfg.NetnsDir, id)
	if err := newNetns(path); err != nil {
		return "", err
	}
	ns, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open netns: %w", err)
	}
	defer ns.Close()
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: VethName(id), MasterIndex: br.Attrs().Index},
		PeerName:         "eth0",
		PeerHardwareAddr: replicaMAC(addr),
		PeerNamespace:    netlink.NsFd(int(ns.Fd())),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return "", fmt.Errorf("create veth %s: %w", veth.Name, err)
	}
	// Isolated before up: no frame ever passes to another replica.
	if err := netlink.LinkSetIsolated(veth, true); err != nil {
		return "", fmt.Errorf("isolate %s: %w", veth.Name, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return "", fmt.Errorf("%s up: %w", veth.Name, err)
	}
	var cookie uint64
	err = Do(path, func() error {
		var err error
		cookie, err = configureInside(addr, n.cfg.CIDR.Bits(), n.cfg.Gateway(), bridgeMAC(n.cfg.Bridge), n.cfg.Registry != nil)
		return err
	})
	if err != nil {
		return "", err
	}
	// Both ends know each other's link address from the start, so no
	// request waits on ARP: the first SYN of a cold start once waited a
	// second for a lost solicitation. Both addresses are functions of what
	// never changes (bridgeMAC, replicaMAC), so the entries are permanent;
	// the bridge's go with it.
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: br.Attrs().Index, Family: netlink.FAMILY_V4,
		State: netlink.NUD_PERMANENT, IP: addr.AsSlice(), HardwareAddr: replicaMAC(addr)}); err != nil {
		return "", fmt.Errorf("neighbour %s: %w", addr, err)
	}
	if err := waitReady(ctx, veth.Name, path); err != nil {
		return "", err
	}
	if n.cfg.Registry != nil {
		if err := n.cfg.Registry.AddReplicaNetns(cookie); err != nil {
			return "", fmt.Errorf("register netns cookie %d: %w", cookie, err)
		}
		n.mu.Lock()
		n.cookies[id] = cookie
		n.mu.Unlock()
	}
	return path, nil
}

// readyWithin bounds waitReady: the kernel applies a carrier change within
// milliseconds, so a longer wait means something is wrong.
const readyWithin = 5 * time.Second

// waitReady returns once both ends of the veth are operationally up and the
// host end forwards on the bridge. The kernel applies a carrier change
// asynchronously (linkwatch): until then the bridge port is disabled and the
// device drops what it sends, so the first packets (an ARP request, a SYN)
// would be lost and cost a one-second retransmission.
func waitReady(ctx context.Context, veth, netnsPath string) error {
	ctx, cancel := context.WithTimeout(ctx, readyWithin)
	defer cancel()
	for {
		ready, err := hostEndReady(veth)
		if err == nil && ready {
			err = Do(netnsPath, func() error {
				l, err := netlink.LinkByName("eth0")
				if err != nil {
					return err
				}
				ready = l.Attrs().OperState == netlink.OperUp
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("wait for %s: %w", veth, err)
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not forwarding after %v: %w", veth, readyWithin, ctx.Err())
		case <-time.After(200 * time.Microsecond):
		}
	}
}

// hostEndReady reports whether veth is up and forwarding on its bridge.
func hostEndReady(veth string) (bool, error) {
	l, err := netlink.LinkByName(veth)
	if err != nil {
		return false, err
	}
	if l.Attrs().OperState != netlink.OperUp {
		return false, nil
	}
	state, err := os.ReadFile("/sys/class/net/" + veth + "/brport/state")
	if err != nil {
		return false, fmt.Errorf("bridge port state: %w", err)
	}
	return strings.TrimSpace(string(state)) == brStateForwarding, nil
}

// brStateForwarding is BR_STATE_FORWARDING in brport/state.
const brStateForwarding = "3"

// configureInside runs in the replica's netns: it disables IPv6, lets the
// replica bind low ports in its own namespace, brings lo and eth0 up with
// addr and routes through gw. It returns the netns cookie if asked.
func configureInside(addr netip.Addr, bits int, gw netip.Addr, gwMAC net.HardwareAddr, wantCookie bool) (uint64, error) {
	for _, s := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6", "net/ipv6/conf/eth0/disable_ipv6"} {
		if err := writeSysctl(s, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
	}
	if err := writeSysctl("net/ipv4/ip_unprivileged_port_start", "0"); err != nil {
		return 0, err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return 0, fmt.Errorf("netlink in netns: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return 0, fmt.Errorf("lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return 0, fmt.Errorf("lo up: %w", err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return 0, fmt.Errorf("eth0: %w", err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(bits, 32)}}
	if err := h.AddrAdd(eth, a); err != nil {
		return 0, fmt.Errorf("address %s: %w", a.IPNet, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return 0, fmt.Errorf("eth0 up: %w", err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
		return 0, fmt.Errorf("default route via %s: %w", gw, err)
	}
	if err := h.NeighSet(&netlink.Neigh{LinkIndex: eth.Attrs().Index, Family: netlink.FAMILY_V4,
		State: netlink.NUD_PERMANENT, IP: gw.AsSlice(), HardwareAddr: gwMAC}); err != nil {
		return 0, fmt.Errorf("neighbour %s: %w", gw, err)
	}
	if !wantCookie {
		return 0, nil
	}
	return netnscookie.Current()
}

// Release removes id's network: its eBPF registration, its veth (the peer
// goes with it) and its netns file. A missing network is not an error.
func (n *Net) Release(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	path := filepath.Join(n.cfg.NetnsDir, id)
	var errs []error
	if err := n.unpublish(id); err != nil {
		errs = append(errs, err)
	}
	if n.cfg.Registry != nil {
		n.mu.Lock()
		cookie, ok := n.cookies[id]
		n.mu.Unlock()
		if !ok && isNetns(path) {
			err := Do(path, func() error {
				var err error
				cookie, err = netnscookie.Current()
				return err
			})
			ok = err == nil
			errs = append(errs, err)
		}
		if ok {
			if err := n.cfg.Registry.RemoveReplicaNetns(cookie); err != nil {
				errs = append(errs, fmt.Errorf("unregister netns cookie %d: %w", cookie, err))
			}
		}
		n.mu.Lock()
		delete(n.cookies, id)
		n.mu.Unlock()
	}
	if err := n.deleteVeth(VethName(id)); err != nil {
		errs = append(errs, err)
	}
	if err := removeNetns(path); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release network of %s: %w", id, err)
	}
	return nil
}

// deleteVeth deletes a replica veth that is on our bridge or on none; one on
// another bridge belongs to another node agent.
func (n *Net) deleteVeth(name string) error {
	l, err := netlink.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if m := l.Attrs().MasterIndex; m != 0 {
		br, err := netlink.LinkByName(n.cfg.Bridge)
		if err != nil || br.Attrs().Index != m {
			return nil
		}
	}
	if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// Adopt keeps the networks of ids, registering them again for eBPF, and
// releases every other netns file and replica veth of this node.
func (n *Net) Adopt(ctx context.Context, ids []string) error {
	keep := map[string]bool{}
	keepVeth := map[string]bool{}
	for _, id := range ids {
		keep[id] = true
		keepVeth[VethName(id)] = true
	}
	var errs []error
	entries, err := os.ReadDir(n.cfg.NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("adopt: %w", err)
	}
	found := map[string]bool{}
	var stale []string
	for _, e := range entries {
		id := e.Name()
		if !keep[id] {
			n.log.Info("replica network: releasing a netns without replica", "replica", id)
			stale = append(stale, id)
			continue
		}
		found[id] = true
		if err := n.adoptPublished(id); err != nil {
			errs = append(errs, fmt.Errorf("adopt %s: %w", id, err))
		}
		if n.cfg.Registry == nil {
			continue
		}
		var cookie uint64
		err := Do(filepath.Join(n.cfg.NetnsDir, id), func() error {
			var err error
			cookie, err = netnscookie.Current()
			return err
		})
		if err == nil {
			err = n.cfg.Registry.AddReplicaNetns(cookie)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("adopt %s: %w", id, err))
			continue
		}
		n.mu.Lock()
		n.cookies[id] = cookie
		n.mu.Unlock()
	}
	for _, id := range ids {
		if !found[id] {
			n.log.Warn("replica network: adopted replica has no netns file", "replica", id, "dir", n.cfg.NetnsDir)
		}
	}
	errs = append(errs, n.dropInherited())
	errs = append(errs, concurrently(stale, func(id string) error { return n.Release(ctx, id) }))
	veths, err := replicaVeths(n.cfg.Bridge)
	if err != nil {
		errs = append(errs, err)
	}
	var orphans []string
	for _, v := range veths {
		if !keepVeth[v] {
			orphans = append(orphans, v)
		}
	}
	errs = append(errs, concurrently(orphans, n.deleteVeth))
	return errors.Join(errs...)
}

// dropInherited unpublishes the ports an earlier agent published that no
// adopted replica holds now.
func (n *Net) dropInherited() error {
	n.nftMu.Lock()
	defer n.nftMu.Unlock()
	n.mu.Lock()
	held := map[uint16]bool{}
	for _, p := range n.published {
		held[p] = true
	}
	var drop []uint16
	for p := range n.inherited {
		if !held[p] {
			drop = append(drop, p)
		}
	}
	n.inherited = map[uint16]bool{}
	n.mu.Unlock()
	var errs []error
	for _, p := range drop {
		errs = append(errs, setPublished(n.cfg.Bridge, p, netip.Addr{}))
	}
	return errors.Join(errs...)
}

// adoptPublished publishes adopted replica id again at the port its
// address stands for (Setup's install started the map empty).
func (n *Net) adoptPublished(id string) error {
	if !n.cfg.PublishIP.IsValid() {
		return nil
	}
	var addr netip.Addr
	err := Do(filepath.Join(n.cfg.NetnsDir, id), func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && n.cfg.CIDR.Contains(ip) {
				addr = ip
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read replica address: %w", err)
	}
	port, ok := n.cfg.portOf(addr)
	if !ok {
		return fmt.Errorf("replica address %v is no replica port's", addr)
	}
	return n.publish(id, port)
}

// Teardown removes everything of this node's replica network: every netns
// file under the dir, every replica veth, the bridge and the nftables table.
// Nothing existing is fine.
func (n *Net) Teardown(ctx context.Context) error {
	var errs []error
	entries, err := os.ReadDir(n.cfg.NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.Name()
	}
	errs = append(errs, concurrently(ids, func(id string) error { return n.Release(ctx, id) }))
	veths, err := replicaVeths(n.cfg.Bridge)
	errs = append(errs, err, concurrently(veths, n.deleteVeth))
	if l, err := netlink.LinkByName(n.cfg.Bridge); err == nil && l.Type() == "bridge" {
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", n.cfg.Bridge, err))
		}
	}
	errs = append(errs, deleteTable(n.cfg.Bridge))
	// The dir's own mount (see sharedDir), then the dir if empty.
	if err := unix.Unmount(n.cfg.NetnsDir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount %s: %w", n.cfg.NetnsDir, err))
	}
	_ = os.Remove(n.cfg.NetnsDir)
	return errors.Join(errs...)
}

// releaseConcurrency bounds concurrently's goroutines. Deleting a veth
// mostly waits for the kernel (RCU grace periods, ~28 ms each), so deletes
// overlap well; a node of 10,000 replicas stops in seconds, not minutes.
const releaseConcurrency = 64

// concurrently runs fn on every item and joins the errors.
func concurrently(items []string, fn func(string) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, releaseConcurrency)
	)
	for _, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(it); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// replicaVeths lists the replica veths on bridge, and those on no bridge at
// all (orphans whose bridge is gone).
func replicaVeths(bridge string) ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	brIndex := -1
	for _, l := range links {
		if l.Attrs().Name == bridge {
			brIndex = l.Attrs().Index
		}
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		if l.Type() == "veth" && isVethName(a.Name) && (a.MasterIndex == 0 || a.MasterIndex == brIndex) {
			out = append(out, a.Name)
		}
	}
	return out, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
