package bpfsync

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/bpf"
	"github.com/ebbrun/ebb/store"
)

func TestRoutedTargets(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   store.Function
		want []target
	}{
		{"no traffic block: the latest", store.Function{LatestRevision: "f-00002"}, []target{{"f-00002", 100}}},
		{"latestRevision resolved", store.Function{LatestRevision: "f-00003", Traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 100}}},
			[]target{{"f-00003", 100}}},
		{"split, 0% tag left out", store.Function{LatestRevision: "f-00003", Traffic: []api.TrafficTarget{
			{Revision: "f-00001", Percent: 90}, {Revision: "f-00002", Percent: 10}, {Revision: "f-00003", Percent: 0, Tag: "next"},
		}}, []target{{"f-00001", 90}, {"f-00002", 10}}},
		{"nothing yet", store.Function{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, routedTargets(tc.fn))
		})
	}
}

func TestVIPBackends(t *testing.T) {
	a1, a2, a3 := netip.MustParseAddrPort("127.0.0.1:9001"), netip.MustParseAddrPort("127.0.0.1:9002"), netip.MustParseAddrPort("127.0.0.1:9003")
	b1 := netip.MustParseAddrPort("127.0.0.1:9101")
	for _, tc := range []struct {
		name    string
		targets []target
		ready   map[string][]netip.AddrPort
		want    []bpf.Backend
	}{
		{"cold", []target{{"a", 100}}, nil, nil},
		{"one revision shares evenly", []target{{"a", 100}}, map[string][]netip.AddrPort{"a": {a2, a1}},
			[]bpf.Backend{{Addr: a1, Weight: 50000}, {Addr: a2, Weight: 50000}}},
		{"90/10 holds whatever the replica counts", []target{{"a", 90}, {"b", 10}},
			map[string][]netip.AddrPort{"a": {a1, a2, a3}, "b": {b1}},
			[]bpf.Backend{{Addr: a1, Weight: 30000}, {Addr: a2, Weight: 30000}, {Addr: a3, Weight: 30000}, {Addr: b1, Weight: 10000}}},
		{"a cold revision's share goes to the warm one", []target{{"a", 90}, {"b", 10}},
			map[string][]netip.AddrPort{"b": {b1}},
			[]bpf.Backend{{Addr: b1, Weight: 10000}}},
		{"ready replicas of unrouted revisions get nothing", []target{{"a", 100}},
			map[string][]netip.AddrPort{"a": {a1}, "old": {b1}},
			[]bpf.Backend{{Addr: a1, Weight: 100000}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, vipBackends(tc.targets, tc.ready))
		})
	}

	t.Run("at most VIPSlots backends, the heaviest", func(t *testing.T) {
		var many, few []netip.AddrPort
		for i := range 150 {
			many = append(many, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(10000+i)))
		}
		for i := range 10 {
			few = append(few, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.4"), uint16(10000+i)))
		}
		// a's replicas weigh 99000/150 = 660 each, b's 1000/10 = 100.
		got := vipBackends([]target{{"a", 99}, {"b", 1}}, map[string][]netip.AddrPort{"a": many, "b": few})
		assert.Len(t, got, bpf.VIPSlots)
		for _, b := range got {
			assert.Equal(t, netip.MustParseAddr("127.0.0.2"), b.Addr.Addr(), "the lightest replicas are left out")
			assert.Equal(t, uint32(99*weightScale/150), b.Weight)
		}
	})
	t.Run("a tiny share keeps weight 1", func(t *testing.T) {
		many := make([]netip.AddrPort, 0, 2000)
		for i := range 2000 {
			many = append(many, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), uint16(20000+i)))
		}
		got := vipBackends([]target{{"a", 1}}, map[string][]netip.AddrPort{"a": many})
		for _, b := range got {
			assert.Equal(t, uint32(1), b.Weight)
		}
	})
}

func TestPickRevision(t *testing.T) {
	split := []target{{"a", 90}, {"b", 10}}
	counts := map[string]int{}
	for x := range 1000 {
		counts[pickRevision(split, x)]++
	}
	assert.Equal(t, map[string]int{"a": 900, "b": 100}, counts, "x spread over the sum maps onto the percents")
	assert.Equal(t, "a", pickRevision([]target{{"a", 100}}, 12345))
	assert.Equal(t, "", pickRevision(nil, 7))
}

func TestLowestFree(t *testing.T) {
	set := func(xs ...uint32) map[uint32]bool {
		m := map[uint32]bool{}
		for _, x := range xs {
			m[x] = true
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		used  map[uint32]bool
		n     int
		limit uint32
		want  []uint32
	}{
		{"empty range start", nil, 3, 100, []uint32{0, 1, 2}},
		{"holes first", set(0, 2, 3, 7), 4, 100, []uint32{1, 4, 5, 6}},
		{"after the used block", set(0, 1, 2), 2, 100, []uint32{3, 4}},
		{"range runs out", set(0, 2), 5, 4, []uint32{1, 3}},
		{"used beyond the limit ignored", set(5, 9), 3, 3, []uint32{0, 1, 2}},
		{"none wanted", set(1), 0, 10, []uint32{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, lowestFree(tc.used, tc.n, tc.limit))
		})
	}
}
