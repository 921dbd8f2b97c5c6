package containerd_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/nodeagent"
	ctrd "github.com/ebbrun/ebb/nodeagent/containerd"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// BenchmarkColdStart measures a replica's start through the agent against
// the bare containerd floors, side by side: every iteration runs, in turn,
//
//   - pool: scale 0→1 with a pre-created task, from the moment the desired
//     scale is in the store to the endpoint arriving on a store watch;
//   - floor-start: bare task.Start → HTTP ready on a task created at the
//     start of the iteration (so, like the pool's, it has settled);
//   - create: scale 0→1 with no pre-created task, measured the same way;
//   - floor-create: bare NewContainer + NewTask + Start → HTTP ready.
//
// and the spec-start and spec-create floors: the same two through the
// agent's Runtime with a replica's full OCI spec but no agent, so the cost
// of the isolation shows apart from the cost of the agent. The agent and
// the spec floors run ebb-runc in runc's place, as ebbd does; the bare
// floors run runc, so pool / floor-start includes what ebb-runc saves. It reports each
// one's p50 and p90, the ratios of the p50s (goals: pool ≤ 1.3×
// floor-start, create ≤ 1.2× floor-create) and the agent paths' phases.
// Run with -benchtime=Nx; every iteration takes about half a second.
func BenchmarkColdStart(b *testing.B) {
	client := connect(b)
	ref := pushHello(b, client, "ebb-test/hello:bench")
	st, err := embedded.Open(filepath.Join(b.TempDir(), "state.db"), embedded.Options{})
	require.NoError(b, err)
	b.Cleanup(func() { st.Close() })
	node := uniqueNode("bench")
	b.Cleanup(func() { cleanupNode(b, client, node) })

	traces := make(chan nodeagent.StartTrace, 16)
	startAgent(b, client, st, node, 31200, func(c *nodeagent.Config) {
		c.PoolPerRevision = -1 // only explicit pool entries, so "create" never finds one
		c.DrainDelay = time.Millisecond
		c.DrainTimeout = 100 * time.Millisecond
		c.TerminationGrace = time.Second
		c.HeartbeatInterval = time.Minute
	}, func(d *nodeagent.Deps) { d.OnStarted = func(tr nodeagent.StartTrace) { traces <- tr } })

	spec := api.FunctionSpec{Image: ref, Resources: api.Resources{CPU: 1, Memory: "64Mi", Pids: 64}}
	poolRev := putRevision(b, st, "pool", 1, spec)
	createRev := putRevision(b, st, "create", 1, spec)
	assign(b, st, node, "pool", poolRev, 0, 1)
	assign(b, st, node, "create", createRev, 0, 0)

	floor := newFloor(b, client, ref)
	specFloor := newSpecFloor(b, client, ref, spec)
	var poolS, floorStartS, specStartS, createS, floorCreateS, specCreateS samples
	phases := map[string]*samples{}
	phase := func(name string, d time.Duration) {
		if phases[name] == nil {
			phases[name] = &samples{}
		}
		phases[name].add(d)
	}

	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The floors' tasks are created first, so that when they start
		// they have sat idle for a while, as the pool's task has.
		bare := floor.prepare(b)
		withSpec := specFloor.prepare(b)

		// pool
		waitPool(b, st, poolRev, node, 1)
		set, arrived, tr := scaleUp(b, st, node, "pool", poolRev, 1, traces)
		require.True(b, tr.PoolHit, "the pool path must hit the pool")
		poolS.add(arrived.Sub(set))
		phase("pool-1-watch-in", tr.Desired.Sub(set))
		phase("pool-2-decide", tr.Decided.Sub(tr.Desired))
		phase("pool-3-start", tr.Started.Sub(tr.Decided))
		phase("pool-4-ready", tr.Ready.Sub(tr.Started))
		phase("pool-5-publish", tr.Published.Sub(tr.Ready))
		phase("pool-6-watch-out", arrived.Sub(tr.Published))
		scaleDown(b, st, node, "pool", poolRev, 1)

		// floors for the pool path
		floorStartS.add(floor.start(b, bare))
		specStartS.add(specFloor.start(b, withSpec))

		// create
		set, arrived, tr = scaleUp(b, st, node, "create", createRev, 0, traces)
		require.False(b, tr.PoolHit)
		createS.add(arrived.Sub(set))
		phase("create-1-watch-in", tr.Desired.Sub(set))
		phase("create-2-decide", tr.Decided.Sub(tr.Desired))
		phase("create-3-container", tr.Created.Sub(tr.Decided))
		phase("create-4-task", tr.TaskCreated.Sub(tr.Created))
		phase("create-5-start", tr.Started.Sub(tr.TaskCreated))
		phase("create-6-ready", tr.Ready.Sub(tr.Started))
		phase("create-7-publish", tr.Published.Sub(tr.Ready))
		phase("create-8-watch-out", arrived.Sub(tr.Published))
		scaleDown(b, st, node, "create", createRev, 0)

		// floors for the create path
		floorCreateS.add(floor.createAndStart(b))
		specCreateS.add(specFloor.createAndStart(b))
	}
	b.StopTimer()

	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	report := func(name string, s samples) {
		b.ReportMetric(ms(s.p(50)), name+"-p50-ms")
		b.ReportMetric(ms(s.p(90)), name+"-p90-ms")
	}
	report("pool", poolS)
	report("floor-start", floorStartS)
	report("spec-start", specStartS)
	report("create", createS)
	report("floor-create", floorCreateS)
	report("spec-create", specCreateS)
	b.ReportMetric(float64(poolS.p(50))/float64(floorStartS.p(50)), "pool/floor-start")
	b.ReportMetric(float64(poolS.p(50))/float64(specStartS.p(50)), "pool/spec-start")
	b.ReportMetric(float64(createS.p(50))/float64(floorCreateS.p(50)), "create/floor-create")
	b.ReportMetric(float64(createS.p(50))/float64(specCreateS.p(50)), "create/spec-create")
	names := make([]string, 0, len(phases))
	for name := range phases {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b.ReportMetric(ms(phases[name].p(50)), name+"-p50-ms")
	}
	b.Logf("n=%d\npool         %s\nfloor-start  %s\nspec-start   %s\ncreate       %s\nfloor-create %s\nspec-create  %s",
		b.N, poolS, floorStartS, specStartS, createS, floorCreateS, specCreateS)
	for _, name := range names {
		b.Logf("%-20s %s", name, *phases[name])
	}
}

// scaleUp sets the revision's desired replicas to 1 and returns when that
// write was committed, when the endpoint arrived on a watch, and the
// agent's trace of the start.
func scaleUp(b *testing.B, st store.Store, node, fn, rev string, pool int, traces <-chan nodeagent.StartTrace) (set, arrived time.Time, tr nodeagent.StartTrace) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, afterRev, err := st.List(ctx, store.EndpointsPrefix(rev))
	require.NoError(b, err)
	events, err := st.Watch(ctx, store.EndpointsPrefix(rev), afterRev)
	require.NoError(b, err)
	_, err = st.Txn(ctx, store.PutJSON(store.AssignmentKey(node, rev),
		store.Assignment{Function: fn, Revision: rev, Replicas: 1, PreCreated: pool}, store.AnyVersion))
	set = time.Now()
	require.NoError(b, err)
	for ev := range events {
		require.NoError(b, ev.Err)
		if ev.Type == store.EventPut {
			arrived = time.Now()
			select {
			case tr = <-traces:
				// The commit happened before the agent saw it, even when
				// this goroutine read the clock later than the agent did.
				if tr.Desired.Before(set) {
					set = tr.Desired
				}
				return set, arrived, tr
			case <-ctx.Done():
				b.Fatal("no start trace")
			}
		}
	}
	b.Fatal("watch ended before the endpoint arrived")
	return
}

// scaleDown goes back to zero and waits until only the pool is left.
func scaleDown(b *testing.B, st store.Store, node, fn, rev string, pool int) {
	b.Helper()
	assign(b, st, node, fn, rev, 0, pool)
	// Polls while the agent has containerd and runc stop the replicas.
	require.Eventually(b, func() bool {
		recs, _, err := store.ListJSON[store.Replica](context.Background(), st, store.ReplicasPrefix(node))
		require.NoError(b, err)
		n := 0
		for _, r := range recs {
			if r.Value.Revision == rev && r.Value.State != store.ReplicaPreCreated {
				n++
			}
		}
		return n == 0
	}, 30*time.Second, time.Millisecond)
}

func waitPool(b *testing.B, st store.Store, rev, node string, n int) {
	b.Helper()
	// Polls while containerd creates the pool's tasks.
	require.Eventually(b, func() bool {
		s := revStatus(st, rev, node)
		return s.PreCreated == n && s.Ready == 0
	}, 30*time.Second, time.Millisecond, "pool of %s", rev)
}

// floor starts hello through containerd with nothing around it: no store,
// no agent, output to /dev/null, the fastest readiness poll.
type floor struct {
	client *containerd.Client
	image  containerd.Image
	ctx    context.Context
	seq    int
}

func newFloor(b *testing.B, client *containerd.Client, ref string) *floor {
	ctx := namespaces.WithNamespace(context.Background(), "ebb")
	img, err := client.GetImage(ctx, ref)
	require.NoError(b, err)
	return &floor{client: client, image: img, ctx: ctx}
}

func (f *floor) create(b *testing.B) (containerd.Container, int) {
	f.seq++
	port := testenv.FreePort(b)
	c, err := f.client.NewContainer(f.ctx, fmt.Sprintf("floor-%d-%d", time.Now().UnixNano(), f.seq),
		containerd.WithNewSnapshot(fmt.Sprintf("floor-%d-%d", time.Now().UnixNano(), f.seq), f.image),
		containerd.WithNewSpec(oci.WithImageConfig(f.image), oci.WithHostNamespace(specs.NetworkNamespace),
			oci.WithEnv([]string{fmt.Sprintf("PORT=%d", port)})))
	require.NoError(b, err)
	return c, port
}

func (f *floor) destroy(b *testing.B, c containerd.Container, t containerd.Task) {
	if t != nil {
		_, err := t.Delete(f.ctx, containerd.WithProcessKill)
		require.NoError(b, err)
	}
	require.NoError(b, c.Delete(f.ctx, containerd.WithSnapshotCleanup))
}

// floorTask is a bare task created ahead of its start.
type floorTask struct {
	c    containerd.Container
	t    containerd.Task
	port int
}

func (f *floor) prepare(b *testing.B) floorTask {
	c, port := f.create(b)
	t, err := c.NewTask(f.ctx, cio.NullIO)
	require.NoError(b, err)
	return floorTask{c: c, t: t, port: port}
}

// start: task.Start → HTTP ready on a task created beforehand.
func (f *floor) start(b *testing.B, ft floorTask) time.Duration {
	t0 := time.Now()
	require.NoError(b, ft.t.Start(f.ctx))
	httpReady(b, ft.port)
	d := time.Since(t0)
	f.destroy(b, ft.c, ft.t)
	return d
}

// createAndStart: NewContainer + NewTask + Start → HTTP ready.
func (f *floor) createAndStart(b *testing.B) time.Duration {
	t0 := time.Now()
	c, port := f.create(b)
	t, err := c.NewTask(f.ctx, cio.NullIO)
	require.NoError(b, err)
	require.NoError(b, t.Start(f.ctx))
	httpReady(b, port)
	d := time.Since(t0)
	f.destroy(b, c, t)
	return d
}

// httpReady polls with one GET every 100µs until it gets a status line.
func httpReady(b *testing.B, port int) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr)
			_, err = bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil {
				return
			}
		}
		time.Sleep(100 * time.Microsecond) // the floor's poll, finer than the agent's
	}
	b.Fatalf("%s not ready", addr)
}

// specFloor starts hello through the agent's own Runtime with the spec a
// replica gets (read-only rootfs, seccomp, limits, fifo output), without the
// agent: it tells the cost of the isolation from the cost of the agent.
type specFloor struct {
	rt   *ctrd.Runtime
	spec *nodeagent.ContainerSpec
	seq  int
}

func newSpecFloor(b *testing.B, client *containerd.Client, ref string, fs api.FunctionSpec) *specFloor {
	rt, err := ctrd.New(client, ctrd.Config{FIFODir: filepath.Join(b.TempDir(), "fifo"), RuncBinary: ebbRuncBinary(b)})
	require.NoError(b, err)
	b.Cleanup(rt.Close)
	img, err := rt.Image(context.Background(), ref)
	require.NoError(b, err)
	fs = fs.WithDefaults()
	mem, err := api.ParseBytes(fs.Resources.Memory)
	require.NoError(b, err)
	return &specFloor{rt: rt, spec: &nodeagent.ContainerSpec{
		Image: ref, Labels: map[string]string{nodeagent.LabelNode: "spec-floor"},
		Args: img.Entrypoint, Env: img.Env, CPU: fs.Resources.CPU, MemoryBytes: mem,
		PidsLimit: int64(fs.Resources.Pids), TmpBytes: nodeagent.DefaultTmpBytes,
	}}
}

func (f *specFloor) create(b *testing.B) (string, int) {
	f.seq++
	port := testenv.FreePort(b)
	spec := *f.spec
	spec.ID = fmt.Sprintf("spec-floor-%d-%d", time.Now().UnixNano(), f.seq)
	spec.Env = append(append([]string(nil), spec.Env...), fmt.Sprintf("PORT=%d", port))
	require.NoError(b, f.rt.Create(context.Background(), spec))
	return spec.ID, port
}

type specTask struct {
	id   string
	task nodeagent.Task
	port int
}

func (f *specFloor) prepare(b *testing.B) specTask {
	id, port := f.create(b)
	task, err := f.rt.NewTask(context.Background(), id, nodeagent.Output{Stdout: io.Discard, Stderr: io.Discard})
	require.NoError(b, err)
	return specTask{id: id, task: task, port: port}
}

func (f *specFloor) start(b *testing.B, st specTask) time.Duration {
	t0 := time.Now()
	require.NoError(b, st.task.Start(context.Background()))
	httpReady(b, st.port)
	d := time.Since(t0)
	require.NoError(b, f.rt.Delete(context.Background(), st.id))
	return d
}

func (f *specFloor) createAndStart(b *testing.B) time.Duration {
	t0 := time.Now()
	id, port := f.create(b)
	task, err := f.rt.NewTask(context.Background(), id, nodeagent.Output{Stdout: io.Discard, Stderr: io.Discard})
	require.NoError(b, err)
	require.NoError(b, task.Start(context.Background()))
	httpReady(b, port)
	d := time.Since(t0)
	require.NoError(b, f.rt.Delete(context.Background(), id))
	return d
}

type samples []time.Duration

func (s *samples) add(d time.Duration) { *s = append(*s, d) }

// p is the q-th percentile (nearest rank).
func (s samples) p(q int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append(samples(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	i := (q*len(c) + 99) / 100
	return c[max(i-1, 0)]
}

func (s samples) String() string {
	if len(s) == 0 {
		return "none"
	}
	c := append(samples(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	r := func(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }
	return fmt.Sprintf("p50 %s p90 %s min %s max %s", r(s.p(50)), r(s.p(90)), r(c[0]), r(c[len(c)-1]))
}
