package bpfsync

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/bpf"
	"github.com/ebbrun/ebb/store"
)

func TestVIPStats(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	t1 := t0.Add(2 * time.Second)
	revisions := map[uint16]string{9001: "fn-00001", 9002: "fn-00001", 9003: "fn-00002"}
	stat := func(rev string, avg, peak, requests float64) api.RevisionStat {
		return api.RevisionStat{Revision: rev, Reporter: "vip@n1", Time: t1, Interval: api.Duration{Duration: 2 * time.Second},
			AvgConcurrency: avg, MaxConcurrency: peak, Requests: requests}
	}
	tests := []struct {
		name      string
		prev, cur map[uint16]bpf.PortLoad
		want      []api.RevisionStat
	}{
		{
			name: "no VIP load, no stats",
			prev: map[uint16]bpf.PortLoad{9001: {VIPRequests: 4, VIPBusy: time.Second}},
			cur:  map[uint16]bpf.PortLoad{9001: {VIPRequests: 4, VIPBusy: time.Second, Open: 3}},
			want: []api.RevisionStat{},
		},
		{
			name: "a revision's replicas add up",
			prev: map[uint16]bpf.PortLoad{9001: {VIPRequests: 10, VIPBusy: time.Second}, 9002: {}},
			cur: map[uint16]bpf.PortLoad{
				9001: {VIPRequests: 30, VIPBusy: 3 * time.Second, VIPOpen: 1}, // 2 s of request-time in 2 s
				9002: {VIPRequests: 5, VIPBusy: 4 * time.Second, VIPOpen: 3},  // 4 s in 2 s
			},
			want: []api.RevisionStat{stat("fn-00001", 3, 1+3, 25)},
		},
		{
			name: "the peak is at least the average",
			prev: map[uint16]bpf.PortLoad{9003: {}},
			cur:  map[uint16]bpf.PortLoad{9003: {VIPRequests: 100, VIPBusy: 5 * time.Second}},
			want: []api.RevisionStat{stat("fn-00002", 2.5, 2.5, 100)},
		},
		{
			name: "a request open the whole interval is demand",
			prev: map[uint16]bpf.PortLoad{9003: {VIPRequests: 1, VIPOpen: 1, VIPBusy: time.Second}},
			cur:  map[uint16]bpf.PortLoad{9003: {VIPRequests: 1, VIPOpen: 1, VIPBusy: 3 * time.Second}},
			want: []api.RevisionStat{stat("fn-00002", 1, 1, 0)},
		},
		{
			name: "a port tracked afresh counts from zero",
			prev: map[uint16]bpf.PortLoad{9003: {VIPRequests: 50, VIPBusy: 9 * time.Second}},
			cur:  map[uint16]bpf.PortLoad{9003: {VIPRequests: 2, VIPBusy: time.Second}},
			want: []api.RevisionStat{stat("fn-00002", 0.5, 0.5, 2)},
		},
		{
			name: "a new port and a port without a ready replica",
			prev: map[uint16]bpf.PortLoad{},
			cur: map[uint16]bpf.PortLoad{
				9002: {VIPRequests: 2, VIPBusy: time.Second},
				9999: {VIPRequests: 8, VIPBusy: time.Second},
			},
			want: []api.RevisionStat{stat("fn-00001", 0.5, 0.5, 2)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := vipStats(loadReading{at: t0, loads: tt.prev}, loadReading{at: t1, loads: tt.cur}, revisions, "vip@n1")
			assert.Equal(t, tt.want, got)
		})
	}
	assert.Nil(t, vipStats(loadReading{at: t1}, loadReading{at: t1}, revisions, "vip@n1"), "no time passed")
}

func TestReplicaPort(t *testing.T) {
	tests := []struct {
		ep   store.Endpoint
		want uint16
	}{
		{store.Endpoint{Node: "n1", Addr: "127.0.0.1:9001"}, 9001},
		{store.Endpoint{Node: "n1", Addr: "[::1]:9002"}, 9002},
		{store.Endpoint{Node: "n2", Addr: "127.0.0.1:9001"}, 0},
		{store.Endpoint{Node: "n1", Addr: "not an address"}, 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, replicaPort(tt.ep, "n1"), tt.ep.Addr)
	}
}
