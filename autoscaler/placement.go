package autoscaler

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ebbrun/ebb/internal/placement"
	"github.com/ebbrun/ebb/store"
)

// PlacementConfig tunes Place. Scores are Kubernetes-style: each plugin
// scores a node 0..100 and the node's score is the weighted sum.
type PlacementConfig struct {
	// ImageLocalityWeight rewards a node that already has the image: a
	// missing image costs an import and unpack, seconds against the
	// milliseconds of a start. Default 2.
	ImageLocalityWeight float64
	// PreCreatedWeight rewards, for a new replica, a node holding a
	// pre-created task of the revision: it starts in 11 ms instead of 59 ms.
	// Such a node has the image too, so it wins over one with the image
	// only. Default 1.
	PreCreatedWeight float64
	// BalanceWeight rewards free capacity after placing (Kubernetes'
	// LeastAllocated: the mean of the free CPU and free memory fractions),
	// which spreads replicas and keeps headroom on every node. Default 1.
	BalanceWeight float64
	// NodeDownAfter is how old a heartbeat may be before the node counts as
	// down: nothing new is placed there, and its replicas move to nodes that
	// can take them. At least three heartbeat intervals. Default 30s.
	NodeDownAfter time.Duration
	// CPUOvercommit multiplies a node's cores for the CPU filter. A
	// revision's CPU is a limit (a CFS quota), not a reservation, and
	// functions idle most of the time, so placing by limits alone would fit
	// two default replicas on a two-core machine. Memory is not overcommitted:
	// a memory limit that is hit kills the replica. Default 16.
	CPUOvercommit float64
}

// Placement defaults.
const (
	DefaultImageLocalityWeight = placement.DefaultImageLocalityWeight
	DefaultPreCreatedWeight    = placement.DefaultPreCreatedWeight
	DefaultBalanceWeight       = placement.DefaultBalanceWeight
	DefaultNodeDownAfter       = 30 * time.Second
	DefaultCPUOvercommit       = placement.DefaultCPUOvercommit
)

// WithDefaults returns c with zero fields set to their defaults: the
// shared filter and score's (internal/placement), and NodeDownAfter.
func (c PlacementConfig) WithDefaults() PlacementConfig {
	s := c.shared().WithDefaults()
	c.ImageLocalityWeight, c.PreCreatedWeight, c.BalanceWeight, c.CPUOvercommit =
		s.ImageLocalityWeight, s.PreCreatedWeight, s.BalanceWeight, s.CPUOvercommit
	if c.NodeDownAfter == 0 {
		c.NodeDownAfter = DefaultNodeDownAfter
	}
	return c
}

// Validate checks a defaulted config.
func (c PlacementConfig) Validate() error {
	if c.ImageLocalityWeight < 0 || c.PreCreatedWeight < 0 || c.BalanceWeight < 0 {
		return errors.New("placement weights must not be negative")
	}
	if c.NodeDownAfter <= 0 {
		return errors.New("placement nodeDownAfter must be positive")
	}
	if c.CPUOvercommit < 1 {
		return errors.New("placement cpuOvercommit must be at least 1")
	}
	return nil
}

// Demand is what one revision needs placed.
type Demand struct {
	Function string
	Revision string
	Image    string
	// CPU in cores and Memory in bytes per replica.
	CPU    float64
	Memory int64
	// Replicas and PreCreated are the totals wanted across nodes.
	Replicas   int
	PreCreated int
}

// Allocation is what a node has been assigned, summed over revisions: the
// scheduler counts what it assigned, not what the node last reported, so
// that placements made between two heartbeats are not forgotten.
type Allocation struct {
	CPU        float64
	Memory     int64
	PreCreated int
}

// Add returns a plus the assignment of n replicas of d and pre pre-created tasks.
func (a Allocation) Add(d Demand, n, pre int) Allocation {
	a.CPU += d.CPU * float64(n)
	a.Memory += d.Memory * int64(n)
	a.PreCreated += pre
	return a
}

// PlacementResult is where a revision runs.
type PlacementResult struct {
	// Assignments has an entry for every node the revision is on or was on:
	// an entry with zero Replicas and zero PreCreated means "remove it".
	Assignments map[string]store.Assignment
	// Unplaced counts replicas (and pre-created tasks) no node could take.
	Unplaced           int
	UnplacedPreCreated int
}

// nodeView is a node as the scheduler sees it during one placement.
type nodeView struct {
	node     store.Node
	up       bool
	alloc    Allocation // other revisions plus what is placed here so far
	replicas int        // this revision's replicas here
	pre      int        // this revision's pre-created tasks here
	hasImage bool
}

// Place decides how many replicas and pre-created tasks of one revision
// each node runs. It is a Kubernetes-style filter and score: a node passes
// the filter if it is up and has the free CPU and memory for one more
// replica (for a pre-created task: a free pool slot and pool memory); among
// those the highest weighted score wins, ties going to the lower name so
// that the result is deterministic. Replicas are placed one at a time, so
// balance spreads them.
//
// Placement is sticky: replicas already assigned to an up node stay there.
// Scale-down removes from down nodes first, then from the node with the most
// replicas of the revision. Replicas on a down node move to up nodes that can
// take them and stay assigned otherwise, so a missed heartbeat on the only
// node does not stop anything.
//
// It runs in phases, each a function below: view the nodes, scale down,
// move replicas off down nodes, scale up, place the pre-created tasks, and
// turn the views into assignments.
//
// others is the allocation of every other revision per node; current is
// this revision's assignments per node. Place is pure.
func Place(cfg PlacementConfig, now time.Time, nodes []store.Node, others map[string]Allocation, current map[string]store.Assignment, d Demand) PlacementResult {
	views := viewNodes(cfg, now, nodes, others, current, d)
	total := scaleDown(views, d)
	moveOffDownNodes(cfg, views, d)
	return PlacementResult{
		Unplaced:           scaleUp(cfg, views, d, total),
		UnplacedPreCreated: placePreCreated(cfg, views, d),
		Assignments:        assignmentsOf(views, current, d),
	}
}

// viewNodes is the first phase of Place: every node as the scheduler sees
// it, sorted by name, with this revision's current share on it.
func viewNodes(cfg PlacementConfig, now time.Time, nodes []store.Node, others map[string]Allocation, current map[string]store.Assignment, d Demand) []*nodeView {
	views := make([]*nodeView, 0, len(nodes))
	for _, n := range nodes {
		down := max(cfg.NodeDownAfter, 3*n.HeartbeatInterval.Duration)
		v := &nodeView{
			node:     n,
			up:       now.Sub(n.Heartbeat) <= down,
			alloc:    others[n.Name],
			hasImage: slices.Contains(n.Images, d.Image),
		}
		if a, ok := current[n.Name]; ok {
			v.replicas, v.pre = a.Replicas, a.PreCreated
			v.alloc = v.alloc.Add(d, a.Replicas, 0)
		}
		views = append(views, v)
	}
	slices.SortFunc(views, func(a, b *nodeView) int { return strings.Compare(a.node.Name, b.node.Name) })
	return views
}

// scaleDown removes replicas beyond d.Replicas, from down nodes first, then
// from the node with the most replicas, and returns the replicas left.
func scaleDown(views []*nodeView, d Demand) (total int) {
	for _, v := range views {
		total += v.replicas
	}
	for total > d.Replicas {
		var victim *nodeView
		for _, v := range views {
			if v.replicas == 0 {
				continue
			}
			if victim == nil || (!v.up && victim.up) ||
				(v.up == victim.up && v.replicas > victim.replicas) {
				victim = v
			}
		}
		victim.replicas--
		victim.alloc = victim.alloc.Add(d, -1, 0)
		total--
	}
	return total
}

// moveOffDownNodes moves replicas off down nodes where an up node can take
// them; the rest stay where they are.
func moveOffDownNodes(cfg PlacementConfig, views []*nodeView, d Demand) {
	for _, v := range views {
		for !v.up && v.replicas > 0 {
			best := bestNode(cfg, views, d, true)
			if best == nil {
				break
			}
			v.replicas--
			v.alloc = v.alloc.Add(d, -1, 0)
			best.replicas++
			best.alloc = best.alloc.Add(d, 1, 0)
		}
	}
}

// scaleUp adds replicas from total up to d.Replicas, each on the best node
// for it, and returns how many no node could take.
func scaleUp(cfg PlacementConfig, views []*nodeView, d Demand, total int) (unplaced int) {
	for ; total < d.Replicas; total++ {
		best := bestNode(cfg, views, d, true)
		if best == nil {
			return d.Replicas - total
		}
		best.replicas++
		best.alloc = best.alloc.Add(d, 1, 0)
		if best.pre > 0 {
			// The node starts the replica from its pre-created task.
			best.pre--
		}
	}
	return 0
}

// placePreCreated keeps the pre-created tasks on up nodes, drops the rest
// (from the last node by name first), adds where a pool has room, and
// returns how many no node could take.
func placePreCreated(cfg PlacementConfig, views []*nodeView, d Demand) (unplaced int) {
	pre := 0
	for _, v := range views {
		if !v.up {
			v.pre = 0
		}
		pre += v.pre
	}
	for _, v := range slices.Backward(views) {
		for pre > d.PreCreated && v.pre > 0 {
			v.pre--
			pre--
		}
	}
	for ; pre < d.PreCreated; pre++ {
		best := bestNode(cfg, views, d, false)
		if best == nil {
			return d.PreCreated - pre
		}
		best.pre++
	}
	return 0
}

// assignmentsOf is Place's result: an assignment for every node the
// revision is on or was on, an empty one meaning "remove it". Assignments
// to nodes that no longer exist are emptied.
func assignmentsOf(views []*nodeView, current map[string]store.Assignment, d Demand) map[string]store.Assignment {
	out := map[string]store.Assignment{}
	for _, v := range views {
		_, was := current[v.node.Name]
		if v.replicas > 0 || v.pre > 0 || was {
			out[v.node.Name] = store.Assignment{
				Function: d.Function, Revision: d.Revision, Replicas: v.replicas, PreCreated: v.pre,
			}
		}
	}
	for name, a := range current {
		if _, ok := out[name]; !ok {
			out[name] = store.Assignment{Function: a.Function, Revision: a.Revision}
		}
	}
	return out
}

// bestNode filters and scores the nodes for one more replica (replica true)
// or one more pre-created task.
func bestNode(cfg PlacementConfig, views []*nodeView, d Demand, replica bool) *nodeView {
	var best *nodeView
	var bestScore float64
	for _, v := range views {
		if !v.up || !fits(cfg, v, d, replica) {
			continue
		}
		s := score(cfg, v, d, replica)
		if best == nil || s > bestScore {
			best, bestScore = v, s
		}
	}
	return best
}

func fits(cfg PlacementConfig, v *nodeView, d Demand, replica bool) bool {
	n := v.node
	if !replica {
		allocated := max(v.alloc.PreCreated+v.pre, 0)
		if n.PoolCapacity > 0 && allocated >= n.PoolCapacity {
			return false
		}
		// The pool's memory is what the node measured; a node already over
		// its budget gets no more.
		return n.PoolMemoryBudget <= 0 || n.PoolMemoryBytes < n.PoolMemoryBudget
	}
	return placement.Fits(cfg.shared(), candidate(v, replica), request(d, replica))
}

// score is the shared score (internal/placement), which job pods are
// placed by too.
func score(cfg PlacementConfig, v *nodeView, d Demand, replica bool) float64 {
	return placement.Score(cfg.shared(), candidate(v, replica), request(d, replica))
}

// candidate is the node as the shared filter and score see it: a
// pre-created task of the revision counts for a new replica only.
func candidate(v *nodeView, replica bool) placement.Candidate {
	return placement.Candidate{
		CPU: v.node.CPU, Memory: v.node.MemoryBytes,
		AllocCPU: v.alloc.CPU, AllocMemory: v.alloc.Memory,
		HasImage:   v.hasImage,
		PreCreated: replica && v.pre > 0,
	}
}

// request is one replica of d; a pre-created task takes no CPU or memory
// from the node's allocatable.
func request(d Demand, replica bool) placement.Request {
	if !replica {
		return placement.Request{}
	}
	return placement.Request{CPU: d.CPU, Memory: d.Memory}
}

// shared is the part of c the shared filter and score take.
func (c PlacementConfig) shared() placement.Config {
	return placement.Config{
		ImageLocalityWeight: c.ImageLocalityWeight,
		PreCreatedWeight:    c.PreCreatedWeight,
		BalanceWeight:       c.BalanceWeight,
		CPUOvercommit:       c.CPUOvercommit,
	}
}

// AllocationOf sums, per node, what every assignment asks for, given each
// revision's per-replica demand. Assignments whose revision is unknown
// count their pre-created tasks only.
func AllocationOf(assignments map[string]store.Assignment, nodeOf func(key string) string, demand func(revision string) (Demand, bool)) map[string]Allocation {
	out := map[string]Allocation{}
	for key, a := range assignments {
		node := nodeOf(key)
		d, ok := demand(a.Revision)
		if !ok {
			out[node] = out[node].Add(Demand{}, 0, a.PreCreated)
			continue
		}
		out[node] = out[node].Add(d, a.Replicas, a.PreCreated)
	}
	return out
}

// String formats a result for logs and test failures.
func (r PlacementResult) String() string {
	names := make([]string, 0, len(r.Assignments))
	for n := range r.Assignments {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		a := r.Assignments[n]
		fmt.Fprintf(&b, "%s=%d+%d ", n, a.Replicas, a.PreCreated)
	}
	fmt.Fprintf(&b, "unplaced=%d+%d", r.Unplaced, r.UnplacedPreCreated)
	return b.String()
}
