package nodeagent

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPlanRevision(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	v := func(id string, p phase, since int) replicaView {
		return replicaView{ID: id, Phase: p, Since: at(since)}
	}
	startingCreate := func(id string, since int) replicaView {
		return replicaView{ID: id, Phase: phaseCreating, StartRequested: true, Since: at(since)}
	}
	start := func(id string) action { return action{Kind: actStart, ID: id} }
	stop := func(id string) action { return action{Kind: actStop, ID: id} }
	create := action{Kind: actCreateStarted}
	pool := action{Kind: actCreatePool}

	tests := []struct {
		name string
		in   revInput
		want []action
	}{
		{name: "nothing to do", in: revInput{CanCreate: true}},
		{name: "cold start without a pool creates", in: revInput{Want: 2, CanCreate: true}, want: []action{create, create}},
		{name: "cannot create: wait", in: revInput{Want: 2}},
		{name: "pool first, oldest first", in: revInput{Want: 1, WantPool: 1, Replicas: []replicaView{
			v("new", phasePooled, 2), v("old", phasePooled, 1)}},
			want: []action{start("old")}},
		{name: "then pool entries still being created, then new ones", in: revInput{Want: 3, CanCreate: true, Replicas: []replicaView{
			v("creating", phaseCreating, 2), v("pooled", phasePooled, 3)}},
			want: []action{start("pooled"), start("creating"), create}},
		{name: "pool is used even when creating is not allowed", in: revInput{Want: 2, Replicas: []replicaView{v("p", phasePooled, 1)}},
			want: []action{start("p")}},
		{name: "active replicas count whatever their phase", in: revInput{Want: 4, CanCreate: true, Replicas: []replicaView{
			v("a", phaseReady, 1), v("b", phaseStarting, 2), v("c", phaseBackoff, 3), startingCreate("d", 4)}}},
		{name: "stopping replicas do not count", in: revInput{Want: 1, CanCreate: true, Replicas: []replicaView{
			v("a", phaseStopping, 1)}}, want: []action{create}},
		{name: "scale down stops crashed, then starting, then newest ready", in: revInput{Want: 1, Replicas: []replicaView{
			v("r-old", phaseReady, 1), v("r-new", phaseReady, 5), v("crashed", phaseBackoff, 2), v("starting", phaseStarting, 3)}},
			want: []action{stop("crashed"), stop("starting"), stop("r-new")}},
		{name: "scale to zero", in: revInput{Replicas: []replicaView{v("a", phaseReady, 1), startingCreate("b", 2)}},
			want: []action{stop("b"), stop("a")}},
		{name: "refill the pool", in: revInput{WantPool: 2, CanCreate: true, Replicas: []replicaView{v("p", phasePooled, 1)}},
			want: []action{pool}},
		{name: "no refill while failing", in: revInput{WantPool: 2, Replicas: []replicaView{v("p", phasePooled, 1)}}},
		{name: "shrink the pool: creations first, then newest", in: revInput{WantPool: 1, CanCreate: true, Replicas: []replicaView{
			v("p-old", phasePooled, 1), v("p-new", phasePooled, 3), v("c", phaseCreating, 4)}},
			want: []action{stop("c"), stop("p-new")}},
		{name: "scale up and refill together", in: revInput{Want: 1, WantPool: 1, CanCreate: true, Replicas: []replicaView{
			v("p", phasePooled, 1)}},
			want: []action{start("p"), pool}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, planRevision(tt.in))
		})
	}
}

func TestPoolTargets(t *testing.T) {
	now := time.Unix(1700000000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	policy := poolPolicy{PerRevision: 1, Window: 10 * time.Minute, MemoryBudget: 64 << 20, EntryMemory: 16 << 20} // 4 entries

	tests := []struct {
		name   string
		policy poolPolicy
		cands  []poolCandidate
		want   map[string]int
	}{
		{name: "recently used revisions get one", policy: policy, cands: []poolCandidate{
			{Rev: "a", LastUsed: ago(time.Minute)}, {Rev: "b", LastUsed: ago(11 * time.Minute)}, {Rev: "never"}},
			want: map[string]int{"a": 1}},
		{name: "explicit requests count and win", policy: policy, cands: []poolCandidate{
			{Rev: "a", LastUsed: ago(time.Minute)}, {Rev: "b", Explicit: 3}},
			want: map[string]int{"b": 3, "a": 1}},
		{name: "budget goes to explicit, then most recent", policy: policy, cands: []poolCandidate{
			{Rev: "old", LastUsed: ago(5 * time.Minute)}, {Rev: "recent", LastUsed: ago(time.Second)}, {Rev: "x", Explicit: 3}},
			want: map[string]int{"x": 3, "recent": 1}},
		{name: "policy off keeps explicit", policy: poolPolicy{Window: time.Minute, MemoryBudget: 1 << 30, EntryMemory: 1 << 20}, cands: []poolCandidate{
			{Rev: "a", LastUsed: now}, {Rev: "b", Explicit: 2}},
			want: map[string]int{"b": 2}},
		{name: "zero budget", policy: poolPolicy{PerRevision: 1, Window: time.Minute, EntryMemory: 1}, cands: []poolCandidate{
			{Rev: "a", LastUsed: now, Explicit: 1}},
			want: map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, poolTargets(tt.policy, now, tt.cands))
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		failures int
		want     time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {9, time.Second}, {1000, time.Second}}
	for _, tt := range tests {
		assert.Equal(t, tt.want, backoff(100*time.Millisecond, time.Second, tt.failures), "failures=%d", tt.failures)
	}
}
