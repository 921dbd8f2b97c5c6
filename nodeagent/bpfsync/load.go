package bpfsync

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/bpf"
	"github.com/ebbrun/ebb/store"
)

// StatsSink takes load reports: the autoscaler, in process or over HTTP.
type StatsSink interface {
	Report(stats []api.RevisionStat)
}

// loadReading is one read of the programs' per-port load.
type loadReading struct {
	at    time.Time
	loads map[uint16]bpf.PortLoad
}

// reportLoop reports the load that reached this node's replicas through
// VIPs, every StatsInterval. That load skips every router, so without this
// the autoscaler would see a function busy only through VIPs as idle.
func (s *Syncer) reportLoop(ctx context.Context) error {
	if s.deps.Stats == nil {
		return nil
	}
	t := time.NewTicker(s.cfg.StatsInterval)
	defer t.Stop()
	var prev loadReading
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		loads, err := s.deps.Loader.PortLoads()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("read VIP load", "err", err)
			continue
		}
		cur := loadReading{at: time.Now(), loads: loads}
		if prev.loads != nil {
			stats := vipStats(prev, cur, s.replicaRevisions(), s.reporter())
			if len(stats) > 0 {
				s.deps.Stats.Report(stats)
			}
		}
		prev = cur
	}
}

// reporter names this node's VIP load among the autoscaler's reporters.
func (s *Syncer) reporter() string { return "vip@" + s.cfg.Node }

// replicaRevisions maps each ready replica port of this node to its
// revision. The map is replaced, never modified, when endpoints change.
func (s *Syncer) replicaRevisions() map[uint16]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revs
}

// portRevisions maps each of node's ready replica ports in eps to its
// revision.
func portRevisions(eps *store.Snapshot[store.Endpoint], node string) map[uint16]string {
	out := make(map[uint16]string, eps.Len())
	for c := range eps.All() {
		out[replicaPort(c.Value, node)] = c.Value.Revision
	}
	delete(out, 0)
	return out
}

// replicaPort is the port of an endpoint on node, or 0.
func replicaPort(ep store.Endpoint, node string) uint16 {
	if ep.Node != node {
		return 0
	}
	addr, err := netip.ParseAddrPort(ep.Addr)
	if err != nil {
		return 0
	}
	return addr.Port()
}

// vipStats turns two readings into each revision's VIP load over the time
// between them: the request-time that accrued, as average concurrency; the
// requests answered or open at the end, as the peak (at least the average);
// and the requests that arrived. Revisions without VIP load are left out,
// as a router leaves out revisions nobody called. A port tracked afresh
// between the readings (its counters went down) counts from zero.
func vipStats(prev, cur loadReading, revisions map[uint16]string, reporter string) []api.RevisionStat {
	interval := cur.at.Sub(prev.at)
	if interval <= 0 {
		return nil
	}
	byRev := map[string]*api.RevisionStat{}
	var order []string
	for port, now := range cur.loads {
		rev, ok := revisions[port]
		if !ok {
			continue
		}
		before := prev.loads[port]
		if now.VIPRequests < before.VIPRequests || now.VIPBusy < before.VIPBusy {
			before = bpf.PortLoad{}
		}
		requests := now.VIPRequests - before.VIPRequests
		busy := now.VIPBusy - before.VIPBusy
		if requests == 0 && busy == 0 && now.VIPOpen == 0 {
			continue
		}
		st, ok := byRev[rev]
		if !ok {
			st = &api.RevisionStat{Revision: rev, Reporter: reporter, Time: cur.at, Interval: api.Duration{Duration: interval}}
			byRev[rev] = st
			order = append(order, rev)
		}
		avg := busy.Seconds() / interval.Seconds()
		st.AvgConcurrency += avg
		st.MaxConcurrency += max(float64(now.VIPOpen), avg)
		st.Requests += float64(requests)
	}
	slices.Sort(order)
	out := make([]api.RevisionStat, 0, len(order))
	for _, rev := range order {
		out = append(out, *byRev[rev])
	}
	return out
}
