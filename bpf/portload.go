package bpf

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// PortLoad is the request load on one tracked port, a replica's, as the
// programs account it from the sends on each connection to it: a client's
// send on an idle connection opens a request, and the replica's first send
// back answers it. A streamed response therefore counts until its first
// byte, not its last.
//
// Socket redirection hides these connections' data from tcp_info, and VIP
// connections skip every router, so this is the only place either is seen.
type PortLoad struct {
	// Open is how many requests wait for their answer now, from any
	// client: a router, the activator or a VIP caller.
	Open int
	// VIPRequests counts the requests that came through a VIP since the
	// port was tracked.
	VIPRequests uint64
	// VIPBusy is the request-time of those requests: the sum of each one's
	// time from request to answer, with open ones counted up to the read.
	// Its growth over an interval, divided by the interval, is the average
	// VIP concurrency.
	VIPBusy time.Duration
	// VIPOpen is how many VIP requests wait for their answer now.
	VIPOpen int
}

// TrackPort starts (or restarts, with zeroed counters) accounting the
// requests to port. The port must also be allowed (AllowPort): only
// connections the programs see established are followed.
func (l *Loader) TrackPort(port uint16) error {
	if port == 0 {
		return errors.New("track port 0: not a port")
	}
	now := uint64(monotonicNow())
	return l.use(func() error {
		// A new epoch makes requests opened before this forget to
		// decrement the fresh counters when they are answered.
		v := ebbPortLoad{Epoch: l.epoch.Add(1), TrackedNs: now}
		if err := l.objs.PortLoads.Update(uint32(port), v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("track port %d: %w", port, err)
		}
		return nil
	})
}

// UntrackPort stops accounting the requests to port.
func (l *Loader) UntrackPort(port uint16) error {
	return l.use(func() error {
		if err := l.objs.PortLoads.Delete(uint32(port)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("untrack port %d: %w", port, err)
		}
		return nil
	})
}

// OpenRequests is how many requests to port wait for their answer, from any
// client; tracked is false if port is not tracked.
func (l *Loader) OpenRequests(port uint16) (open int, tracked bool, err error) {
	err = l.use(func() error {
		var raw ebbPortLoad
		err := l.objs.PortLoads.Lookup(uint32(port), &raw)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read port %d load: %w", port, err)
		}
		open, tracked = clampCount(raw.Open), true
		return nil
	})
	return open, tracked, err
}

// PortLoads reads the load of every tracked port.
func (l *Loader) PortLoads() (map[uint16]PortLoad, error) {
	out := map[uint16]PortLoad{}
	err := l.use(func() error {
		var (
			port uint32
			raw  ebbPortLoad
		)
		it := l.objs.PortLoads.Iterate()
		for it.Next(&port, &raw) {
			load, err := l.readLoad(port, raw)
			if err != nil {
				return err
			}
			out[uint16(port)] = load
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("read port loads: %w", err)
		}
		return nil
	})
	return out, err
}

// readLoad converts raw, re-reading the port while its open-request fields
// are caught between two of a program's updates.
func (l *Loader) readLoad(port uint32, raw ebbPortLoad) (PortLoad, error) {
	const attempts = 4
	for i := 0; ; i++ {
		load, consistent := portLoadAt(raw, uint64(monotonicNow()))
		if consistent || i == attempts-1 {
			return load, nil
		}
		if err := l.objs.PortLoads.Lookup(port, &raw); errors.Is(err, ebpf.ErrKeyNotExist) {
			return load, nil // untracked meanwhile; what was read is all there is
		} else if err != nil {
			return PortLoad{}, fmt.Errorf("read port %d load: %w", port, err)
		}
	}
}

// portLoadAt converts raw counters read at now (bpf_ktime_get_ns time).
// The programs update a port's fields one atomic add at a time, so a read
// can land between two adds of one request. That shows as open request-time
// outside what is possible, 0 to vip_open × (now − tracked); consistent is
// false then, and the open part is left out.
func portLoadAt(raw ebbPortLoad, now uint64) (load PortLoad, consistent bool) {
	load = PortLoad{
		Open:        clampCount(raw.Open),
		VIPRequests: raw.VipRequests,
		VIPOpen:     clampCount(raw.VipOpen),
	}
	// Unsigned arithmetic wraps the same way the programs' adds did.
	open := int64(raw.VipOpen*now - raw.VipOpenStartNs)
	limit := int64(load.VIPOpen) * int64(now-raw.TrackedNs)
	consistent = open >= 0 && open <= limit && now >= raw.TrackedNs
	if !consistent {
		open = 0
	}
	load.VIPBusy = time.Duration(raw.VipBusyNs + uint64(open))
	return load, consistent
}

// clampCount reads a counter the programs add ±1 to; a read between two
// adds of different flows can see it briefly below zero.
func clampCount(v uint64) int {
	if int64(v) < 0 {
		return 0
	}
	return int(v)
}
