package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/ebbrun/ebb/internal/netnscookie"
)

// Loader owns ebb's loaded and attached eBPF programs and their maps. Its
// methods are safe for concurrent use. Close detaches everything.
type Loader struct {
	opts   Options // with defaults
	cgroup string

	objs  ebbObjects
	inner *ebpf.MapSpec // template for a VIP's backend slots

	cgroupLinks []link.Link // sockops, connect4, getpeername4, in attach order
	skMsgLink   link.Link   // set when sk_msg is attached with a link
	skMsgRaw    bool        // set when it is attached with the legacy PROG_ATTACH

	vipMu sync.Mutex    // serializes the two-map updates of SetVIP and DeleteVIP
	epoch atomic.Uint64 // the last port_load epoch TrackPort handed out

	mu         sync.RWMutex // guards closed; held for reading around map use
	closed     bool
	reader     *ringbuf.Reader // set while RunWakeEvents runs
	readerBusy bool

	// drainStarted, if set, runs once Close has switched sends to TCP;
	// tests use it to act inside the grace period.
	drainStarted func()
}

// VIP is a function's virtual address and where connections to it go.
type VIP struct {
	// Addr is the VIP, inside Options.VIPPrefix.
	Addr netip.AddrPort
	// FunctionID identifies the function in wake events and
	// FallbackOrigin; the caller chooses it.
	FunctionID uint32
	// Backends are the function's ready replicas with their traffic
	// weights. None (or none with weight) makes the VIP cold: connects go
	// to the fallback and emit a wake event.
	Backends []Backend
}

// Origin is what a client connected to before connect4 sent it to the
// fallback listener.
type Origin struct {
	VIP        netip.AddrPort
	FunctionID uint32
}

// Stats are counters summed over CPUs since Load.
type Stats struct {
	SocketsInserted      uint64 // sockets put into the socket map
	SocketInsertFailures uint64 // e.g. the map was full
	MessagesRedirected   uint64 // sends that went straight to the peer socket
	BytesRedirected      uint64
	MessagesPassed       uint64 // sends on mapped sockets that used plain TCP
	SocketsLatchedPlain  uint64 // sockets whose peer was not mapped at their first send
	ConnectsToBackend    uint64 // VIP connects sent to a ready backend
	ConnectsToFallback   uint64 // host VIP connects sent to the fallback listener
	ConnectsFromReplicas uint64 // replicas' VIP connects sent to the replica fallback listener
	ConnectsNoFallback   uint64 // VIP connects left alone, no fallback (of their kind) set
	ConnectsUnknownVIP   uint64 // connects into the VIP range to no published VIP
	WakesEmitted         uint64
	WakesDropped         uint64 // the ring buffer was full
	PeernamesRewritten   uint64
	FlowsTracked         uint64 // connections to tracked ports followed for request accounting
	FlowTrackFailures    uint64 // such connections not followed, e.g. the flow map was full
}

// Load loads the programs, attaches sockops, connect4 and getpeername4 to the
// cgroup and sk_msg to the socket map. It returns an *UnavailableError when
// the machine cannot run them (see Probe).
func Load(opts Options) (*Loader, error) {
	opts = opts.withDefaults()
	cg, err := probe(opts)
	if err != nil {
		return nil, err
	}
	opts.CgroupPath = cg

	spec, err := loadEbb()
	if err != nil {
		return nil, fmt.Errorf("read embedded bpf object: %w", err)
	}
	if err := configureSpec(spec, opts); err != nil {
		return nil, err
	}
	inner := spec.Maps[ebbMapVipBackends].InnerMap
	if inner == nil {
		return nil, errors.New("bpf object: vip_backends has no inner map")
	}

	l := &Loader{opts: opts, cgroup: cg, inner: inner.Copy()}
	if err := spec.LoadAndAssign(&l.objs, nil); err != nil {
		return nil, unavailable("load programs", err)
	}
	if err := l.attach(); err != nil {
		_ = l.Close()
		return nil, unavailable("attach programs", err)
	}
	return l, nil
}

func unavailable(what string, err error) error {
	return &UnavailableError{Reasons: []string{fmt.Sprintf("%s: %v", what, err)}, Err: err}
}

func configureSpec(spec *ebpf.CollectionSpec, opts Options) error {
	p := opts.VIPPrefix.Masked()
	netBytes := p.Addr().As4()
	mask := ^uint32(0) << (32 - p.Bits())
	var maskBytes [4]byte
	binary.BigEndian.PutUint32(maskBytes[:], mask)
	cookie, err := netnscookie.Current()
	if err != nil {
		return err
	}
	// The program compares the address as the kernel stores it, in network
	// byte order, so the range is those bytes read natively.
	for name, v := range map[string]any{
		ebbVarVipNet:      binary.NativeEndian.Uint32(netBytes[:]),
		ebbVarVipMask:     binary.NativeEndian.Uint32(maskBytes[:]),
		ebbVarNetnsCookie: cookie,
	} {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("bpf object: no variable %s", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	for name, n := range map[string]uint32{
		ebbMapVips:        opts.MaxVIPs,
		ebbMapVipBackends: opts.MaxVIPs,
		ebbMapSockMap:     opts.MaxSockets,
		ebbMapWakeEvents:  opts.WakeBufferBytes,
	} {
		ms, ok := spec.Maps[name]
		if !ok {
			return fmt.Errorf("bpf object: no map %s", name)
		}
		ms.MaxEntries = n
	}
	return nil
}

func (l *Loader) attach() error {
	// sk_msg first, so that a socket is never in the map without its
	// verdict program; then sockops, which fills the map.
	lk, err := link.AttachRawLink(link.RawLinkOptions{
		Target:  l.objs.SockMap.FD(),
		Program: l.objs.EbbSkMsg,
		Attach:  ebpf.AttachSkMsgVerdict,
	})
	if err == nil {
		l.skMsgLink = lk
	} else {
		// Kernels before 6.10 have no links for sockmap programs.
		if err := link.RawAttachProgram(link.RawAttachProgramOptions{
			Target:  l.objs.SockMap.FD(),
			Program: l.objs.EbbSkMsg,
			Attach:  ebpf.AttachSkMsgVerdict,
		}); err != nil {
			return fmt.Errorf("attach sk_msg to socket map: %w", err)
		}
		l.skMsgRaw = true
	}

	for _, a := range []struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
	}{
		{l.objs.EbbSockops, ebpf.AttachCGroupSockOps},
		{l.objs.EbbConnect4, ebpf.AttachCGroupInet4Connect},
		{l.objs.EbbPeername4, ebpf.AttachCgroupInet4GetPeername},
	} {
		// Cgroup links detach by themselves if the process dies, so a
		// crashed ebbd leaves nothing behind.
		lk, err := link.AttachCgroup(link.CgroupOptions{Path: l.cgroup, Attach: a.typ, Program: a.prog})
		if err != nil {
			return fmt.Errorf("attach %s to %s: %w", a.typ, l.cgroup, err)
		}
		l.cgroupLinks = append(l.cgroupLinks, lk)
	}
	return nil
}

// Close detaches every program, removes every socket from the socket map and
// unloads everything. Connections keep working over plain TCP. Before taking
// the sockets out it switches all sends back to TCP and waits
// Options.CloseGrace for receivers to read what was already redirected to
// them; the kernel drops redirected data still unread after that. Close also
// ends a running RunWakeEvents. Calling it again does nothing.
func (l *Loader) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.reader != nil {
		_ = l.reader.Close()
	}

	var errs []error
	// Stop new sockets and new VIP rewrites first (reverse attach order),
	// then drain and take the mapped sockets out, and only then drop the
	// verdict program: a socket still in the map keeps the program it was
	// added with.
	for i := len(l.cgroupLinks) - 1; i >= 0; i-- {
		if err := l.cgroupLinks[i].Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach cgroup program: %w", err))
		}
	}
	if l.objs.SockMap != nil {
		if err := l.drain(); err != nil {
			errs = append(errs, err)
		}
		if err := emptyMap(l.objs.SockMap); err != nil {
			errs = append(errs, fmt.Errorf("empty socket map: %w", err))
		}
	}
	if l.skMsgLink != nil {
		if err := l.skMsgLink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach sk_msg: %w", err))
		}
	} else if l.skMsgRaw {
		err := link.RawDetachProgram(link.RawDetachProgramOptions{
			Target:  l.objs.SockMap.FD(),
			Program: l.objs.EbbSkMsg,
			Attach:  ebpf.AttachSkMsgVerdict,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("detach sk_msg: %w", err))
		}
	}
	if err := l.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close bpf objects: %w", err))
	}
	return errors.Join(errs...)
}

// drain stops redirection and, if any socket is mapped, gives receivers
// CloseGrace to read what is queued.
func (l *Loader) drain() error {
	if err := l.objs.Draining.Update(uint32(0), uint32(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("stop redirecting: %w", err)
	}
	if l.drainStarted != nil {
		l.drainStarted()
	}
	var k ebbSockKey
	if err := l.objs.SockMap.NextKey(nil, &k); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	if l.opts.CloseGrace > 0 {
		time.Sleep(l.opts.CloseGrace) // the kernel cannot tell when queues are empty
	}
	return nil
}

func emptyMap(m *ebpf.Map) error {
	var keys []ebbSockKey
	var k ebbSockKey
	var v uint64
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	// A socket that closes during the walk leaves the map by itself.
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

var errClosed = errors.New("bpf loader is closed")

// use runs f with the maps, unless the loader is closed.
func (l *Loader) use(f func() error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return errClosed
	}
	return f()
}

// Status is a one-line summary for the node status, e.g.
// "on: socket redirect, VIPs 127.77.0.0/16, wake-on-connect (cgroup /sys/fs/cgroup/unified)".
func (l *Loader) Status() string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return "off: stopped"
	}
	return fmt.Sprintf("on: socket redirect, VIPs %s, wake-on-connect (cgroup %s)", l.opts.VIPPrefix, l.cgroup)
}

// CgroupPath is the cgroup the programs are attached to.
func (l *Loader) CgroupPath() string { return l.cgroup }

// ProgramIDs are the kernel ids of the loaded programs, for matching them
// against bpftool's output.
func (l *Loader) ProgramIDs() ([]ebpf.ProgramID, error) {
	var ids []ebpf.ProgramID
	err := l.use(func() error {
		for _, p := range []*ebpf.Program{l.objs.EbbSockops, l.objs.EbbSkMsg, l.objs.EbbConnect4, l.objs.EbbPeername4} {
			info, err := p.Info()
			if err != nil {
				return fmt.Errorf("program info: %w", err)
			}
			id, ok := info.ID()
			if !ok {
				return errors.New("program info: kernel reports no id")
			}
			ids = append(ids, id)
		}
		return nil
	})
	return ids, err
}

// AllowPort makes new TCP connections whose local or remote port is port
// eligible for redirection: the router's listener and each replica's port.
func (l *Loader) AllowPort(port uint16) error {
	if port == 0 {
		return errors.New("allow port 0: not a port")
	}
	return l.use(func() error {
		if err := l.objs.AllowedPorts.Update(uint32(port), uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("allow port %d: %w", port, err)
		}
		return nil
	})
}

// DisallowPort stops redirecting new connections on port. Established
// redirected connections keep their redirection until they close: taking a
// socket out of the map would drop data queued on it.
func (l *Loader) DisallowPort(port uint16) error {
	return l.use(func() error {
		if err := l.objs.AllowedPorts.Delete(uint32(port)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("disallow port %d: %w", port, err)
		}
		return nil
	})
}

// RedirectedSockets is how many sockets the socket map holds now.
func (l *Loader) RedirectedSockets() (int, error) {
	n := 0
	err := l.use(func() error {
		var k ebbSockKey
		var v uint64
		it := l.objs.SockMap.Iterate()
		for it.Next(&k, &v) {
			n++
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("count sockets: %w", err)
		}
		return nil
	})
	return n, err
}

// SetVIP publishes a VIP or replaces its function id and backends. The
// backend set changes atomically: a concurrent connect sees the old set or
// the new one, never a mix.
func (l *Loader) SetVIP(v VIP) error {
	key, err := l.vipKey(v.Addr)
	if err != nil {
		return err
	}
	slots, err := fillSlots(v.Backends)
	if err != nil {
		return fmt.Errorf("set vip %s: %w", v.Addr, err)
	}
	l.vipMu.Lock()
	defer l.vipMu.Unlock()
	return l.use(func() error {
		if err := l.objs.Vips.Update(key, ebbVipInfo{FunctionId: v.FunctionID}, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set vip %s: %w", v.Addr, err)
		}
		if slots == nil {
			if err := l.objs.VipBackends.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("set vip %s cold: %w", v.Addr, err)
			}
			return nil
		}
		table, err := ebpf.NewMap(l.inner)
		if err != nil {
			return fmt.Errorf("set vip %s: create slot table: %w", v.Addr, err)
		}
		// The outer map keeps its own reference.
		defer table.Close()
		for i, b := range slots {
			if err := table.Update(uint32(i), toAddr4(b), ebpf.UpdateAny); err != nil {
				return fmt.Errorf("set vip %s: fill slot %d: %w", v.Addr, i, err)
			}
		}
		if err := l.objs.VipBackends.Update(key, table, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set vip %s: publish slot table: %w", v.Addr, err)
		}
		return nil
	})
}

// DeleteVIP unpublishes a VIP; connects to it are no longer rewritten.
func (l *Loader) DeleteVIP(addr netip.AddrPort) error {
	key, err := l.vipKey(addr)
	if err != nil {
		return err
	}
	l.vipMu.Lock()
	defer l.vipMu.Unlock()
	return l.use(func() error {
		for _, m := range []*ebpf.Map{l.objs.VipBackends, l.objs.Vips} {
			if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("delete vip %s: %w", addr, err)
			}
		}
		return nil
	})
}

func (l *Loader) vipKey(addr netip.AddrPort) (ebbAddr4, error) {
	if !addr.Addr().Is4() || addr.Port() == 0 || !l.opts.VIPPrefix.Contains(addr.Addr()) {
		return ebbAddr4{}, fmt.Errorf("vip %s: want an address in %s with a port", addr, l.opts.VIPPrefix)
	}
	return toAddr4(addr), nil
}

// SetFallback sets where host processes' connects to cold VIPs go: the
// activator's local listener. The zero AddrPort clears it; cold connects
// are then refused.
func (l *Loader) SetFallback(addr netip.AddrPort) error {
	return l.setFallback(ebbFallbackSlotFALLBACK_HOST, "fallback", addr)
}

// SetReplicaFallback sets where connects to any VIP from a registered
// replica network namespace go (see AddReplicaNetns): a listener the
// replicas can reach, on the node bridge's gateway address. Replicas cannot
// reach one another, so their VIP connects never go to a backend directly;
// a cold VIP still raises a wake event. The zero AddrPort clears it;
// replicas' VIP connects are then refused.
func (l *Loader) SetReplicaFallback(addr netip.AddrPort) error {
	return l.setFallback(ebbFallbackSlotFALLBACK_REPLICA, "replica fallback", addr)
}

func (l *Loader) setFallback(slot ebbFallbackSlot, what string, addr netip.AddrPort) error {
	var v ebbAddr4
	if addr.IsValid() {
		if !addr.Addr().Is4() || addr.Port() == 0 {
			return fmt.Errorf("%s %s: want an IPv4 address and a port", what, addr)
		}
		v = toAddr4(addr)
	}
	return l.use(func() error {
		if err := l.objs.Fallback.Update(uint32(slot), v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set %s %s: %w", what, addr, err)
		}
		return nil
	})
}

// AddReplicaNetns registers the network namespace whose SO_NETNS_COOKIE is
// cookie as a replica's: its sockets count as the loader's own (connections
// between the host and the replica's address are redirected and accounted;
// its loopback connections are left alone), and its VIP connects go to the
// replica fallback. Adding a registered namespace again is not an error.
func (l *Loader) AddReplicaNetns(cookie uint64) error {
	if cookie == 0 {
		return errors.New("add replica netns: cookie 0 is no namespace")
	}
	return l.use(func() error {
		if err := l.objs.ReplicaNetns.Update(cookie, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add replica netns %d: %w", cookie, err)
		}
		return nil
	})
}

// RemoveReplicaNetns forgets a replica's network namespace; new sockets
// and connects in it are left alone. Removing an unknown one is not an
// error.
func (l *Loader) RemoveReplicaNetns(cookie uint64) error {
	return l.use(func() error {
		if err := l.objs.ReplicaNetns.Delete(cookie); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove replica netns %d: %w", cookie, err)
		}
		return nil
	})
}

// FallbackOrigin tells a fallback listener (the host's or the replicas')
// which VIP a connection it accepted was meant for. client is the accepted
// connection's remote address: a loopback address for a host process, the
// replica's address for a replica. ok is false when the connection did not
// come through a VIP.
func (l *Loader) FallbackOrigin(client netip.AddrPort) (o Origin, ok bool, err error) {
	if !client.Addr().Unmap().Is4() {
		return Origin{}, false, nil
	}
	key := toAddr4(netip.AddrPortFrom(client.Addr().Unmap(), client.Port()))
	err = l.use(func() error {
		var fc ebbFallbackConn
		if err := l.objs.FallbackConns.Lookup(key, &fc); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil
			}
			return fmt.Errorf("fallback origin of %s: %w", client, err)
		}
		o = Origin{VIP: fromAddr4(fc.Vip), FunctionID: fc.FunctionId}
		ok = true
		return nil
	})
	return o, ok, err
}

// Stats reads the counters.
func (l *Loader) Stats() (Stats, error) {
	var s Stats
	err := l.use(func() error {
		var err error
		s, err = l.readStats()
		return err
	})
	return s, err
}

func (l *Loader) readStats() (Stats, error) {
	var s Stats
	fields := []struct {
		stat ebbStat
		dst  *uint64
	}{
		{ebbStatSTAT_SOCK_INSERTED, &s.SocketsInserted},
		{ebbStatSTAT_SOCK_INSERT_FAILED, &s.SocketInsertFailures},
		{ebbStatSTAT_MSG_REDIRECTED, &s.MessagesRedirected},
		{ebbStatSTAT_MSG_REDIRECTED_BYTES, &s.BytesRedirected},
		{ebbStatSTAT_MSG_PASSED, &s.MessagesPassed},
		{ebbStatSTAT_MSG_LATCHED_PLAIN, &s.SocketsLatchedPlain},
		{ebbStatSTAT_CONNECT_BACKEND, &s.ConnectsToBackend},
		{ebbStatSTAT_CONNECT_FALLBACK, &s.ConnectsToFallback},
		{ebbStatSTAT_CONNECT_REPLICA_FALLBACK, &s.ConnectsFromReplicas},
		{ebbStatSTAT_CONNECT_NO_FALLBACK, &s.ConnectsNoFallback},
		{ebbStatSTAT_CONNECT_UNKNOWN_VIP, &s.ConnectsUnknownVIP},
		{ebbStatSTAT_WAKE_EMITTED, &s.WakesEmitted},
		{ebbStatSTAT_WAKE_DROPPED, &s.WakesDropped},
		{ebbStatSTAT_PEERNAME_REWRITTEN, &s.PeernamesRewritten},
		{ebbStatSTAT_FLOW_TRACKED, &s.FlowsTracked},
		{ebbStatSTAT_FLOW_TRACK_FAILED, &s.FlowTrackFailures},
	}
	var perCPU []uint64
	for _, f := range fields {
		if err := l.objs.Stats.Lookup(uint32(f.stat), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("read stat %d: %w", f.stat, err)
		}
		for _, n := range perCPU {
			*f.dst += n
		}
	}
	return s, nil
}

// toAddr4 encodes addr as the programs store it: the address in network byte
// order, the port in host byte order.
func toAddr4(addr netip.AddrPort) ebbAddr4 {
	b := addr.Addr().As4()
	return ebbAddr4{Addr: binary.NativeEndian.Uint32(b[:]), Port: addr.Port()}
}

func fromAddr4(a ebbAddr4) netip.AddrPort {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], a.Addr)
	return netip.AddrPortFrom(netip.AddrFrom4(b), a.Port)
}
