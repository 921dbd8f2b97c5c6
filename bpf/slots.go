package bpf

import (
	"fmt"
	"net/netip"
	"sort"
)

// Backend is one ready replica behind a VIP.
type Backend struct {
	// Addr is where the replica listens, an IPv4 address and port.
	Addr netip.AddrPort
	// Weight is the backend's share of new connections relative to the
	// other backends of the VIP. Zero means it gets none.
	Weight uint32
}

// fillSlots spreads backends over VIPSlots slots in proportion to their
// weights (largest remainder), giving every backend with a positive weight at
// least one slot so that no ready replica is unreachable. It returns nil when
// no backend has weight, which means the VIP is cold.
func fillSlots(backends []Backend) ([]netip.AddrPort, error) {
	type share struct {
		idx   int
		slots int
		rem   uint64
	}
	var total uint64
	var shares []share
	for i, b := range backends {
		if !b.Addr.Addr().Is4() || b.Addr.Port() == 0 {
			return nil, fmt.Errorf("backend %s: want an IPv4 address and a port", b.Addr)
		}
		if b.Weight == 0 {
			continue
		}
		total += uint64(b.Weight)
		shares = append(shares, share{idx: i})
	}
	if len(shares) == 0 {
		return nil, nil
	}
	if len(shares) > VIPSlots {
		return nil, fmt.Errorf("%d backends with weight: at most %d fit in a VIP", len(shares), VIPSlots)
	}

	used := 0
	for i := range shares {
		q := uint64(backends[shares[i].idx].Weight) * VIPSlots
		shares[i].slots = int(q / total)
		shares[i].rem = q % total
		used += shares[i].slots
	}
	// Hand the slots lost to rounding down to the largest remainders,
	// earlier backends first on ties, so the result is deterministic.
	byRem := make([]int, len(shares))
	for i := range byRem {
		byRem[i] = i
	}
	sort.SliceStable(byRem, func(a, b int) bool { return shares[byRem[a]].rem > shares[byRem[b]].rem })
	for i := 0; used < VIPSlots; i++ {
		shares[byRem[i%len(byRem)]].slots++
		used++
	}
	// A backend whose share rounded to nothing takes a slot from the
	// backend that has the most.
	for i := range shares {
		if shares[i].slots > 0 {
			continue
		}
		richest := 0
		for j := range shares {
			if shares[j].slots > shares[richest].slots {
				richest = j
			}
		}
		shares[richest].slots--
		shares[i].slots++
	}

	out := make([]netip.AddrPort, 0, VIPSlots)
	for _, s := range shares {
		for range s.slots {
			out = append(out, backends[s.idx].Addr)
		}
	}
	return out, nil
}
