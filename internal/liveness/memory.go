package liveness

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Memory holds leases in one process, for the embedded store, where every
// component shares the process and a restart ends every lease anyway. Its
// methods match store/redis's. The zero value is not usable; use NewMemory.
type Memory struct {
	now func() time.Time

	mu     sync.Mutex
	nodes  map[string]time.Time // node → deadline
	gen    int64
	leases map[string]memLease
}

type memLease struct {
	holder   string
	deadline time.Time
}

// NewMemory returns an empty Memory on clock now (nil: time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, nodes: map[string]time.Time{}, leases: map[string]memLease{}}
}

// RenewNodeLease extends node's lease to ttl from now.
func (m *Memory) RenewNodeLease(_ context.Context, node string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if d, ok := m.nodes[node]; !ok || !d.After(now) {
		m.gen++
	}
	m.nodes[node] = now.Add(ttl)
	return nil
}

// ReleaseNodeLease ends node's lease now.
func (m *Memory) ReleaseNodeLease(_ context.Context, node string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.nodes[node]; ok {
		delete(m.nodes, node)
		m.gen++
	}
	return nil
}

// LiveNodes is store/redis's: the generation, and the live nodes in name
// order unless known is current. One process cannot outlive its own
// leases' store, so grace is unused.
func (m *Memory) LiveNodes(_ context.Context, known int64, _ time.Duration) (int64, []string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	lapsed := false
	for node, d := range m.nodes {
		if !d.After(now) {
			delete(m.nodes, node)
			lapsed = true
		}
	}
	if lapsed {
		m.gen++
	}
	if known == m.gen {
		return m.gen, nil, false, nil
	}
	nodes := make([]string, 0, len(m.nodes))
	for node := range m.nodes {
		nodes = append(nodes, node)
	}
	slices.Sort(nodes)
	return m.gen, nodes, true, nil
}

// AcquireLease takes the lease name for holder if it is free or already
// holder's, for ttl from now, and reports whether holder has it.
func (m *Memory) AcquireLease(_ context.Context, name, holder string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if l, ok := m.leases[name]; ok && l.holder != holder && l.deadline.After(now) {
		return false, nil
	}
	m.leases[name] = memLease{holder: holder, deadline: now.Add(ttl)}
	return true, nil
}

// ReleaseLease gives up the lease name if holder has it.
func (m *Memory) ReleaseLease(_ context.Context, name, holder string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[name]; ok && l.holder == holder {
		delete(m.leases, name)
	}
	return nil
}
