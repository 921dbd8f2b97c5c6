package autoscaler

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

func putNamespace(t *testing.T, s store.Store, ns string, q api.Quota) {
	t.Helper()
	put(t, s, store.NamespaceKey(ns), store.Namespace{Name: ns, CreatedAt: t0, Quota: q})
}

// loaded is a revision at zero (initial scale 0) whose target is 7
// concurrent requests per replica.
func loaded(sp *api.FunctionSpec) {
	sp.Scale.Initial = intp(0)
	sp.Concurrency.Target = 10
}

// load reports concurrency for rev from one router every second for d.
func load(r *Runner, rev string, concurrency float64, d time.Duration) {
	for range int(d / time.Second) {
		time.Sleep(time.Second)
		r.Report([]api.RevisionStat{loadStat(rev, "router-a", concurrency, concurrency*10)})
	}
}

// Job pods hold their namespace's quota first: the revisions share what
// they leave, and get it back when the pods' records go.
func TestRunnerLeavesJobPodsTheirShareOfTheQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		putNamespace(t, s, "team-a", api.Quota{Replicas: 4})
		rev := putRevision(t, s, api.QualifiedName("team-a", "busy"), 1, loaded)
		putNode(t, s, "n1", "img")
		for i := range 3 {
			put(t, s, store.JobPodKey("n1", store.JobPodName("batch.team-a", i)), store.JobPod{Name: store.JobPodName("batch.team-a", i),
				Job: "batch.team-a", Namespace: "team-a", Index: i, Node: "n1", Spec: api.JobSpec{Image: "img"}.WithDefaults()})
		}
		// Another namespace's job pods hold nothing of team-a's.
		put(t, s, store.JobPodKey("n1", "other-0"), store.JobPod{Name: "other-0", Job: "other", Index: 0, Node: "n1", Spec: api.JobSpec{Image: "img"}.WithDefaults()})
		env := startRunner(t, s, RunnerConfig{Tick: time.Hour})
		require.NoError(t, env.runner.Activate(context.Background(), rev))
		putEndpoints(t, s, rev, 1)

		load(env.runner, rev, 35, 30*time.Second)
		env.tick(t)
		sc, _ := getScale(t, s, rev)
		assert.Equal(t, 1, sc.Desired, "three of four replicas' worth are the job's")
		assert.Equal(t, "clipped by namespace quota: replicas 4 of 4", sc.Clipped)

		_, err := s.Txn(context.Background(), store.Delete(store.JobPodKey("n1", store.JobPodName("batch.team-a", 0)), store.AnyVersion),
			store.Delete(store.JobPodKey("n1", store.JobPodName("batch.team-a", 1)), store.AnyVersion))
		require.NoError(t, err)
		synctest.Wait()
		time.Sleep(2 * time.Second) // the next decision interval, in the synctest bubble
		env.runner.Report([]api.RevisionStat{loadStat(rev, "router-a", 35, 350)})
		env.tick(t)
		sc, _ = getScale(t, s, rev)
		assert.Equal(t, 3, sc.Desired, "the pods that ended gave their share back")
	})
}

func TestRunnerClipsScaleUpsToTheNamespaceQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		putNamespace(t, s, "team-a", api.Quota{Replicas: 2})
		rev := putRevision(t, s, api.QualifiedName("team-a", "busy"), 1, loaded)
		putNode(t, s, "n1", "img")
		env := startRunner(t, s, RunnerConfig{Tick: time.Hour})
		require.NoError(t, env.runner.Activate(context.Background(), rev))
		putEndpoints(t, s, rev, 1)

		// 35 concurrent requests want 5 replicas; the quota lets 2 run.
		load(env.runner, rev, 35, 30*time.Second)
		env.tick(t)
		sc, _ := getScale(t, s, rev)
		assert.Equal(t, store.Scale{
			Revision: rev, Function: "busy.team-a", Desired: 2, Wanted: 5,
			Clipped:  "clipped by namespace quota: replicas 2 of 2",
			Observed: sc.Observed, Panic: sc.Panic, KeepWarmUntil: sc.KeepWarmUntil, UpdatedAt: sc.UpdatedAt,
		}, sc)
		a, _ := getAssignment(t, s, "n1", rev)
		assert.Equal(t, 2, a.Replicas)
		assert.Equal(t, 2.0, metricValue(t, env.runner.m.desired.WithLabelValues("team-a", "busy.team-a", rev)))
		clipped := metricValue(t, env.runner.m.quotaClipped.WithLabelValues("team-a"))
		assert.Positive(t, clipped)
		st, _ := env.runner.Status(rev)
		assert.Equal(t, 5, st.Decision.Desired, "the decider's own count is kept: it is the demand")

		// Each clipped decision counts, even when it writes nothing new.
		putEndpoints(t, s, rev, 2)
		time.Sleep(2 * time.Second) // the next decision interval, in the synctest bubble
		env.runner.Report([]api.RevisionStat{loadStat(rev, "router-a", 35, 350)})
		env.tick(t)
		assert.Equal(t, clipped+1, metricValue(t, env.runner.m.quotaClipped.WithLabelValues("team-a")))

		// The quota is raised: the next decision runs all 5 and the
		// reason goes.
		putNamespace(t, s, "team-a", api.Quota{Replicas: 10})
		synctest.Wait()
		time.Sleep(2 * time.Second) // the next decision interval, in the synctest bubble
		env.runner.Report([]api.RevisionStat{loadStat(rev, "router-a", 35, 350)})
		env.tick(t)
		sc, _ = getScale(t, s, rev)
		assert.Equal(t, 5, sc.Desired)
		assert.Zero(t, sc.Wanted)
		assert.Empty(t, sc.Clipped)

		// Memory caps too: 3 replicas of 256Mi fit in 800Mi.
		putNamespace(t, s, "team-a", api.Quota{Memory: "800Mi"})
		synctest.Wait()
		time.Sleep(2 * time.Second) // the next decision interval, in the synctest bubble
		env.runner.Report([]api.RevisionStat{loadStat(rev, "router-a", 35, 350)})
		env.tick(t)
		sc, _ = getScale(t, s, rev)
		assert.Equal(t, 3, sc.Desired)
		assert.Equal(t, "clipped by namespace quota: memory 768Mi of 800Mi", sc.Clipped)
	})
}

func TestRunnerIgnoresOtherNamespacesQuotas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		putNamespace(t, s, "team-a", api.Quota{Replicas: 1})
		putNamespace(t, s, "team-b", api.Quota{Functions: 1}) // caps no replicas
		inDefault := putRevision(t, s, "busy", 1, loaded)
		inB := putRevision(t, s, api.QualifiedName("team-b", "busy"), 1, loaded)
		putNode(t, s, "n1", "img")
		env := startRunner(t, s, RunnerConfig{Tick: time.Hour})
		for _, rev := range []string{inDefault, inB} {
			require.NoError(t, env.runner.Activate(context.Background(), rev))
			putEndpoints(t, s, rev, 1)
		}
		for range 30 {
			time.Sleep(time.Second)
			env.runner.Report([]api.RevisionStat{loadStat(inDefault, "r", 35, 350), loadStat(inB, "r", 35, 350)})
		}
		env.tick(t)
		for _, rev := range []string{inDefault, inB} {
			sc, _ := getScale(t, s, rev)
			assert.Equal(t, 5, sc.Desired, rev)
			assert.Empty(t, sc.Clipped, rev)
		}
		assert.Zero(t, metricValue(t, env.runner.m.quotaClipped.WithLabelValues("default")))
		assert.Zero(t, metricValue(t, env.runner.m.quotaClipped.WithLabelValues("team-b")))
	})
}

// TestRunnerSharesAQuotaBetweenRevisions: a revision that holds the whole
// quota gives a replica up at once when another revision of its namespace
// is activated, in the activation's own step, so the newcomer's cold start
// waits for no tick.
func TestRunnerSharesAQuotaBetweenRevisions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := openStore(t)
		putNamespace(t, s, "team-a", api.Quota{Replicas: 2})
		busy := putRevision(t, s, api.QualifiedName("team-a", "busy"), 1, loaded)
		idle := putRevision(t, s, api.QualifiedName("team-a", "idle"), 1, loaded)
		putNode(t, s, "n1", "img")
		env := startRunner(t, s, RunnerConfig{Tick: time.Hour})
		require.NoError(t, env.runner.Activate(context.Background(), busy))
		putEndpoints(t, s, busy, 1)
		load(env.runner, busy, 35, 30*time.Second)
		env.tick(t)
		a, _ := getAssignment(t, s, "n1", busy)
		require.Equal(t, 2, a.Replicas, "busy holds the whole quota")

		start := time.Now()
		require.NoError(t, env.runner.Activate(context.Background(), idle))
		assert.Zero(t, time.Since(start), "the activation's decision is in the store at once")
		a, _ = getAssignment(t, s, "n1", idle)
		assert.Equal(t, 1, a.Replicas, "the newcomer's fair share")
		a, _ = getAssignment(t, s, "n1", busy)
		assert.Equal(t, 1, a.Replicas, "busy came down to its share")
		sc, _ := getScale(t, s, busy)
		assert.Equal(t, "clipped by namespace quota: replicas 2 of 2", sc.Clipped)
		assert.Equal(t, 2.0, metricValue(t, env.runner.m.decisions.WithLabelValues("quota", "written")),
			"busy's re-decision down to its share, and the newcomer's up to its own")

		// Ticks keep the shares: nobody flaps.
		for range 5 {
			time.Sleep(2 * time.Second) // the next decision interval, in the synctest bubble
			env.runner.Report([]api.RevisionStat{loadStat(busy, "r", 35, 350), loadStat(idle, "r", 1, 10)})
			env.tick(t)
			for _, rev := range []string{busy, idle} {
				a, _ := getAssignment(t, s, "n1", rev)
				assert.Equal(t, 1, a.Replicas, rev)
			}
		}
	})
}

// TestRunnerSaturatedNamespaceDoesNotDelayAnotherNamespacesColdStart: a
// namespace at its quota with demand for far more must not slow another
// namespace's cold start. team-b's first request (Activate) is timed on
// the bubble's clock from the poke to its assignment in the store, on a
// node with room for 8 replicas, alone and beside team-a, whose one
// function wants 20 and is clipped to 2 on every tick. The activation
// decides team-b's revision only: it reads team-a's state not at all
// (team-b has no quota) and places beside the 2 replicas the quota lets
// team-a hold. Without the quota, team-a would take the node and team-b's
// cold start would find no room at all: that is what the quota protects.
func TestRunnerSaturatedNamespaceDoesNotDelayAnotherNamespacesColdStart(t *testing.T) {
	tests := []struct {
		name string
		// saturated adds team-a, loaded for 20 replicas; quota is its.
		saturated bool
		quota     api.Quota
		// placed says team-b's cold start gets its replica.
		placed bool
	}{
		{name: "alone", placed: true},
		{name: "beside a namespace saturated at its quota", saturated: true, quota: api.Quota{Replicas: 2}, placed: true},
		{name: "beside a saturated namespace without a quota", saturated: true, placed: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := openStore(t)
				put(t, s, store.NodeKey("n1"), store.Node{
					Name: "n1", CPU: 64, MemoryBytes: 2 * gib, Images: []string{"img"}, PoolCapacity: 8,
					Heartbeat: t0, HeartbeatInterval: api.D(5 * time.Second),
				})
				cold := putRevision(t, s, api.QualifiedName("team-b", "cold"), 1, loaded)
				var busy string
				if tt.saturated {
					putNamespace(t, s, "team-a", tt.quota)
					busy = putRevision(t, s, api.QualifiedName("team-a", "busy"), 1, loaded)
				}
				env := startRunner(t, s, RunnerConfig{}) // ticking every 2 s
				if tt.saturated {
					require.NoError(t, env.runner.Activate(context.Background(), busy))
					putEndpoints(t, s, busy, 1)
					load(env.runner, busy, 140, 30*time.Second) // wants 20
					synctest.Wait()                             // the tick due now has run
					sc, _ := getScale(t, s, busy)
					require.Equal(t, 20, max(sc.Wanted, sc.Desired), "team-a wants 20")
					if tt.quota.Replicas > 0 {
						require.Equal(t, 2, sc.Desired)
						require.Positive(t, metricValue(t, env.runner.m.quotaClipped.WithLabelValues("team-a")), "team-a is clipped tick after tick")
					}
				}
				ticks := metricValue(t, env.runner.m.decisions.WithLabelValues("tick", "written")) +
					metricValue(t, env.runner.m.decisions.WithLabelValues("tick", "unchanged"))

				start := time.Now()
				require.NoError(t, env.runner.Activate(context.Background(), cold))
				elapsed := time.Since(start)
				a, ok := getAssignment(t, s, "n1", cold)
				synctest.Wait()

				assert.Zero(t, elapsed, "the cold start's decision is in the store as Activate returns")
				assert.Equal(t, ticks, metricValue(t, env.runner.m.decisions.WithLabelValues("tick", "written"))+
					metricValue(t, env.runner.m.decisions.WithLabelValues("tick", "unchanged")), "no tick ran in between")
				assert.Zero(t, metricValue(t, env.runner.m.decisions.WithLabelValues("quota", "written")), "the activation re-decided no other revision")
				if tt.placed {
					require.True(t, ok)
					assert.Equal(t, 1, a.Replicas, "team-b's replica is assigned at once")
					assert.Zero(t, metricValue(t, env.runner.m.unplaced.WithLabelValues("team-b", "cold.team-b", cold)))
				} else {
					assert.Zero(t, a.Replicas, "no room left on the node")
					assert.Equal(t, 1.0, metricValue(t, env.runner.m.unplaced.WithLabelValues("team-b", "cold.team-b", cold)))
				}
			})
		})
	}
}
