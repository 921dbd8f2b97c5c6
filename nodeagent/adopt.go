package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ebbrun/ebb/nodeagent/logring"
	"github.com/ebbrun/ebb/store"
)

// adopt reconciles what an earlier agent on this node left behind, before
// anything new is started: the containers in the runtime against the
// replica records in the store.
//
//   - A container with a record whose revision was deleted, or that this
//     node is no longer assigned (it was away and its replicas went
//     elsewhere), is deleted: see keepLeftover.
//   - A container with a record is adopted as it is: pre-created, running
//     (re-probed and re-published) or exited (restarted with backoff). One
//     whose record says it was stopping is removed.
//   - A container without a record is an orphan and is deleted: records are
//     written before containers are created and deleted after they are
//     removed, so only an interrupted removal leaves one.
//   - A container without a task lost its process in a way adoption cannot
//     repair (an interrupted create); it is deleted and the planner creates
//     a replacement.
//   - Records, ports and endpoints of this node with no container are
//     deleted.
func (a *Agent) adopt(ctx context.Context) error {
	left, err := a.readLeftovers(ctx)
	if err != nil {
		return err
	}
	a.seedStatuses(left.statuses)
	adopted, err := a.adoptContainers(ctx, left)
	if err != nil {
		return err
	}
	if err := a.deleteStale(ctx, left, adopted); err != nil {
		return err
	}
	if a.deps.Network != nil {
		// The adopted keep their namespaces; any other is a leftover of a
		// replica whose container is gone.
		if err := a.deps.Network.Adopt(ctx, slices.Sorted(maps.Keys(adopted))); err != nil {
			return fmt.Errorf("adopt replica networks: %w", err)
		}
	}
	a.superviseAdopted(adopted)
	return nil
}

// leftovers is what an earlier agent left of this node: in the store and
// in the runtime.
type leftovers struct {
	records    map[string]store.Replica // by replica id
	ports      []store.KV
	endpoints  []store.Versioned[store.Endpoint]
	statuses   []store.Versioned[store.RevisionNodeStatus]
	containers []Container
	assigned   map[string]bool // revisions this node has an assignment of
}

// readLeftovers reads the node's records from the store and its containers
// from the runtime.
func (a *Agent) readLeftovers(ctx context.Context) (leftovers, error) {
	node := a.cfg.Node
	s := a.deps.Store
	var left leftovers
	recs, _, err := store.ListJSON[store.Replica](ctx, s, store.ReplicasPrefix(node))
	if err != nil {
		return left, fmt.Errorf("list replica records: %w", err)
	}
	left.records = make(map[string]store.Replica, len(recs))
	for _, r := range recs {
		left.records[r.Value.ID] = r.Value
	}
	if left.ports, _, err = s.List(ctx, store.PrefixPorts+node+"/"); err != nil {
		return left, fmt.Errorf("list ports: %w", err)
	}
	if left.endpoints, _, err = store.ListJSON[store.Endpoint](ctx, s, store.PrefixEndpoints); err != nil {
		return left, fmt.Errorf("list endpoints: %w", err)
	}
	if left.statuses, _, err = store.ListJSON[store.RevisionNodeStatus](ctx, s, store.PrefixRevStatus); err != nil {
		return left, fmt.Errorf("list revision statuses: %w", err)
	}
	assigns, _, err := store.ListJSON[store.Assignment](ctx, s, store.AssignmentsPrefix(node))
	if err != nil {
		return left, fmt.Errorf("list assignments: %w", err)
	}
	left.assigned = make(map[string]bool, len(assigns))
	for _, as := range assigns {
		left.assigned[strings.TrimPrefix(as.Key, store.AssignmentsPrefix(node))] = true
	}
	if left.containers, err = a.deps.Runtime.List(ctx, node); err != nil {
		return left, fmt.Errorf("list containers: %w", err)
	}
	return left, nil
}

// seedStatuses keeps what the earlier agent last reported for each
// revision on this node, so that counters such as restarts go on.
func (a *Agent) seedStatuses(statuses []store.Versioned[store.RevisionNodeStatus]) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, st := range statuses {
		if st.Value.Node == a.cfg.Node && strings.HasSuffix(st.Key, "/"+a.cfg.Node) {
			a.seedStatus[st.Value.Revision] = st.Value
		}
	}
}

// adoptContainers adopts each container that has a record and deletes the
// others (orphans) and those that cannot be adopted. It returns the adopted
// replicas by id.
func (a *Agent) adoptContainers(ctx context.Context, left leftovers) (map[string]*replica, error) {
	limits := map[string]replicaLimits{}
	adopted := map[string]*replica{}
	exists := map[string]bool{}
	for _, c := range left.containers {
		rec, ok := left.records[c.ID]
		if !ok || rec.Port == 0 {
			a.log.Warn("deleting orphan container", "container", c.ID)
			if err := a.deps.Runtime.Delete(ctx, c.ID); err != nil {
				return nil, fmt.Errorf("delete orphan container %s: %w", c.ID, err)
			}
			continue
		}
		if _, ok := exists[rec.Revision]; !ok {
			_, _, err := store.GetJSON[store.Revision](ctx, a.deps.Store, store.RevisionKey(rec.Function, rec.Revision))
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("read revision %s: %w", rec.Revision, err)
			}
			exists[rec.Revision] = err == nil
		}
		if keep, why := keepLeftover(exists[rec.Revision], left.assigned[rec.Revision]); !keep {
			a.log.Info("stopping a replica left behind", "container", c.ID, "revision", rec.Revision, "because", why)
			if err := a.deps.Runtime.Delete(ctx, c.ID); err != nil {
				return nil, fmt.Errorf("delete container %s: %w", c.ID, err)
			}
			continue
		}
		if mode := containerNetworkMode(c); mode != a.networkMode() {
			a.log.Warn("deleting a container made with another network mode", "container", c.ID, "mode", mode, "now", a.networkMode())
			if err := a.deps.Runtime.Delete(ctx, c.ID); err != nil {
				return nil, fmt.Errorf("delete container %s: %w", c.ID, err)
			}
			continue
		}
		r, err := a.adoptOne(ctx, c, rec, limits)
		if err != nil {
			return nil, err
		}
		if r != nil {
			adopted[r.id] = r
		}
	}
	return adopted, nil
}

// deleteStale deletes the node's replica, port and endpoint records that
// belong to no adopted replica.
func (a *Agent) deleteStale(ctx context.Context, left leftovers, adopted map[string]*replica) error {
	node := a.cfg.Node
	stale := map[string]bool{}
	for id, rec := range left.records {
		if adopted[id] == nil {
			stale[store.ReplicaKey(node, id)] = true
			stale[store.EndpointKey(rec.Revision, id)] = true
		}
	}
	for _, kv := range left.ports {
		var id string
		if json.Unmarshal(kv.Value, &id) != nil || adopted[id] == nil {
			stale[kv.Key] = true
		}
	}
	for _, ep := range left.endpoints {
		if ep.Value.Node == node && adopted[ep.Value.Replica] == nil {
			stale[ep.Key] = true
		}
	}
	ops := make([]store.Op, 0, len(stale))
	for key := range stale {
		ops = append(ops, store.Delete(key, store.AnyVersion))
	}
	// One transaction per few keys keeps each write small for Redis too.
	for len(ops) > 0 {
		n := min(len(ops), 64)
		if err := a.txn(ctx, "delete stale records", ops[:n]...); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}

// superviseAdopted hands the adopted replicas to the agent: their ports
// are taken and each gets its goroutine.
func (a *Agent) superviseAdopted(adopted map[string]*replica) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range adopted {
		a.replicas[r.id] = r
		a.ports[r.port] = r.id
		a.revLocked(r.rev, r.function)
		a.wg.Add(1)
		go a.supervise(a.ctx, r)
	}
	if len(adopted) > 0 {
		a.log.Info("adopted replicas", "count", len(adopted))
	}
}

// adoptOne attaches to one container that has a record, or deletes it if it
// cannot be adopted. It returns nil for a deleted container.
func (a *Agent) adoptOne(ctx context.Context, c Container, rec store.Replica, limits map[string]replicaLimits) (*replica, error) {
	ring, err := a.logs.Open(logring.ReplicaRef{Function: rec.Function, Revision: rec.Revision, ID: rec.ID})
	if err != nil {
		return nil, err
	}
	// The supervisor reopens the ring; this one only carries the output of
	// the attach until then, and appends to the same files.
	task, err := a.deps.Runtime.Attach(ctx, c.ID, Output{Stdout: ring.Stdout(), Stderr: ring.Stderr()})
	state := TaskOther
	if err == nil {
		state, err = task.State(ctx)
	}
	if err != nil || state == TaskOther {
		ring.Close()
		if err != nil && !errors.Is(err, ErrNotFound) {
			a.log.Warn("cannot attach to container; deleting it", "container", c.ID, "err", err)
		}
		if err := a.deps.Runtime.Delete(ctx, c.ID); err != nil {
			return nil, fmt.Errorf("delete unadoptable container %s: %w", c.ID, err)
		}
		return nil, nil
	}
	lim, ok := limits[rec.Revision]
	if !ok {
		// A revision deleted meanwhile leaves zero limits: the replica is
		// about to be stopped anyway.
		if rev, _, err := store.GetJSON[store.Revision](ctx, a.deps.Store, store.RevisionKey(rec.Function, rec.Revision)); err == nil {
			lim = limitsOf(rev.Spec)
		}
		limits[rec.Revision] = lim
	}
	created := rec.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	r := newReplica(rec.ID, rec.Function, rec.Revision, created)
	r.port = rec.Port
	r.limits = lim
	r.restarts, r.lastExit = rec.Restarts, rec.LastExitCode
	r.adopted = &adoption{task: task, state: state, record: rec}
	r.adoptRing = ring
	switch state {
	case TaskCreated:
		r.phase = phasePooled
	case TaskRunning:
		r.phase, r.startRequested = phaseStarting, true
		r.startOnce.Do(func() { close(r.startCh) })
	case TaskStopped:
		r.phase, r.startRequested = phaseBackoff, true
		r.startOnce.Do(func() { close(r.startCh) })
	}
	if rec.State == store.ReplicaStopping {
		r.requestStop()
	}
	return r, nil
}
