package harness

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// TestNetSlots checks that every slot is a valid replica network whose
// range holds its port window, and that no two slots, nor a slot and make
// run's or the e2e daemons' networks, share a bridge, an address or a port.
func TestNetSlots(t *testing.T) {
	others := []struct {
		name     string
		cidr     string
		min, max int
	}{
		{"make run (ebb0)", "10.213.0.0/18", 20000, 29999},
		{"e2e daemons (ebbt<w>)", "10.214.0.0/16", 30000, 32699},
		{"ephemeral ports", "127.0.0.0/8", 32768, 60999},
	}
	bridges := map[string]bool{}
	var prev []netSlot
	for i := 0; i < netSlots; i++ {
		s := netSlot{index: i}
		cfg, err := s.config()
		require.NoError(t, err)
		require.NoError(t, cfg.Validate(), "slot %d", i)
		// The last port's address is inside the range, short of broadcast.
		last := cfg.Addr(s.portMax())
		require.True(t, last.IsValid())
		assert.True(t, cfg.CIDR.Contains(last.Next()), "slot %d: the broadcast address follows the last replica's", i)
		assert.Equal(t, slotPortCount, s.portMax()-s.portMin()+1)
		assert.False(t, strings.HasPrefix(s.bridge(), "ebbt"), "e2e daemons' bridges are ebbt<w>")
		assert.NotEqual(t, "ebb0", s.bridge())
		assert.False(t, bridges[s.bridge()], "bridge %s twice", s.bridge())
		bridges[s.bridge()] = true
		for _, o := range others {
			p := netip.MustParsePrefix(o.cidr)
			assert.False(t, p.Overlaps(cfg.CIDR), "slot %d's %s overlaps %s", i, s.cidr(), o.name)
			assert.False(t, s.portMin() <= o.max && o.min <= s.portMax(), "slot %d's ports %s overlap %s", i, s.ports(), o.name)
		}
		for _, q := range prev {
			qc, err := q.config()
			require.NoError(t, err)
			assert.False(t, qc.CIDR.Overlaps(cfg.CIDR), "slots %d and %d share addresses", q.index, i)
			assert.False(t, s.portMin() <= q.portMax() && q.portMin() <= s.portMax(), "slots %d and %d share ports", q.index, i)
		}
		prev = append(prev, s)
		assert.Equal(t, []string{"--bridge", s.bridge(), "--replica-cidr", s.cidr(), "--replica-ports", s.ports()}, s.flags())
	}
	assert.Equal(t, "ebbb1", netSlot{index: 1}.bridge())
	assert.Equal(t, "10.212.4.0/22", netSlot{index: 1}.cidr())
	assert.Equal(t, "11000-11999", netSlot{index: 1}.ports())
	assert.Equal(t, "/run/ebb/netns/ebbb1", netSlot{index: 1}.netnsDir())
}

func TestReplicaBackend(t *testing.T) {
	env := "HOME=/\nPORT=10005\nEBB_FUNCTION=dp\n"
	one := []api.ReplicaStatus{{Name: "r1", Addr: "10.212.0.7:10005"}}
	tests := []struct {
		name     string
		replicas []api.ReplicaStatus
		env      string
		want     string
		wantErr  string
	}{
		{name: "isolation on: the replica's own address", replicas: one, env: env, want: "10.212.0.7:10005"},
		{name: "isolation off: loopback", replicas: []api.ReplicaStatus{{Name: "r1", Addr: "127.0.0.1:10005"}}, env: env, want: "127.0.0.1:10005"},
		{name: "none ready", env: env, wantErr: "exactly one"},
		{name: "two ready", replicas: append(one, api.ReplicaStatus{Name: "r2", Addr: "10.212.0.8:10006"}), env: env, wantErr: "lists 2"},
		{name: "another replica answered", replicas: one, env: "PORT=10006\n", wantErr: "PORT=10006"},
		{name: "no PORT", replicas: one, env: "HOME=/\n", wantErr: "no PORT"},
		{name: "bad address", replicas: []api.ReplicaStatus{{Name: "r1", Addr: "nowhere"}}, env: env, wantErr: "address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := replicaBackend(tt.replicas, tt.env)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestHistQuantile(t *testing.T) {
	const name = "ebb_nodeagent_start_phase_seconds"
	bucket := func(le, phase string) string {
		return key(name+"_bucket", map[string]string{"le": le, "phase": phase})
	}
	before := Metrics{
		bucket("0.001", "network"): 2, bucket("0.002", "network"): 2, bucket("0.004", "network"): 2, bucket("+Inf", "network"): 2,
		bucket("0.001", "create"): 0, bucket("0.002", "create"): 0, bucket("0.004", "create"): 5, bucket("+Inf", "create"): 5,
	}
	// Since before: 10 network setups, 4 under 1 ms, 4 in 1-2 ms, 2 in 2-4 ms.
	after := Metrics{
		bucket("0.001", "network"): 6, bucket("0.002", "network"): 10, bucket("0.004", "network"): 12, bucket("+Inf", "network"): 12,
		bucket("0.001", "create"): 0, bucket("0.002", "create"): 0, bucket("0.004", "create"): 5, bucket("+Inf", "create"): 6,
	}
	tests := []struct {
		name  string
		q     float64
		phase string
		want  float64
		ok    bool
	}{
		{name: "p50 interpolates in its bucket", q: 0.5, phase: "network", want: 0.00125, ok: true},
		{name: "p40 is the first bucket's bound", q: 0.4, phase: "network", want: 0.001, ok: true},
		{name: "p20 interpolates from 0", q: 0.2, phase: "network", want: 0.0005, ok: true},
		{name: "p90 in the last finite bucket", q: 0.9, phase: "network", want: 0.003, ok: true},
		{name: "rank in +Inf gives the highest finite bound", q: 0.5, phase: "create", want: 0.004, ok: true},
		{name: "no events", q: 0.5, phase: "task"},
		{name: "q out of range", q: 1, phase: "network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := after.HistQuantile(before, tt.q, name, "phase", tt.phase)
			assert.Equal(t, tt.ok, ok)
			assert.InDelta(t, tt.want, got, 1e-12)
		})
	}
	// networkPhase reads the same histogram's sum and count too.
	after[key(name+"_sum", map[string]string{"phase": "network"})] = 0.015
	after[key(name+"_count", map[string]string{"phase": "network"})] = 10
	np := networkPhase(after, before)
	assert.InDelta(t, 10, np.Count, 1e-9)
	assert.InDelta(t, 1.5, np.MeanMs, 1e-9)
	assert.InDelta(t, 1.25, np.P50Ms, 1e-9)
	assert.InDelta(t, 3, np.P90Ms, 1e-9)
}

func TestLabelValue(t *testing.T) {
	v, ok := labelValue(`x_bucket{le="+Inf",phase="network"}`, "le")
	assert.True(t, ok)
	assert.Equal(t, "+Inf", v)
	v, ok = labelValue(`x_bucket{phase="network",le="0.5"}`, "le")
	assert.True(t, ok)
	assert.Equal(t, "0.5", v)
	_, ok = labelValue(`x_bucket{file="le"}`, "le")
	assert.False(t, ok)
	_, ok = labelValue(`x_count`, "le")
	assert.False(t, ok)
}

func TestColdEbbdSample(t *testing.T) {
	var c coldEbbd
	hit := coldSample{ttfb: 10 * time.Millisecond, hit: true, phases: map[string]float64{"agent start": 6}}
	miss := coldSample{ttfb: 80 * time.Millisecond}
	c.sample(hit, false)
	c.sample(miss, false) // a turn-taking function the agent had no task for
	c.sample(miss, true)
	c.sample(hit, true) // a never-called function that hit after all: left out
	assert.Equal(t, []time.Duration{10 * time.Millisecond}, c.hits)
	assert.Equal(t, []time.Duration{6 * time.Millisecond}, c.agent)
	assert.Equal(t, []time.Duration{80 * time.Millisecond, 80 * time.Millisecond}, c.misses)
	assert.Len(t, c.missSamples, 2)
	assert.Equal(t, 1, c.missNotMiss)
}

func TestAlternateAndBlockP50s(t *testing.T) {
	assert.Equal(t, []string{"on", "off"}, alternate(0, "on", "off"))
	assert.Equal(t, []string{"off", "on"}, alternate(1, "on", "off"))
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	assert.Equal(t, []float64{2, 10}, blockP50s(ms(1, 2, 3, 10, 10, 10), 2))
	assert.Equal(t, []float64{1, 2}, blockP50s(ms(1, 2), 5), "no more blocks than samples")
	assert.Empty(t, blockP50s(nil, 3))
}

func TestMissPhaseStats(t *testing.T) {
	on := []coldSample{
		{agentPhases: map[string]float64{"network": 1, "create": 20, "agent start": 70}},
		{agentPhases: map[string]float64{"network": 3, "create": 30}}, // agent start counted twice: not kept
	}
	off := []coldSample{{agentPhases: map[string]float64{"create": 25, "agent start": 60}}}
	st := missPhaseStats(on, off)
	by := map[string]MissPhaseStat{}
	for _, s := range st {
		by[s.Name] = s
	}
	assert.Len(t, st, len(agentStartPhases)+1)
	assert.Equal(t, MissPhaseStat{Name: "network", OnP50: 2, OnN: 2}, by["network"])
	assert.Equal(t, MissPhaseStat{Name: "create", OnP50: 25, OnN: 2, OffP50: 25, OffN: 1}, by["create"])
	assert.Equal(t, MissPhaseStat{Name: "agent start", OnP50: 70, OnN: 1, OffP50: 60, OffN: 1}, by["agent start"])
}

func TestColdStartIsolationGoals(t *testing.T) {
	goal := func(r *ColdStartResult, prefix string) Goal {
		for _, g := range r.Goals() {
			if strings.HasPrefix(g.Goal, prefix) {
				return g
			}
		}
		t.Fatalf("no goal %q", prefix)
		return Goal{}
	}
	base := func() *ColdStartResult {
		return &ColdStartResult{N: 100, MissN: 20,
			RouterHit: Dist{N: 100, P50: 10.4, P99: 20}, RouterHitOff: Dist{N: 100, P50: 9.9, P99: 21}, IsolationP50Diff: 0.5}
	}
	r := base()
	assert.Equal(t, GoalMet, goal(r, "isolation costs").Status)
	assert.Equal(t, GoalMet, goal(r, "cold start TTFB p50").Status)
	assert.Contains(t, goal(r, "every cold request").Value, "of 240")

	r = base()
	r.IsolationP50Diff = 1.2
	assert.Equal(t, GoalMissed, goal(r, "isolation costs").Status)

	r = base()
	r.RouterHit.P50 = 15.5
	assert.Equal(t, GoalMissed, goal(r, "cold start TTFB p50").Status)

	r = base()
	r.RouterHitOff = Dist{}
	assert.Equal(t, GoalNotMeasured, goal(r, "isolation costs").Status)
}

func TestNetworkLeftFailsTheSection(t *testing.T) {
	h := &Harness{}
	assert.NoError(t, h.takeNetworkLeft())
	h.noteNetworkLeft(assert.AnError)
	err := h.takeNetworkLeft()
	require.ErrorIs(t, err, errNetworkLeft)
	assert.ErrorIs(t, err, assert.AnError)
	assert.NoError(t, h.takeNetworkLeft(), "taken once per section")
	assert.True(t, h.leftAny, "the run still fails at the end")
}

func TestConfigIsolation(t *testing.T) {
	assert.Equal(t, IsolationOn, Config{}.WithDefaults().Isolation)
	assert.NoError(t, Config{Isolation: IsolationOff}.WithDefaults().Validate())
	assert.ErrorContains(t, Config{Isolation: "maybe"}.WithDefaults().Validate(), "-isolation")
}
