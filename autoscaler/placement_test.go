package autoscaler

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

const gib = int64(1) << 30

func node(name string, cpu float64, memGiB int64, images ...string) store.Node {
	return store.Node{
		Name: name, CPU: cpu, MemoryBytes: memGiB * gib, Images: images,
		PoolCapacity: 4, Heartbeat: at(100), HeartbeatInterval: api.D(2 * time.Second),
	}
}

func demand(replicas, pre int) Demand {
	return Demand{Function: "fn", Revision: "fn-00001", Image: "img:1", CPU: 1, Memory: gib, Replicas: replicas, PreCreated: pre}
}

func assignments(kv ...any) map[string]store.Assignment {
	out := map[string]store.Assignment{}
	for i := 0; i < len(kv); i += 3 {
		out[kv[i].(string)] = store.Assignment{Function: "fn", Revision: "fn-00001", Replicas: kv[i+1].(int), PreCreated: kv[i+2].(int)}
	}
	return out
}

func TestPlace(t *testing.T) {
	// Place by limits alone, so the CPU filter is exercised at small numbers.
	cfg := PlacementConfig{CPUOvercommit: 1}.WithDefaults()
	require.NoError(t, cfg.Validate())
	stale := func(n store.Node) store.Node { n.Heartbeat = at(0); return n }
	cases := []struct {
		name    string
		nodes   []store.Node
		others  map[string]Allocation
		current map[string]store.Assignment
		d       Demand
		want    map[string]store.Assignment
		unplRep int
		unplPre int
	}{
		{
			name:  "one node takes everything that fits",
			nodes: []store.Node{node("a", 8, 16)},
			d:     demand(3, 0),
			want:  assignments("a", 3, 0),
		},
		{
			name:  "equal nodes: balance spreads replicas",
			nodes: []store.Node{node("a", 4, 8), node("b", 4, 8), node("c", 4, 8)},
			d:     demand(4, 0),
			want:  assignments("a", 2, 0, "b", 1, 0, "c", 1, 0),
		},
		{
			name:  "image locality outweighs balance while the node has room",
			nodes: []store.Node{node("a", 4, 8), node("b", 2, 8, "img:1"), node("c", 4, 8)},
			d:     demand(3, 0),
			want:  assignments("a", 1, 0, "b", 2, 0),
		},
		{
			name:   "other revisions' allocation counts: the emptier node wins",
			nodes:  []store.Node{node("a", 4, 8), node("b", 4, 8)},
			others: map[string]Allocation{"a": {CPU: 3, Memory: 2 * gib}},
			d:      demand(2, 0),
			want:   assignments("b", 2, 0),
		},
		{
			name:  "filter: not enough CPU or memory",
			nodes: []store.Node{node("a", 0.5, 64), node("b", 64, 0), node("c", 2, 2)},
			d:     demand(3, 0),
			want:  assignments("c", 2, 0),
			// One replica fits nowhere.
			unplRep: 1,
		},
		{
			name:    "placement is sticky on scale-up",
			nodes:   []store.Node{node("a", 8, 16), node("b", 8, 16)},
			current: assignments("a", 3, 0),
			d:       demand(4, 0),
			want:    assignments("a", 3, 0, "b", 1, 0),
		},
		{
			name:    "scale-down takes from the node with the most replicas",
			nodes:   []store.Node{node("a", 8, 16), node("b", 8, 16)},
			current: assignments("a", 3, 0, "b", 1, 0),
			d:       demand(2, 0),
			want:    assignments("a", 1, 0, "b", 1, 0),
		},
		{
			name:    "scale to zero keeps the entries, zeroed, so the runner deletes them",
			nodes:   []store.Node{node("a", 8, 16), node("b", 8, 16)},
			current: assignments("a", 1, 0, "b", 1, 0),
			d:       demand(0, 0),
			want:    assignments("a", 0, 0, "b", 0, 0),
		},
		{
			name:    "a down node gets nothing new and its replicas move",
			nodes:   []store.Node{stale(node("a", 8, 16)), node("b", 8, 16)},
			current: assignments("a", 2, 0),
			d:       demand(3, 0),
			want:    assignments("a", 0, 0, "b", 3, 0),
		},
		{
			name:    "replicas on a down node stay when no up node can take them",
			nodes:   []store.Node{stale(node("a", 8, 16)), node("b", 1, 16)},
			current: assignments("a", 3, 0),
			d:       demand(3, 0),
			want:    assignments("a", 2, 0, "b", 1, 0),
		},
		{
			name:    "scale-down takes from a down node first",
			nodes:   []store.Node{stale(node("a", 8, 16)), node("b", 8, 16)},
			current: assignments("a", 1, 0, "b", 2, 0),
			d:       demand(2, 0),
			want:    assignments("a", 0, 0, "b", 2, 0),
		},
		{
			name:    "a node that is gone loses its assignment",
			nodes:   []store.Node{node("b", 8, 16)},
			current: assignments("a", 2, 0),
			d:       demand(2, 0),
			want:    assignments("a", 0, 0, "b", 2, 0),
		},
		{
			name:    "a new replica goes where the revision's pre-created task is, and uses it",
			nodes:   []store.Node{node("a", 8, 16, "img:1"), node("b", 8, 16, "img:1")},
			current: assignments("b", 0, 1),
			d:       demand(1, 0),
			want:    assignments("b", 1, 0),
		},
		{
			name:  "pre-created task: image locality first",
			nodes: []store.Node{node("a", 8, 16), node("b", 8, 16, "img:1")},
			d:     demand(0, 1),
			want:  assignments("b", 0, 1),
		},
		{
			name:   "pre-created task: a full pool is filtered out",
			nodes:  []store.Node{node("a", 8, 16), node("b", 8, 16, "img:1")},
			others: map[string]Allocation{"b": {PreCreated: 4}},
			d:      demand(0, 1),
			want:   assignments("a", 0, 1),
		},
		{
			name: "pre-created task: a pool over its memory budget is filtered out",
			nodes: func() []store.Node {
				n := node("a", 8, 16, "img:1")
				n.PoolMemoryBudget, n.PoolMemoryBytes = 100<<20, 120<<20
				return []store.Node{n}
			}(),
			d:       demand(0, 1),
			want:    map[string]store.Assignment{},
			unplPre: 1,
		},
		{
			name:    "pre-created task is kept where it is, extras dropped",
			nodes:   []store.Node{node("a", 8, 16, "img:1"), node("b", 8, 16, "img:1")},
			current: assignments("a", 0, 1, "b", 0, 1),
			d:       demand(0, 1),
			want:    assignments("a", 0, 1, "b", 0, 0),
		},
		{
			name:    "pre-created task on a down node is dropped and placed again",
			nodes:   []store.Node{stale(node("a", 8, 16, "img:1")), node("b", 8, 16)},
			current: assignments("a", 0, 1),
			d:       demand(0, 1),
			want:    assignments("a", 0, 0, "b", 0, 1),
		},
		{
			name:    "no nodes at all",
			d:       demand(2, 1),
			want:    map[string]store.Assignment{},
			unplRep: 2,
			unplPre: 1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Place(cfg, at(101), c.nodes, c.others, c.current, c.d)
			assert.Equal(t, c.want, got.Assignments, got.String())
			assert.Equal(t, c.unplRep, got.Unplaced, "unplaced replicas")
			assert.Equal(t, c.unplPre, got.UnplacedPreCreated, "unplaced pre-created tasks")
		})
	}
}

func TestPlaceIsDeterministicAndFillsManyNodes(t *testing.T) {
	// Place by limits alone, so the CPU filter is exercised at small numbers.
	cfg := PlacementConfig{CPUOvercommit: 1}.WithDefaults()
	var nodes []store.Node
	for _, n := range []string{"n5", "n1", "n4", "n2", "n3"} {
		nodes = append(nodes, node(n, 4, 8))
	}
	first := Place(cfg, at(101), nodes, nil, nil, demand(20, 0))
	for range 5 {
		assert.Equal(t, first, Place(cfg, at(101), nodes, nil, nil, demand(20, 0)))
	}
	for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
		assert.Equal(t, 4, first.Assignments[n].Replicas, n)
	}
	// One more does not fit anywhere.
	over := Place(cfg, at(101), nodes, nil, first.Assignments, demand(21, 0))
	assert.Equal(t, 1, over.Unplaced)
}

func TestAllocationOf(t *testing.T) {
	as := map[string]store.Assignment{
		store.AssignmentKey("a", "fn-00001"):   {Revision: "fn-00001", Replicas: 2, PreCreated: 1},
		store.AssignmentKey("a", "gone-00001"): {Revision: "gone-00001", Replicas: 5, PreCreated: 1},
		store.AssignmentKey("b", "fn-00001"):   {Revision: "fn-00001", Replicas: 1},
	}
	nodeOf := func(key string) string { return key[len(store.PrefixAssignments) : len(store.PrefixAssignments)+1] }
	got := AllocationOf(as, nodeOf, func(rev string) (Demand, bool) {
		if rev == "fn-00001" {
			return demand(0, 0), true
		}
		return Demand{}, false
	})
	assert.Equal(t, map[string]Allocation{
		"a": {CPU: 2, Memory: 2 * gib, PreCreated: 2},
		"b": {CPU: 1, Memory: gib},
	}, got)
}

func TestPlacementConfig(t *testing.T) {
	assert.Error(t, PlacementConfig{ImageLocalityWeight: -1}.WithDefaults().Validate())
	assert.Error(t, PlacementConfig{NodeDownAfter: -time.Second}.WithDefaults().Validate())
	c := PlacementConfig{}.WithDefaults()
	assert.Error(t, PlacementConfig{CPUOvercommit: 0.5}.WithDefaults().Validate())
	assert.Equal(t, PlacementConfig{ImageLocalityWeight: 2, PreCreatedWeight: 1, BalanceWeight: 1, NodeDownAfter: 30 * time.Second, CPUOvercommit: 16}, c)
}

// TestPlaceOvercommitsCPU checks that default placement fits many
// one-core replicas on a two-core node, bounded by memory instead.
func TestPlaceOvercommitsCPU(t *testing.T) {
	cfg := PlacementConfig{}.WithDefaults()
	node := &nodeView{node: store.Node{Name: "a", CPU: 2, MemoryBytes: 4 << 30}, up: true}
	d := Demand{CPU: 1, Memory: 256 << 20}
	placed := 0
	for fits(cfg, node, d, true) {
		node.alloc.CPU += d.CPU
		node.alloc.Memory += d.Memory
		placed++
	}
	assert.Equal(t, 16, placed, "4 GiB of 256 MiB replicas, within 2 cores x 16")
}
