package nodesim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/nodeagent"
	"github.com/ebbrun/ebb/store"
)

// Config is a simulation.
type Config struct {
	// Nodes is how many node agents to simulate.
	Nodes int
	// NamePrefix names node i NamePrefix + i ("sim-0042").
	NamePrefix string
	// CPU and MemoryBytes are each node's capacity.
	CPU         float64
	MemoryBytes int64
	// LeaseTTL and LeaseRenewEvery default to the real agent's.
	LeaseTTL, LeaseRenewEvery time.Duration
	// OnAssigned hears when a node first sees a revision assigned to it
	// with replicas; for the placement latency.
	OnAssigned func(node, rev string, at time.Time)
	// OnReady hears when a node has published a revision's replicas.
	OnReady func(node, rev string, at time.Time)
}

// Lease is the node lease backend: store/redis's Store.
type Lease = nodeagent.NodeLease

// Stats are counters of what the simulated agents did.
type Stats struct {
	LeaseRenewals, LeaseErrors atomic.Int64
	Txns, TxnErrors            atomic.Int64
	ReplicasStarted            atomic.Int64
	ReplicasStopped            atomic.Int64
	Registered                 atomic.Int64
	// Updates counts cache updates the nodes' watches delivered.
	Updates atomic.Int64
}

// Sim is a set of simulated node agents.
type Sim struct {
	cfg   Config
	st    store.Store
	lease Lease
	Stats Stats
}

// New returns a simulation of cfg.Nodes agents on st and lease.
func New(cfg Config, st store.Store, lease Lease) *Sim {
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = nodeagent.DefaultLeaseTTL
	}
	if cfg.LeaseRenewEvery == 0 {
		cfg.LeaseRenewEvery = nodeagent.DefaultLeaseRenewEvery
	}
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = "sim-"
	}
	return &Sim{cfg: cfg, st: st, lease: lease}
}

// NodeName is the name of simulated node i.
func (s *Sim) NodeName(i int) string { return fmt.Sprintf("%s%04d", s.cfg.NamePrefix, i) }

// Run runs every node until ctx ends. Nodes start spread over one lease
// renewal interval, as agents started independently would be.
func (s *Sim) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range s.cfg.Nodes {
		n := &node{sim: s, name: s.NodeName(i), port: 20000, replicas: map[string][]simReplica{}, written: map[string]store.RevisionNodeStatus{}}
		wg.Go(func() { n.run(ctx) })
	}
	wg.Wait()
}

type simReplica struct {
	id   string
	port int
}

type node struct {
	sim      *Sim
	name     string
	port     int
	replicas map[string][]simReplica // by revision
	fns      map[string]string       // revision → function
	written  map[string]store.RevisionNodeStatus
	record   *store.Node
	seen     map[string]bool
}

func (n *node) run(ctx context.Context) {
	s := n.sim
	// Spread the starts over one renewal interval.
	t := time.NewTimer(rand.N(s.cfg.LeaseRenewEvery))
	select {
	case <-ctx.Done():
		t.Stop()
		return
	case <-t.C:
	}
	n.fns, n.seen = map[string]string{}, map[string]bool{}
	n.renew(ctx)
	n.writeNodeRecord(ctx)
	s.Stats.Registered.Add(1)

	assignments := store.NewCache(s.st, store.AssignmentsPrefix(n.name), store.CacheConfig[store.Assignment]{})
	jobPods := store.NewCache(s.st, store.JobPodsPrefix(n.name), store.CacheConfig[store.JobPod]{})
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = assignments.Run(ctx) })
	wg.Go(func() { _ = jobPods.Run(ctx) })
	wg.Go(func() {
		_ = assignments.Follow(ctx, func(store.Update[store.Assignment]) { s.Stats.Updates.Add(1); poke() })
	})
	wg.Go(func() {
		_ = jobPods.Follow(ctx, func(store.Update[store.JobPod]) { s.Stats.Updates.Add(1) })
	})
	defer wg.Wait()

	// The lease has its own goroutine, as the agent's leaseLoop does, so
	// a slow start never makes a live node look dead.
	wg.Go(func() {
		renew := time.NewTicker(s.cfg.LeaseRenewEvery)
		defer renew.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-renew.C:
				n.renew(ctx)
			}
		}
	})
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
			n.reconcile(ctx, assignments.Snapshot())
		}
	}
}

// renew is one turn of the agent's leaseLoop.
func (n *node) renew(ctx context.Context) {
	s := n.sim
	rctx, cancel := context.WithTimeout(ctx, s.cfg.LeaseRenewEvery)
	err := s.lease.RenewNodeLease(rctx, n.name, s.cfg.LeaseTTL)
	cancel()
	if err != nil {
		s.Stats.LeaseErrors.Add(1)
		return
	}
	s.Stats.LeaseRenewals.Add(1)
}

func (n *node) txn(ctx context.Context, ops ...store.Op) error {
	s := n.sim
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := s.st.Txn(tctx, ops...)
	cancel()
	s.Stats.Txns.Add(1)
	if err != nil {
		s.Stats.TxnErrors.Add(1)
	}
	return err
}

// writeNodeRecord writes the node record if it changed, as the agent's
// writeNodeRecord does.
func (n *node) writeNodeRecord(ctx context.Context) {
	s := n.sim
	rec := store.Node{
		Name: n.name, AgentAddr: "127.0.0.1:1", CPU: s.cfg.CPU, MemoryBytes: s.cfg.MemoryBytes,
		HeartbeatInterval: api.D(s.cfg.LeaseRenewEvery),
	}
	for _, rs := range n.replicas {
		rec.Running += len(rs)
		rec.AllocatedCPU += float64(len(rs)) * replicaCPU
		rec.AllocatedMemory += int64(len(rs)) * replicaMemory
	}
	if n.record != nil && reflect.DeepEqual(*n.record, rec) {
		return
	}
	out := rec
	out.Heartbeat = time.Now()
	if n.txn(ctx, store.PutJSON(store.NodeKey(n.name), out, store.AnyVersion)) == nil {
		n.record = &rec
	}
}

// What each simulated replica takes of its node, as a function at the
// default resources would (cpu 1 is the default; the bench deploys 0.1).
const (
	replicaCPU    = 0.1
	replicaMemory = 128 << 20
)

// reconcile starts and stops replicas to match the assignments, writing
// the records a real agent writes.
func (n *node) reconcile(ctx context.Context, snap *store.Snapshot[store.Assignment]) {
	s := n.sim
	prefix := store.AssignmentsPrefix(n.name)
	desired := map[string]store.Assignment{}
	for v := range snap.All() {
		rev := v.Key[len(prefix):]
		desired[rev] = v.Value
	}
	changed := map[string]bool{}
	for rev, as := range desired {
		if as.Replicas > 0 && !n.seen[rev] {
			n.seen[rev] = true
			if s.cfg.OnAssigned != nil {
				s.cfg.OnAssigned(n.name, rev, time.Now())
			}
		}
		n.fns[rev] = as.Function
		have := n.replicas[rev]
		if len(have) < as.Replicas && len(have) == 0 {
			// The agent reads the revision before its first start there.
			gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _, _ = store.GetJSON[store.Revision](gctx, s.st, store.RevisionKey(as.Function, rev))
			cancel()
		}
		for len(have) < as.Replicas {
			r, ok := n.start(ctx, as.Function, rev)
			if !ok {
				break
			}
			have = append(have, r)
			changed[rev] = true
		}
		for len(have) > as.Replicas {
			n.stop(ctx, rev, have[len(have)-1])
			have = have[:len(have)-1]
			changed[rev] = true
		}
		n.replicas[rev] = have
		if changed[rev] && len(have) == as.Replicas && as.Replicas > 0 && s.cfg.OnReady != nil {
			s.cfg.OnReady(n.name, rev, time.Now())
		}
	}
	for rev, have := range n.replicas {
		if _, ok := desired[rev]; ok {
			continue
		}
		for _, r := range have {
			n.stop(ctx, rev, r)
		}
		delete(n.replicas, rev)
		changed[rev] = true
	}
	n.writeStatuses(ctx, desired)
	if len(changed) > 0 {
		n.writeNodeRecord(ctx)
	}
}

// start writes what the agent's allocate and publish write.
func (n *node) start(ctx context.Context, function, rev string) (simReplica, bool) {
	s := n.sim
	r := simReplica{id: fmt.Sprintf("%s-%05x", rev, rand.N(1<<20)), port: n.port}
	n.port++
	now := time.Now()
	rec := store.Replica{ID: r.id, Node: n.name, Function: function, Revision: rev, Port: r.port, State: store.ReplicaStarting, CreatedAt: now}
	if n.txn(ctx,
		store.PutJSON(store.PortKey(n.name, r.port), r.id, store.MustNotExist),
		store.PutJSON(store.ReplicaKey(n.name, r.id), rec, store.MustNotExist)) != nil {
		return r, false
	}
	ready := time.Now()
	ep := store.Endpoint{
		Function: function, Revision: rev, Replica: r.id, Node: n.name,
		Addr: fmt.Sprintf("127.0.0.1:%d", r.port), ReadyAt: ready,
		Start: &store.StartPhases{Decided: now, Created: now, Started: now, Ready: ready},
	}
	rec.State = store.ReplicaReady
	if n.txn(ctx,
		store.PutJSON(store.EndpointKey(rev, r.id), ep, store.AnyVersion),
		store.PutJSON(store.ReplicaKey(n.name, r.id), rec, store.AnyVersion)) != nil {
		return r, false
	}
	s.Stats.ReplicasStarted.Add(1)
	return r, true
}

// stop writes what the agent's stop writes.
func (n *node) stop(ctx context.Context, rev string, r simReplica) {
	_ = n.txn(ctx,
		store.Delete(store.EndpointKey(rev, r.id), store.AnyVersion),
		store.Delete(store.ReplicaKey(n.name, r.id), store.AnyVersion),
		store.Delete(store.PortKey(n.name, r.port), store.AnyVersion))
	n.sim.Stats.ReplicasStopped.Add(1)
}

// writeStatuses writes the node's status of each assigned revision when it
// changed and deletes those of revisions no longer assigned, as the
// agent's statusLoop does.
func (n *node) writeStatuses(ctx context.Context, desired map[string]store.Assignment) {
	now := time.Now()
	for rev, as := range desired {
		ready := len(n.replicas[rev])
		st := store.RevisionNodeStatus{Revision: rev, Node: n.name, Ready: ready}
		switch {
		case as.Replicas == 0 && ready == 0:
			st.State = api.RevisionIdle
		case ready == as.Replicas:
			st.State = api.RevisionReady
		default:
			st.State = api.RevisionScaling
			st.Message = fmt.Sprintf("%d of %d replicas ready", ready, as.Replicas)
		}
		if old, ok := n.written[rev]; ok && old.State == st.State && old.Ready == st.Ready && old.Message == st.Message {
			continue
		}
		st.UpdatedAt = now
		if n.txn(ctx, store.PutJSON(store.RevStatusKey(rev, n.name), st, store.AnyVersion)) == nil {
			n.written[rev] = st
		}
	}
	for rev := range n.written {
		if _, ok := desired[rev]; ok {
			continue
		}
		if n.txn(ctx, store.Delete(store.RevStatusKey(rev, n.name), store.AnyVersion)) == nil {
			delete(n.written, rev)
		}
	}
}
