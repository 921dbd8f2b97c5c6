package nodeagent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/nodeagent"
	"github.com/ebbrun/ebb/nodeagent/fake"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

const (
	node     = "node-a"
	image    = "example.com/hello:1"
	badImage = "example.com/bad:1"
	crashImg = "example.com/crash:1"
	stubborn = "example.com/stubborn:1"
)

// An env runs an agent on a fresh store and fake runtime. Make it inside a
// testing/synctest bubble: the agent's timers then run on the bubble's
// clock, which moves only when every goroutine of the test waits on it, so
// a 300ms grace takes no time and tests assert what happened at which
// instant instead of sleeping.
type env struct {
	t     *testing.T
	store store.Store
	rt    *fake.Runtime
	cfg   nodeagent.Config
	reg   *prometheus.Registry
	agent *nodeagent.Agent
	stop  func()
	// requests is the agent's Deps.Requests.
	requests requests
	// net, if set, is the agent's Deps.Network.
	net *fake.Network
	// users, if set, is the agent's Deps.Users.
	users nodeagent.UserRanges
	// lease, if set, is the agent's Deps.Lease.
	lease nodeagent.NodeLease
}

func newEnv(t *testing.T, tweak func(*nodeagent.Config)) *env {
	t.Helper()
	return newEnvWith(t, tweak, nil)
}

// newEnvWith is newEnv with replicas in the namespaces of net, when it is
// not nil.
func newEnvWith(t *testing.T, tweak func(*nodeagent.Config), net *fake.Network) *env {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	rt := fake.New()
	rt.SetNetwork(net)
	// After the agent stops (cleanups run last first): the fake servers'
	// goroutines must end for the bubble to end.
	t.Cleanup(rt.Close)
	rt.AddImage(nodeagent.ImageConfig{Ref: image, Entrypoint: []string{"/hello"}, Env: []string{"PATH=/bin", "GREETING=hi"}}, fake.Behavior{})
	rt.AddImage(nodeagent.ImageConfig{Ref: badImage, Entrypoint: []string{"/hello"}}, fake.Behavior{BadExec: "exec format error: ELF for arm64, node is amd64"})
	rt.AddImage(nodeagent.ImageConfig{Ref: crashImg, Entrypoint: []string{"/hello"}}, fake.Behavior{ExitOnStart: 3})
	rt.AddImage(nodeagent.ImageConfig{Ref: stubborn, Entrypoint: []string{"/hello"}}, fake.Behavior{IgnoreTERM: true})
	runDir := t.TempDir()
	// The agent mounts a tmpfs for the secrets of a node whose RunDir is on
	// a disk, and leaves it (see mountSecretsTmpfs); the dir can go only
	// once it is unmounted.
	t.Cleanup(func() { _ = unix.Unmount(filepath.Join(runDir, node, "secrets"), unix.MNT_DETACH) })
	cfg := nodeagent.Config{
		Node:    node,
		DataDir: t.TempDir(),
		RunDir:  runDir,
		// Replicas listen on the runtime's in-memory network, one per
		// env, so envs share the range; the agent still skips a port that
		// a program holds on the host.
		PortMin:           23000,
		PortMax:           23049,
		ProbeTimeout:      5 * time.Second,
		RestartBackoff:    20 * time.Millisecond,
		RestartBackoffMax: 200 * time.Millisecond,
		DrainDelay:        10 * time.Millisecond,
		DrainTimeout:      5 * time.Second,
		TerminationGrace:  300 * time.Millisecond,
		HeartbeatInterval: 100 * time.Millisecond,
		ResyncInterval:    50 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	e := &env{t: t, store: st, rt: rt, cfg: cfg, requests: requests{rt: rt}, net: net}
	e.start()
	t.Cleanup(func() { e.stop() })
	return e
}

// secretReader serves secret objects from memory, by namespace/name.
type secretReader map[string]map[string][]byte

func (r secretReader) SecretValues(_ context.Context, ns, name string) (map[string][]byte, error) {
	data, ok := r[ns+"/"+name]
	if !ok {
		return nil, fmt.Errorf("secret %s/%s: %w", ns, name, store.ErrNotFound)
	}
	return data, nil
}

// start runs a fresh agent on the env's store and runtime, as a restarted
// agent process would.
func (e *env) start() {
	e.t.Helper()
	e.reg = prometheus.NewRegistry()
	deps := nodeagent.Deps{
		Store: e.store, Runtime: e.rt, Registerer: e.reg, Requests: &e.requests, Dial: e.rt.Dial,
		Secrets: secretReader{api.DefaultNamespace + "/app": {"token": []byte("s3cret"), "key": []byte("k")}},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if e.net != nil {
		deps.Network = e.net
	}
	if e.users != nil {
		deps.Users = e.users
	}
	if e.lease != nil {
		deps.Lease = e.lease
	}
	a, err := nodeagent.New(e.cfg, deps)
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	e.agent = a
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(e.t, err)
			case <-time.After(10 * time.Second):
				e.t.Error("agent did not stop")
			}
		})
	}
}

func (e *env) deploy(fn string, gen int, spec api.FunctionSpec) string {
	e.t.Helper()
	rev := api.RevisionName(fn, gen)
	spec = spec.WithDefaults()
	require.NoError(e.t, spec.Validate())
	_, err := e.store.Txn(context.Background(), store.PutJSON(store.RevisionKey(fn, rev),
		store.Revision{Name: rev, Function: fn, Generation: gen, Spec: spec, CreatedAt: time.Now()}, store.AnyVersion))
	require.NoError(e.t, err)
	return rev
}

func (e *env) assign(fn, rev string, replicas, preCreated int) {
	e.t.Helper()
	_, err := e.store.Txn(context.Background(), store.PutJSON(store.AssignmentKey(node, rev),
		store.Assignment{Function: fn, Revision: rev, Replicas: replicas, PreCreated: preCreated}, store.AnyVersion))
	require.NoError(e.t, err)
}

func (e *env) unassign(rev string) {
	e.t.Helper()
	_, err := e.store.Txn(context.Background(), store.Delete(store.AssignmentKey(node, rev), store.AnyVersion))
	require.NoError(e.t, err)
}

func (e *env) endpoints(rev string) []store.Endpoint {
	e.t.Helper()
	eps, _, err := store.ListJSON[store.Endpoint](context.Background(), e.store, store.EndpointsPrefix(rev))
	require.NoError(e.t, err)
	out := make([]store.Endpoint, len(eps))
	for i, ep := range eps {
		out[i] = ep.Value
	}
	return out
}

func (e *env) status(rev string) (store.RevisionNodeStatus, bool) {
	st, _, err := store.GetJSON[store.RevisionNodeStatus](context.Background(), e.store, store.RevStatusKey(rev, node))
	return st, err == nil
}

// waitLimit bounds every wait, in the bubble's time.
const waitLimit = time.Minute

// waitFor lets the agent do all it can until it waits on the clock, then
// moves the bubble's clock on a millisecond at a time until ok holds. The
// clock is fake, so this costs no wall time and the outcome does not
// depend on the machine's speed.
func (e *env) waitFor(ok func() bool, format string, args ...any) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		synctest.Wait()
		if ok() {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("not within %s: "+format, append([]any{waitLimit}, args...)...)
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *env) waitEndpoints(rev string, n int) []store.Endpoint {
	e.t.Helper()
	var eps []store.Endpoint
	e.waitFor(func() bool {
		eps = e.endpoints(rev)
		return len(eps) == n
	}, "want %d endpoints of %s, have %+v", n, rev, &eps)
	return eps
}

func (e *env) waitStatus(rev string, what string, ok func(store.RevisionNodeStatus) bool) store.RevisionNodeStatus {
	e.t.Helper()
	var st store.RevisionNodeStatus
	e.waitFor(func() bool {
		var found bool
		st, found = e.status(rev)
		return found && ok(st)
	}, "revision %s: want %s, have %+v", rev, what, &st)
	return st
}

func (e *env) waitContainers(n int) map[string]nodeagent.ContainerSpec {
	e.t.Helper()
	var cs map[string]nodeagent.ContainerSpec
	e.waitFor(func() bool {
		cs = e.rt.Containers()
		return len(cs) == n
	}, "want %d containers, have %v", n, &cs)
	return cs
}

// callAt is when the runtime saw the call what, such as "signal {id}
// terminated"; it fails the test if it never did.
func (e *env) callAt(what string) time.Time {
	e.t.Helper()
	for _, c := range e.rt.TimedCalls() {
		if c.What == what {
			return c.At
		}
	}
	e.t.Fatalf("no call %q in %v", what, e.rt.Calls())
	return time.Time{}
}

// callTimes is when the runtime saw each call starting with prefix.
func (e *env) callTimes(prefix string) []time.Time {
	var out []time.Time
	for _, c := range e.rt.TimedCalls() {
		if strings.HasPrefix(c.What, prefix) {
			out = append(out, c.At)
		}
	}
	return out
}

// get makes one request to a replica over the fake runtime's network.
func (e *env) get(addr, path string) string {
	e.t.Helper()
	tr := &http.Transport{DialContext: e.rt.Dial, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return string(b)
}

func TestScaleUpPublishesEndpointsAndKeepsAPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image, Env: map[string]string{"A": "1"},
			Concurrency: api.Concurrency{HardLimit: 7}, Resources: api.Resources{CPU: 0.5, Memory: "128Mi", Pids: 64},
			Secrets: []api.Secret{{Secret: "app", Key: "token", Env: "TOKEN"}, {Secret: "app", Key: "key", File: "key"}}})
		e.assign("hello", rev, 2, 0)

		eps := e.waitEndpoints(rev, 2)
		for _, ep := range eps {
			assert.Equal(t, node, ep.Node)
			assert.Equal(t, 7, ep.Limit)
			if assert.NotNil(t, ep.Start) && !ep.Start.Created.IsZero() {
				assert.False(t, ep.Start.Created.Before(ep.Start.Decided), "a created task's phases are in order")
				assert.False(t, ep.Start.Started.Before(ep.Start.Created))
			}
			assert.True(t, strings.HasPrefix(ep.Addr, "127.0.0.1:"))
			assert.Equal(t, "hello from "+ep.Replica+"\n", e.get(ep.Addr, "/"))
		}
		assert.NotEqual(t, eps[0].Addr, eps[1].Addr)

		// The default policy keeps one pre-created task for a revision in use.
		st := e.waitStatus(rev, "ready with a pre-created task", func(s store.RevisionNodeStatus) bool {
			return s.State == api.RevisionReady && s.Ready == 2 && s.PreCreated == 1
		})
		assert.Zero(t, st.Restarts)
		cs := e.waitContainers(3)

		spec := cs[eps[0].Replica]
		assert.Equal(t, []string{"/hello"}, spec.Args)
		assert.Contains(t, spec.Env, "PATH=/bin")
		assert.Contains(t, spec.Env, "GREETING=hi")
		assert.Contains(t, spec.Env, "A=1")
		assert.NotContains(t, spec.Env, "TOKEN=s3cret", "secret variables stay out of the spec")
		assert.Contains(t, spec.Env, "EBB_REVISION="+rev)
		assert.Contains(t, spec.Env, "EBB_REPLICA="+eps[0].Replica)
		assert.Contains(t, spec.Env, "PORT="+strings.TrimPrefix(eps[0].Addr, "127.0.0.1:"))
		assert.Equal(t, 0.5, spec.CPU)
		assert.Equal(t, int64(128<<20), spec.MemoryBytes)
		assert.Equal(t, int64(64), spec.PidsLimit)
		assert.Equal(t, rev, spec.Labels[nodeagent.LabelRevision])
		assert.Equal(t, "hello", spec.Labels[nodeagent.LabelFunction])
		assert.Equal(t, node, spec.Labels[nodeagent.LabelNode])
		require.NotEmpty(t, spec.SecretsDir)
		assert.FileExists(t, filepath.Join(spec.SecretsDir, "key"))
		var fs unix.Statfs_t
		require.NoError(t, unix.Statfs(spec.SecretsDir, &fs))
		assert.Equal(t, int64(unix.TMPFS_MAGIC), int64(fs.Type), "secrets are on a tmpfs")
		require.NotEmpty(t, spec.SecretEnvFile)
		env, err := os.ReadFile(spec.SecretEnvFile)
		require.NoError(t, err)
		assert.Equal(t, "TOKEN=s3cret\x00", string(env), "ebb-launch's file holds them")

		// Ports are recorded in the store, one per container.
		ports, _, err := e.store.List(context.Background(), store.PrefixPorts+node+"/")
		require.NoError(t, err)
		assert.Len(t, ports, 3)

		// The node record counts the replicas and the pool.
		var n store.Node
		e.waitFor(func() bool {
			n, _, err = store.GetJSON[store.Node](context.Background(), e.store, store.NodeKey(node))
			return err == nil && n.Running == 2 && n.PoolSize == 1
		}, "node record with 2 running and 1 pooled, have %+v", &n)
		assert.Equal(t, 1.0, n.AllocatedCPU)
		assert.Equal(t, int64(256<<20), n.AllocatedMemory)
		assert.Len(t, n.Images, 4)
		assert.Equal(t, 32, n.PoolCapacity)
		e.waitFor(func() bool { return testenv.Metric(t, e.reg, "ebb_nodeagent_running_replicas") == 2 }, "2 running replicas counted")
		assert.Equal(t, 1.0, testenv.Metric(t, e.reg, "ebb_nodeagent_pool_tasks"))
	})
}

// histogramCount is the sample count of the histogram series with label=value.
func histogramCount(t *testing.T, reg *prometheus.Registry, name, label, value string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func TestScaleFromZeroUsesThePreCreatedTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		// Zero replicas but an explicit pool entry, as the autoscaler asks for
		// a revision at zero that it expects to need.
		e.assign("hello", rev, 0, 1)
		e.waitStatus(rev, "idle with a pre-created task", func(s store.RevisionNodeStatus) bool {
			return s.State == api.RevisionIdle && s.PreCreated == 1
		})
		cs := e.waitContainers(1)
		var pooled string
		for id := range cs {
			pooled = id
		}

		e.assign("hello", rev, 1, 1)
		eps := e.waitEndpoints(rev, 1)
		assert.Equal(t, pooled, eps[0].Replica, "the pre-created task serves the first replica")
		// The endpoint carries the start's phases for the activator; a
		// pooled task's creation is not part of it.
		start := eps[0].Start
		require.NotNil(t, start)
		assert.True(t, start.Created.IsZero())
		assert.False(t, start.Decided.IsZero())
		assert.False(t, start.Started.Before(start.Decided))
		assert.False(t, start.Ready.Before(start.Started))
		// And the pool is refilled once the start is done.
		e.waitStatus(rev, "ready with a refilled pool", func(s store.RevisionNodeStatus) bool {
			return s.State == api.RevisionReady && s.Ready == 1 && s.PreCreated == 1
		})
		e.waitContainers(2)

		assert.Equal(t, 1.0, testenv.Metric(t, e.reg, "ebb_nodeagent_pool_hits_total"))
		assert.Equal(t, 0.0, testenv.Metric(t, e.reg, "ebb_nodeagent_pool_misses_total"))
		// Every phase of the start was timed: create and task when the pool
		// entry was made, start and ready when it was used.
		for _, phase := range []string{"create", "task", "start", "ready"} {
			assert.GreaterOrEqual(t, histogramCount(t, e.reg, "ebb_nodeagent_start_phase_seconds", "phase", phase), uint64(1), phase)
		}
		assert.Equal(t, uint64(1), histogramCount(t, e.reg, "ebb_nodeagent_start_seconds", "pool", "hit"))
	})
}

// TestReleasedStartIsRecordedOnceReady: where the runtime can release a
// task, its program runs before Start, and Start follows only once the
// endpoint is written, so a cold request never waits for the runtime's
// bookkeeping. Where it cannot, or the release fails, Start does it all.
func TestReleasedStartIsRecordedOnceReady(t *testing.T) {
	tests := []struct {
		name        string
		releaseErr  error // the injected Release failure, nil for none
		wantCalls   []string
		wantEpFirst bool   // the endpoint was written before Start
		wantHow     string // the task_starts_total label counted
	}{
		{name: "released, then recorded", wantCalls: []string{"release", "start"}, wantEpFirst: true, wantHow: "release"},
		{name: "runtime cannot release", releaseErr: nodeagent.ErrNoRelease, wantCalls: []string{"start"}, wantHow: "start"},
		{name: "release fails", releaseErr: fake.ErrInjected, wantCalls: []string{"start"}, wantHow: "start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
				rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
				endpointsAtStart := make(chan int, 1)
				e.rt.OnStart(func(string) {
					select {
					case endpointsAtStart <- len(e.endpoints(rev)):
					default: // only the first Start matters
					}
				})
				if tt.releaseErr != nil {
					e.rt.FailNext("Release", tt.releaseErr)
				}

				e.assign("hello", rev, 1, 0)

				ep := e.waitEndpoints(rev, 1)[0]
				assert.Equal(t, tt.wantEpFirst, <-endpointsAtStart == 1, "endpoint written before Start")
				assert.Contains(t, e.get(ep.Addr, "/"), "hello from "+ep.Replica)
				e.waitFor(func() bool {
					st, err := e.rt.Task(ep.Replica).State(context.Background())
					return err == nil && st == nodeagent.TaskRunning
				}, "the runtime records the start")
				var calls []string
				for _, c := range e.rt.Calls() {
					if verb, id, ok := strings.Cut(c, " "); ok && id == ep.Replica && (verb == "release" || verb == "start") {
						calls = append(calls, verb)
					}
				}
				assert.Equal(t, tt.wantCalls, calls)
				assert.Equal(t, 1.0, testenv.Metric(t, e.reg, "ebb_nodeagent_task_starts_total", tt.wantHow))
			})
		})
	}
}

func TestCrashRestartsInPlaceAndReportsCrashLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		e.assign("hello", rev, 1, 0)
		ep := e.waitEndpoints(rev, 1)[0]

		crashed := time.Now()
		e.rt.Task(ep.Replica).Crash(42)
		st := e.waitStatus(rev, "ready again after one restart", func(s store.RevisionNodeStatus) bool {
			return s.State == api.RevisionReady && s.Restarts == 1
		})
		require.NotNil(t, st.LastExitCode)
		assert.Equal(t, 42, *st.LastExitCode)
		assert.Contains(t, strings.Join(st.LastLogLines, "\n"), "stderr: fake: crashing with 42")
		// The new task came after the first backoff, no sooner, no later.
		tasks := e.callTimes("newtask " + ep.Replica)
		require.Len(t, tasks, 2)
		assert.Equal(t, e.cfg.RestartBackoff, tasks[1].Sub(crashed))

		again := e.waitEndpoints(rev, 1)[0]
		assert.Equal(t, ep.Replica, again.Replica, "restarted in place")
		assert.Equal(t, ep.Addr, again.Addr, "same port")
		assert.Len(t, e.rt.Containers(), 1)
		assert.Equal(t, 1.0, testenv.Metric(t, e.reg, "ebb_nodeagent_restarts_total"))
		rec, _, err := store.GetJSON[store.Replica](context.Background(), e.store, store.ReplicaKey(node, ep.Replica))
		require.NoError(t, err)
		assert.Equal(t, 1, rec.Restarts)
		assert.Equal(t, store.ReplicaReady, rec.State)
	})
}

// TestOneCrashIsARestart is issue 13's bug 1: the only replica crashing
// once made its node report CrashLoop, and the activator failed requests
// that should have waited for the restart.
func TestOneCrashIsARestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) {
			c.PoolPerRevision = -1
			// Long enough that the status read is the one written in backoff.
			c.RestartBackoff, c.RestartBackoffMax = time.Hour, time.Hour
		})
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		e.assign("hello", rev, 1, 0)
		ep := e.waitEndpoints(rev, 1)[0]

		e.rt.Task(ep.Replica).Crash(1)
		st := e.waitStatus(rev, "one restart", func(s store.RevisionNodeStatus) bool { return s.Restarts == 1 })
		assert.Equal(t, api.RevisionScaling, st.State, "one crash is not a crash loop")
		assert.Equal(t, "replica "+ep.Replica+" exited with code 1; restarting in 1h0m0s", st.Message)
		assert.Equal(t, 0, st.Ready)
	})
}

func TestCrashLoopBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		rev := e.deploy("crash", 1, api.FunctionSpec{Image: crashImg})
		e.assign("crash", rev, 1, 0)
		st := e.waitStatus(rev, "crash loop", func(s store.RevisionNodeStatus) bool {
			if s.State == api.RevisionCrashLoop {
				assert.GreaterOrEqual(t, s.Restarts, 3, "a crash loop is three crashes in a row")
			}
			return s.State == api.RevisionCrashLoop && s.Restarts >= 3
		})
		require.NotNil(t, st.LastExitCode)
		assert.Equal(t, 3, *st.LastExitCode)
		assert.Contains(t, st.Message, "exited with code 3")
		assert.Contains(t, strings.Join(st.LastLogLines, "\n"), "fake: failing on start")
		assert.Empty(t, e.endpoints(rev))
		assert.Len(t, e.rt.Containers(), 1, "restarts reuse the container")

		// Every restart makes a new task in the same container. The program
		// exits the moment it runs, so the gaps between new tasks are the
		// backoff: doubling from 20ms up to the cap of 200ms. A second of
		// the bubble's clock shows several gaps at the cap.
		time.Sleep(time.Second)
		synctest.Wait()
		tasks := e.callTimes("newtask ")
		require.Greater(t, len(tasks), 6)
		for i := 1; i < len(tasks); i++ {
			want := min(e.cfg.RestartBackoff<<(i-1), e.cfg.RestartBackoffMax)
			assert.Equal(t, want, tasks[i].Sub(tasks[i-1]), "wait before restart %d", i)
		}
	})
}

func TestBadImageFailsWithAClearStatus(t *testing.T) {
	tests := []struct {
		name    string
		spec    api.FunctionSpec
		message string
	}{
		{name: "exec format", spec: api.FunctionSpec{Image: badImage}, message: "/hello: exec format error: ELF for arm64, node is amd64"},
		{name: "missing image", spec: api.FunctionSpec{Image: "example.com/nope:1"}, message: "image example.com/nope:1 is not on node node-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, nil)
				rev := e.deploy("bad", 1, tt.spec)
				e.assign("bad", rev, 1, 0)
				st := e.waitStatus(rev, "failed", func(s store.RevisionNodeStatus) bool { return s.State == api.RevisionFailed })
				assert.Equal(t, tt.message, st.Message)
				assert.Empty(t, e.rt.Containers(), "nothing is created from a bad image")
			})
		})
	}

	t.Run("no entrypoint", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, nil)
			e.rt.AddImage(nodeagent.ImageConfig{Ref: "example.com/empty:1"}, fake.Behavior{})
			rev := e.deploy("empty", 1, api.FunctionSpec{Image: "example.com/empty:1"})
			e.assign("empty", rev, 1, 0)
			st := e.waitStatus(rev, "failed", func(s store.RevisionNodeStatus) bool { return s.State == api.RevisionFailed })
			assert.Equal(t, "image example.com/empty:1 has no entrypoint or cmd, and the function sets no args", st.Message)
		})
	})

	t.Run("start error recovers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
			e.rt.FailNext("NewTask", fmt.Errorf("runc create failed: %w", fake.ErrInjected))
			rev := e.deploy("flaky", 1, api.FunctionSpec{Image: image})
			e.assign("flaky", rev, 1, 0)
			// The first attempt fails; the retry after the backoff succeeds and
			// the failure clears.
			e.waitEndpoints(rev, 1)
			st := e.waitStatus(rev, "ready", func(s store.RevisionNodeStatus) bool { return s.State == api.RevisionReady })
			assert.Empty(t, st.Message)
			assert.Len(t, e.rt.Containers(), 1, "the failed container was deleted")
			creates := e.callTimes("create ")
			require.Len(t, creates, 2)
			assert.Equal(t, e.cfg.RestartBackoff, creates[1].Sub(creates[0]), "the retry waits for the backoff")
		})
	})
}

// requests is the agent's Deps.Requests: the requests in flight that the
// fake runtime counts on its in-memory connections, plus those a test says
// are open on connections whose data skips TCP (eBPF), which sock_diag
// cannot see.
type requests struct {
	rt     *fake.Runtime
	mu     sync.Mutex
	hidden map[uint16]int
	reads  int
}

func (h *requests) OpenRequests(port uint16) (int, bool, error) {
	open, tracked, err := h.rt.OpenRequests(port)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reads++
	if hidden, ok := h.hidden[port]; ok {
		return open + hidden, true, err
	}
	return open, tracked, err
}

func (h *requests) setHidden(port uint16, open int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hidden == nil {
		h.hidden = map[uint16]int{}
	}
	h.hidden[port] = open
}

func (h *requests) readCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reads
}

func TestScaleDownWaitsForRequestsSocketsHide(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		e.assign("hello", rev, 1, 0)
		ep := e.waitEndpoints(rev, 1)[0]
		addr, err := netip.ParseAddrPort(ep.Addr)
		require.NoError(t, err)
		e.requests.setHidden(addr.Port(), 1)

		e.assign("hello", rev, 0, 0)
		e.waitEndpoints(rev, 0)
		// The drain keeps polling while the hidden request is open: for a
		// second of the bubble's time, it reads the count and signals
		// nothing.
		reads := e.requests.readCount()
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Greater(t, e.requests.readCount(), reads+10)
		assert.NotContains(t, e.rt.Calls(), "signal "+ep.Replica+" terminated")
		assert.Len(t, e.rt.Containers(), 1)
		// ...and terminates the replica at its next poll once it is answered.
		answered := time.Now()
		e.requests.setHidden(addr.Port(), 0)
		e.waitContainers(0)
		assert.LessOrEqual(t, e.callAt("signal "+ep.Replica+" terminated").Sub(answered), 20*time.Millisecond)
	})
}

func TestScaleDownDrainsThenTerminates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		e.assign("hello", rev, 1, 0)
		ep := e.waitEndpoints(rev, 1)[0]

		// A request in flight when the scale-down comes must finish, on a
		// client that keeps its connection alive afterwards, as routers do.
		tr := &http.Transport{DialContext: e.rt.Dial}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		type result struct {
			body string
			err  error
			at   time.Time
		}
		res := make(chan result, 1)
		go func() {
			resp, err := c.Get("http://" + ep.Addr + "/sleep?d=1s")
			if err != nil {
				res <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			res <- result{body: string(b), err: err, at: time.Now()}
		}()
		task := e.rt.Task(ep.Replica)
		e.waitFor(func() bool { return task.InFlight() == 1 }, "the request in flight")
		e.assign("hello", rev, 0, 0)

		// The endpoint goes first, while the request is still being served.
		e.waitEndpoints(rev, 0)
		select {
		case <-res:
			t.Fatal("the request finished before the endpoint was removed")
		default:
		}
		r := <-res
		require.NoError(t, r.err)
		assert.Equal(t, "slept\n", r.body)

		e.waitContainers(0)
		// The drain ended at its first poll after the answer: the idle
		// keep-alive connection did not hold it to its timeout (5s).
		terminated := e.callAt("signal " + ep.Replica + " terminated")
		assert.False(t, terminated.Before(r.at), "SIGTERM before the answer")
		assert.LessOrEqual(t, terminated.Sub(r.at), 20*time.Millisecond)
		assert.NotContains(t, e.rt.Calls(), "signal "+ep.Replica+" killed")
		e.waitStatus(rev, "idle", func(s store.RevisionNodeStatus) bool { return s.State == api.RevisionIdle })
		e.waitFor(func() bool {
			recs, _, err := e.store.List(context.Background(), store.ReplicasPrefix(node))
			require.NoError(t, err)
			ports, _, err := e.store.List(context.Background(), store.PrefixPorts+node+"/")
			require.NoError(t, err)
			return len(recs) == 0 && len(ports) == 0
		}, "replica and port records are removed")

		// Removing the assignment removes the revision's status too.
		e.unassign(rev)
		e.waitFor(func() bool { _, ok := e.status(rev); return !ok }, "status of %s removed", rev)
	})
}

func TestStubbornReplicaIsKilledAfterTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		rev := e.deploy("stubborn", 1, api.FunctionSpec{Image: stubborn})
		e.assign("stubborn", rev, 1, 0)
		ep := e.waitEndpoints(rev, 1)[0]
		e.assign("stubborn", rev, 0, 0)
		e.waitContainers(0)
		terminated := e.callAt("signal " + ep.Replica + " terminated")
		killed := e.callAt("signal " + ep.Replica + " killed")
		assert.Equal(t, e.cfg.TerminationGrace, killed.Sub(terminated))
	})
}

func TestRestartedAgentAdoptsWithoutDuplicatesOrOrphans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		e.assign("hello", rev, 2, 0)
		before := e.waitEndpoints(rev, 2)
		e.waitStatus(rev, "ready with pool", func(s store.RevisionNodeStatus) bool { return s.Ready == 2 && s.PreCreated == 1 })
		containers := e.waitContainers(3)

		// The agent dies without cleaning up.
		e.stop()
		// Meanwhile: a stray container with our label and no record (an
		// interrupted removal), and a record whose container is gone.
		require.NoError(t, e.rt.Create(context.Background(), nodeagent.ContainerSpec{ID: "stray", Image: image,
			Labels: map[string]string{nodeagent.LabelNode: node}}))
		_, err := e.store.Txn(context.Background(),
			store.PutJSON(store.ReplicaKey(node, "hello-00001-ghost"), store.Replica{ID: "hello-00001-ghost", Node: node,
				Function: "hello", Revision: rev, Port: 1, State: store.ReplicaReady}, store.AnyVersion),
			store.PutJSON(store.EndpointKey(rev, "hello-00001-ghost"), store.Endpoint{Replica: "hello-00001-ghost", Node: node,
				Revision: rev, Addr: "127.0.0.1:1"}, store.AnyVersion))
		require.NoError(t, err)
		// And one replica crashes while nobody watches.
		e.rt.Task(before[0].Replica).Crash(9)

		calls := len(e.rt.Calls())
		e.start()
		st := e.waitStatus(rev, "ready after adoption", func(s store.RevisionNodeStatus) bool {
			return s.State == api.RevisionReady && s.Ready == 2 && s.PreCreated == 1 && s.Restarts == 1
		})
		assert.Equal(t, 9, *st.LastExitCode)
		after := e.waitEndpoints(rev, 2)
		assert.ElementsMatch(t, []string{before[0].Replica, before[1].Replica}, []string{after[0].Replica, after[1].Replica})
		assert.Equal(t, containers, e.waitContainers(3), "the same containers, no new ones, the stray gone")
		for _, c := range e.rt.Calls()[calls:] {
			assert.False(t, strings.HasPrefix(c, "create "), "adoption created a container: %s", c)
		}
		_, err = e.store.Get(context.Background(), store.ReplicaKey(node, "hello-00001-ghost"))
		assert.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestLogsAreReadable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		e.assign("hello", rev, 1, 0)
		ep := e.waitEndpoints(rev, 1)[0]
		e.rt.Task(ep.Replica).Crash(5)
		e.waitStatus(rev, "restarted", func(s store.RevisionNodeStatus) bool { return s.Restarts == 1 && s.State == api.RevisionReady })

		var b bytes.Buffer
		require.NoError(t, e.agent.ReadLogs(context.Background(), &b, nodeagent.LogQuery{Function: "hello"}))
		out := b.String()
		assert.Contains(t, out, ep.Replica+" stdout: fake: listening on ")
		assert.Contains(t, out, ep.Replica+" stderr: fake: crashing with 5")
		assert.Contains(t, out, ep.Replica+" ebb: exited with code 5; restarting in 20ms")

		// The same through the agent's HTTP API for remote control planes.
		rec := &bytes.Buffer{}
		srvReq, err := http.NewRequest(http.MethodGet, "/v1/logs?function=hello&tail=1", nil)
		require.NoError(t, err)
		w := &recorder{header: http.Header{}, body: rec}
		e.agent.Handler().ServeHTTP(w, srvReq)
		assert.Equal(t, http.StatusOK, w.status)
		assert.Contains(t, rec.String(), ep.Replica+" stdout: fake: listening on ")
	})
}

type recorder struct {
	header http.Header
	body   *bytes.Buffer
	status int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(s int)           { r.status = s }

func TestPoolPolicy(t *testing.T) {
	tests := []struct {
		name     string
		tweak    func(*nodeagent.Config)
		replicas int
		explicit int
		wantPool int
	}{
		{name: "off", tweak: func(c *nodeagent.Config) { c.PoolPerRevision = -1 }, replicas: 1, wantPool: 0},
		{name: "explicit beats off", tweak: func(c *nodeagent.Config) { c.PoolPerRevision = -1 }, replicas: 0, explicit: 2, wantPool: 2},
		{name: "unused revision gets none", replicas: 0, wantPool: 0},
		{name: "budget caps", tweak: func(c *nodeagent.Config) { c.PoolMemoryBudget = 32 << 20 }, replicas: 1, explicit: 5, wantPool: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, tt.tweak)
				rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
				e.assign("hello", rev, tt.replicas, tt.explicit)
				e.waitStatus(rev, fmt.Sprintf("%d ready, %d pooled", tt.replicas, tt.wantPool), func(s store.RevisionNodeStatus) bool {
					return s.Ready == tt.replicas && s.PreCreated == tt.wantPool
				})
				e.waitContainers(tt.replicas + tt.wantPool)
				// Nothing more is made once the pool is at its target, while
				// a second of the bubble's clock runs twenty resyncs and ten
				// heartbeats.
				time.Sleep(time.Second)
				synctest.Wait()
				assert.Len(t, e.rt.Containers(), tt.replicas+tt.wantPool)
			})
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good := nodeagent.Config{Node: "n1", DataDir: "/var/lib/ebb"}
	tests := []struct {
		name    string
		tweak   func(*nodeagent.Config)
		wantErr string
	}{
		{name: "defaults", tweak: func(*nodeagent.Config) {}},
		{name: "no node", tweak: func(c *nodeagent.Config) { c.Node = "" }, wantErr: "node"},
		{name: "relative data dir", tweak: func(c *nodeagent.Config) { c.DataDir = "data" }, wantErr: "data dir"},
		{name: "bad host ip", tweak: func(c *nodeagent.Config) { c.HostIP = "localhost" }, wantErr: "host ip"},
		{name: "inverted ports", tweak: func(c *nodeagent.Config) { c.PortMin, c.PortMax = 30000, 20000 }, wantErr: "port range"},
		{name: "negative probe interval", tweak: func(c *nodeagent.Config) { c.ProbeInterval = -1 }, wantErr: "probe interval"},
		{name: "probe path", tweak: func(c *nodeagent.Config) { c.ProbePath = "healthz" }, wantErr: "probe path"},
		{name: "pool", tweak: func(c *nodeagent.Config) { c.PoolPerRevision = -2 }, wantErr: "pool per revision"},
		{name: "advertise", tweak: func(c *nodeagent.Config) { c.AdvertiseAddr = "nope" }, wantErr: "advertise"},
		{name: "backoff order", tweak: func(c *nodeagent.Config) { c.RestartBackoff, c.RestartBackoffMax = time.Minute, time.Second }, wantErr: "backoff max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.tweak(&c)
			err := c.WithDefaults().Validate()
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}
