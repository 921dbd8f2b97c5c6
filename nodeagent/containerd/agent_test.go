package containerd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/nodeagent"
	ctrd "github.com/ebbrun/ebb/nodeagent/containerd"
	"github.com/ebbrun/ebb/nodeagent/logring"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
	storeredis "github.com/ebbrun/ebb/store/redis"
)

// childEnv carries a childConfig to a re-executed test binary, which then
// runs only a node agent: a process the test can SIGKILL.
const childEnv = "EBB_NODEAGENT_TEST_CHILD"

type childConfig struct {
	Containerd string
	RedisURL   string
	Node       string
	DataDir    string
	RunDir     string
	FIFODir    string
	RuncBinary string
	PortMin    int
	PortMax    int
}

func (c childConfig) agentConfig() nodeagent.Config {
	return nodeagent.Config{
		Node: c.Node, DataDir: c.DataDir, RunDir: c.RunDir,
		PortMin: c.PortMin, PortMax: c.PortMax,
		HeartbeatInterval: 200 * time.Millisecond,
		DrainTimeout:      2 * time.Second,
		// Go's http.Server counts a connection that was opened but sent no
		// request yet as active for 5s, so a load client cancelled mid-dial
		// can hold hello's graceful shutdown that long; the grace must
		// outlast it for the drain to end cleanly.
		TerminationGrace: 6 * time.Second,
	}
}

func runChildAgent(js string) int {
	var cfg childConfig
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child agent config:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client, err := containerd.New(cfg.Containerd)
	if err != nil {
		log.Error("containerd", "err", err)
		return 1
	}
	defer client.Close()
	st, err := storeredis.Open(ctx, cfg.RedisURL, storeredis.Options{})
	if err != nil {
		log.Error("store", "err", err)
		return 1
	}
	defer st.Close()
	rt, err := ctrd.New(client, ctrd.Config{FIFODir: cfg.FIFODir, RuncBinary: cfg.RuncBinary})
	if err != nil {
		log.Error("runtime", "err", err)
		return 1
	}
	defer rt.Close()
	a, err := nodeagent.New(cfg.agentConfig(), nodeagent.Deps{Store: st, Runtime: rt, Logger: log})
	if err != nil {
		log.Error("agent", "err", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		log.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}

// startChild runs a node agent in a child process. Its log goes to
// logPath; the test prints it if it fails.
func startChild(t *testing.T, cfg childConfig, logPath string) *exec.Cmd {
	t.Helper()
	js, err := json.Marshal(cfg)
	require.NoError(t, err)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	cmd.Stdout, cmd.Stderr = logf, logf
	// The agent dies with the test binary, so a failed test leaves none.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

var nodeSeq atomic.Int32

func uniqueNode(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), nodeSeq.Add(1))
}

func putRevision(t testing.TB, st store.Store, fn string, gen int, spec api.FunctionSpec) string {
	t.Helper()
	rev := api.RevisionName(fn, gen)
	spec = spec.WithDefaults()
	require.NoError(t, spec.Validate())
	_, err := st.Txn(context.Background(), store.PutJSON(store.RevisionKey(fn, rev),
		store.Revision{Name: rev, Function: fn, Generation: gen, Spec: spec, CreatedAt: time.Now()}, store.AnyVersion))
	require.NoError(t, err)
	return rev
}

func assign(t testing.TB, st store.Store, node, fn, rev string, replicas, preCreated int) {
	t.Helper()
	_, err := st.Txn(context.Background(), store.PutJSON(store.AssignmentKey(node, rev),
		store.Assignment{Function: fn, Revision: rev, Replicas: replicas, PreCreated: preCreated}, store.AnyVersion))
	require.NoError(t, err)
}

func endpoints(t testing.TB, st store.Store, rev string) map[string]store.Endpoint {
	t.Helper()
	eps, _, err := store.ListJSON[store.Endpoint](context.Background(), st, store.EndpointsPrefix(rev))
	require.NoError(t, err)
	out := map[string]store.Endpoint{}
	for _, ep := range eps {
		out[ep.Value.Replica] = ep.Value
	}
	return out
}

func revStatus(st store.Store, rev, node string) store.RevisionNodeStatus {
	s, _, _ := store.GetJSON[store.RevisionNodeStatus](context.Background(), st, store.RevStatusKey(rev, node))
	return s
}

// containersOf lists the node's containers in namespace ebb with their
// task state and pid.
type ctrState struct {
	status containerd.ProcessStatus
	pid    uint32
}

func containersOf(t testing.TB, client *containerd.Client, node string) map[string]ctrState {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "ebb")
	cs, err := client.Containers(ctx, fmt.Sprintf("labels.%q==%q", nodeagent.LabelNode, node))
	require.NoError(t, err)
	out := map[string]ctrState{}
	for _, c := range cs {
		// The agent may be deleting what we look at: a task or container
		// gone midway is simply not there.
		s := ctrState{status: "none"}
		task, err := c.Task(ctx, nil)
		if err == nil {
			st, err := task.Status(ctx)
			if errdefs.IsNotFound(err) {
				continue
			}
			require.NoError(t, err)
			s = ctrState{status: st.Status, pid: task.Pid()}
		} else if _, err := c.Info(ctx); errdefs.IsNotFound(err) {
			continue
		}
		out[c.ID()] = s
	}
	return out
}

func withStatus(cs map[string]ctrState, status containerd.ProcessStatus) map[string]uint32 {
	out := map[string]uint32{}
	for id, s := range cs {
		if s.status == status {
			out[id] = s.pid
		}
	}
	return out
}

func get(addr, path string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), err
}

// TestAgentAcceptance is the node agent's acceptance test against real
// containerd and runc, with the agent in a child process so it can be
// killed with SIGKILL, and Redis as the store both processes share.
func TestAgentAcceptance(t *testing.T) {
	client := connect(t)
	addr := testenv.Containerd(t)
	ref := pushHello(t, client, "ebb-test/hello:acceptance")
	rd := testenv.Redis(t)
	ctx := context.Background()
	st, err := storeredis.Open(ctx, rd.URL(), storeredis.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })

	dir := t.TempDir()
	node := uniqueNode("accept")
	cfg := childConfig{
		Containerd: addr, RedisURL: rd.URL(), Node: node,
		DataDir: filepath.Join(dir, "data"), RunDir: filepath.Join(dir, "run"), FIFODir: filepath.Join(dir, "fifo"),
		RuncBinary: ebbRuncBinary(t), // as ebbd has it
		PortMin:    31000, PortMax: 31099,
	}
	logPath := filepath.Join(dir, "agent.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("agent log:\n%s", b)
		}
	})
	t.Cleanup(func() { cleanupNode(t, client, node) })
	parent := t
	agent := startChild(t, cfg, logPath)

	rev := putRevision(t, st, "hello", 1, api.FunctionSpec{Image: ref, Scale: api.Scale{Min: 2},
		Concurrency: api.Concurrency{HardLimit: 10},
		Resources:   api.Resources{CPU: 0.5, Memory: "64Mi", Pids: 64}})
	assign(t, st, node, "hello", rev, 2, 0)

	var eps map[string]store.Endpoint
	t.Run("deploy with min 2: two containers with their limits, both served", func(t *testing.T) {
		// Polls Redis while the agent child process has containerd and
		// runc start both containers and publishes their endpoints.
		require.Eventually(t, func() bool {
			eps = endpoints(t, st, rev)
			return len(eps) == 2
		}, 30*time.Second, 5*time.Millisecond, "two endpoints")
		for id, ep := range eps {
			assert.Equal(t, 10, ep.Limit)
			assert.Equal(t, node, ep.Node)
			body, err := get(ep.Addr, "/")
			require.NoError(t, err)
			assert.Contains(t, body, "hello from ebb")
			assert.Contains(t, body, "replica="+id)
			assert.Contains(t, body, "revision="+rev)
		}
		// Default pool policy: one more pre-created task, created but not
		// started. Polls the status the agent child process writes to
		// Redis once containerd has created the task.
		require.Eventually(t, func() bool {
			s := revStatus(st, rev, node)
			return s.State == api.RevisionReady && s.Ready == 2 && s.PreCreated == 1
		}, 20*time.Second, 5*time.Millisecond)
		cs := containersOf(t, client, node)
		running := withStatus(cs, containerd.Running)
		require.Len(t, running, 2)
		assert.Len(t, withStatus(cs, containerd.Created), 1)
		assert.Len(t, cs, 3)
		nctx := namespaces.WithNamespace(ctx, "ebb")
		for id := range running {
			require.Contains(t, eps, id)
			c, err := client.LoadContainer(nctx, id)
			require.NoError(t, err)
			s, err := c.Spec(nctx)
			require.NoError(t, err)
			assertReplicaSpec(t, s, 64<<20, 64, 50000)
			labels, err := c.Labels(nctx)
			require.NoError(t, err)
			assert.Equal(t, map[string]string{nodeagent.LabelNode: node, nodeagent.LabelFunction: "hello",
				nodeagent.LabelRevision: rev, nodeagent.LabelReplica: id,
				nodeagent.LabelPort: strings.TrimPrefix(eps[id].Addr, "127.0.0.1:"), nodeagent.LabelNetwork: "host"}, labels)
		}
	})
	require.Len(t, eps, 2)

	t.Run("SIGKILL of a replica's process: back and ready at once, one restart", func(t *testing.T) {
		ids := sortedKeys(eps)
		victim := eps[ids[0]]
		pid := withStatus(containersOf(t, client, node), containerd.Running)[victim.Replica]
		require.NotZero(t, pid)
		killed := time.Now()
		require.NoError(t, syscall.Kill(int(pid), syscall.SIGKILL))
		var back store.Endpoint
		// Polls Redis while the kernel, runc and containerd report the
		// exit and the agent child process restarts the container.
		require.Eventually(t, func() bool {
			ep, ok := endpoints(t, st, rev)[victim.Replica]
			back = ep
			return ok && ep.ReadyAt.After(killed)
		}, 5*time.Second, time.Millisecond)
		elapsed := time.Since(killed)
		t.Logf("replica back and ready %s after SIGKILL", elapsed.Round(time.Millisecond))
		// Usually 0.6-1.1s here; the bound leaves room for a loaded CI machine.
		assert.Less(t, elapsed, 5*time.Second)
		assert.Equal(t, victim.Addr, back.Addr, "restarted in place, same port")
		_, err := get(back.Addr, "/")
		require.NoError(t, err)
		// The agent child process writes the status to Redis on its own
		// time, after the endpoint.
		require.Eventually(t, func() bool {
			s := revStatus(st, rev, node)
			return s.State == api.RevisionReady && s.Restarts == 1 && s.LastExitCode != nil && *s.LastExitCode == 137
		}, 5*time.Second, 5*time.Millisecond, "status shows one restart: %+v", revStatus(st, rev, node))
		eps = endpoints(t, st, rev)
	})

	t.Run("SIGKILL of the agent under load: adopted, no loss, no duplicate, no orphan", func(t *testing.T) {
		before := containersOf(t, client, node)
		require.Len(t, before, 3)
		load := startLoad(eps)
		load.waitFor(t, 200)

		require.NoError(t, agent.Process.Signal(syscall.SIGKILL))
		_ = agent.Wait()
		load.waitFor(t, load.ok.Load()+200) // the replicas serve on without their agent
		restarted := time.Now()
		agent = startChild(parent, cfg, logPath) // it must outlive this subtest

		// The new agent re-probes and re-publishes what it adopts: polls
		// Redis while the new child process starts and adopts the
		// containers from containerd.
		require.Eventually(t, func() bool {
			now := endpoints(t, st, rev)
			if len(now) != 2 {
				return false
			}
			for _, ep := range now {
				if !ep.ReadyAt.After(restarted) {
					return false
				}
			}
			return true
		}, 20*time.Second, 5*time.Millisecond, "both endpoints re-published")
		// Its first heartbeat, written to Redis by the child process.
		require.Eventually(t, func() bool {
			n, _, err := store.GetJSON[store.Node](ctx, st, store.NodeKey(node))
			return err == nil && n.Heartbeat.After(restarted) && n.Running == 2 && n.PoolSize == 1
		}, 10*time.Second, 5*time.Millisecond, "heartbeat of the new agent")
		load.waitFor(t, load.ok.Load()+200)
		ok, failed := load.stop()
		t.Logf("requests during the agent's death and restart: %d ok, %d failed", ok, failed)
		assert.Zero(t, failed, "no request failed: %v", load.firstErr())

		after := containersOf(t, client, node)
		assert.Equal(t, before, after, "the same containers in the same state with the same processes: none lost, none doubled")
		recs, _, err := store.ListJSON[store.Replica](ctx, st, store.ReplicasPrefix(node))
		require.NoError(t, err)
		recorded := map[string]bool{}
		for _, r := range recs {
			recorded[r.Value.ID] = true
		}
		for id := range after {
			assert.True(t, recorded[id], "container %s has a replica record (no orphan)", id)
		}
		assert.Len(t, recs, len(after))
		s := revStatus(st, rev, node)
		assert.Equal(t, 1, s.Restarts, "restarts survive the agent's restart")
	})

	t.Run("scale to zero: endpoints first, then the containers; the pool stays", func(t *testing.T) {
		assign(t, st, node, "hello", rev, 0, 0)
		// The agent child process unpublishes in Redis, then has
		// containerd and runc stop the containers, which drain on their
		// own time: each step polls those outside processes.
		require.Eventually(t, func() bool { return len(endpoints(t, st, rev)) == 0 }, 10*time.Second, 2*time.Millisecond)
		var cs map[string]ctrState
		require.Eventually(t, func() bool {
			cs = containersOf(t, client, node)
			return len(withStatus(cs, containerd.Running)) == 0 && len(withStatus(cs, containerd.Created)) == 1 && len(cs) == 1
		}, 20*time.Second, 10*time.Millisecond, "containers: %v", cs)
		// The idle status, written to Redis by the child process.
		require.Eventually(t, func() bool {
			s := revStatus(st, rev, node)
			return s.State == api.RevisionIdle && s.PreCreated == 1
		}, 10*time.Second, 5*time.Millisecond)

		// Both got SIGTERM and drained cleanly, and their output reached the
		// log rings through the fifos the restarted agent reattached.
		// The last line can reach the ring a moment after the container
		// is gone, since the fifo reader drains on its own goroutine: this
		// polls the rings while the kernel's fifos deliver it.
		logs, err := logring.New(logring.Config{Dir: filepath.Join(cfg.DataDir, "logs")})
		require.NoError(t, err)
		var b strings.Builder
		require.Eventually(t, func() bool {
			b.Reset()
			require.NoError(t, logs.Read(ctx, &b, logring.Query{Function: "hello"}))
			for id := range eps {
				if !strings.Contains(b.String(), id+" stdout: hello: drained, bye") {
					return false
				}
			}
			return true
		}, 10*time.Second, 10*time.Millisecond, "every replica drained cleanly; logs:\n%s", &b)
	})
}

// TestAgentBadImages runs an in-process agent on the embedded store against
// images that cannot run.
func TestAgentBadImages(t *testing.T) {
	client := connect(t)
	text := pushImage(t, client, ociimage.BuildOptions{Name: "ebb-test/broken:text", Binary: []byte("this is not a program\n"), BinaryPath: "/app/main"})
	missing := pushImage(t, client, ociimage.BuildOptions{Name: "ebb-test/broken:missing", Binary: []byte("x"), BinaryPath: "/app/main",
		Entrypoint: []string{"/app/server"}})
	st, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	node := uniqueNode("bad")
	t.Cleanup(func() { cleanupNode(t, client, node) })
	startAgent(t, client, st, node, 31100, nil, nil)

	tests := []struct {
		fn, image, message string
	}{
		{"text", text, "exec format error: entrypoint /app/main is neither an ELF executable nor a script starting with #!"},
		{"missing", missing, "entrypoint /app/server does not exist in the image"},
		{"absent", "ebb-test/never-pushed:1", "image ebb-test/never-pushed:1 is not on node " + node},
	}
	for _, tt := range tests {
		rev := putRevision(t, st, tt.fn, 1, api.FunctionSpec{Image: tt.image})
		assign(t, st, node, tt.fn, rev, 1, 0)
	}
	for _, tt := range tests {
		t.Run(tt.fn, func(t *testing.T) {
			rev := api.RevisionName(tt.fn, 1)
			var s store.RevisionNodeStatus
			// The agent runs in this process, but the failure comes
			// from containerd and runc trying to start the image.
			require.Eventually(t, func() bool {
				s = revStatus(st, rev, node)
				return s.State == api.RevisionFailed
			}, 20*time.Second, 5*time.Millisecond)
			assert.Equal(t, tt.message, s.Message)
		})
	}
	assert.Empty(t, containersOf(t, client, node), "no container is created from a bad image")
}

// startAgent runs an agent in this process until the test ends.
func startAgent(t testing.TB, client *containerd.Client, st store.Store, node string, portMin int,
	tweak func(*nodeagent.Config), tweakDeps func(*nodeagent.Deps)) *nodeagent.Agent {
	t.Helper()
	dir := t.TempDir()
	rt, err := ctrd.New(client, ctrd.Config{FIFODir: filepath.Join(dir, "fifo"), RuncBinary: ebbRuncBinary(t)})
	require.NoError(t, err)
	t.Cleanup(rt.Close) // after the agent has stopped: cleanups run last first
	cfg := nodeagent.Config{Node: node, DataDir: filepath.Join(dir, "data"), RunDir: filepath.Join(dir, "run"),
		PortMin: portMin, PortMax: portMin + 99, HeartbeatInterval: time.Second,
		DrainTimeout: time.Second, TerminationGrace: 2 * time.Second}
	if tweak != nil {
		tweak(&cfg)
	}
	deps := nodeagent.Deps{Store: st, Runtime: rt, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if tweakDeps != nil {
		tweakDeps(&deps)
	}
	a, err := nodeagent.New(cfg, deps)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return a
}

// cleanupNode deletes whatever containers a test's agent left.
func cleanupNode(t testing.TB, client *containerd.Client, node string) {
	rt, err := ctrd.New(client, ctrd.Config{FIFODir: filepath.Join(os.TempDir(), "ebb-cleanup-fifo")})
	if err != nil {
		return
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := rt.List(ctx, node)
	if err != nil {
		return
	}
	for _, c := range cs {
		if err := rt.Delete(ctx, c.ID); err != nil {
			t.Logf("cleanup %s: %v", c.ID, err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// load sends requests to endpoints from a few goroutines until stopped.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	err        error
	stopc      chan struct{}
	wg         sync.WaitGroup
}

func startLoad(eps map[string]store.Endpoint) *load {
	l := &load{stopc: make(chan struct{})}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for _, ep := range eps {
		for i := 0; i < 2; i++ {
			l.wg.Add(1)
			go func(addr string) {
				defer l.wg.Done()
				for {
					select {
					case <-l.stopc:
						return
					default:
					}
					resp, err := c.Get("http://" + addr + "/")
					if err == nil {
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err == nil && resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						l.failed.Add(1)
						l.mu.Lock()
						if l.err == nil {
							l.err = err
						}
						l.mu.Unlock()
						continue
					}
					l.ok.Add(1)
				}
			}(ep.Addr)
		}
	}
	return l
}

func (l *load) waitFor(t *testing.T, n int64) {
	t.Helper()
	// The load runs over real sockets against the replicas in their
	// containers, so this polls until they have answered n requests.
	require.Eventually(t, func() bool { return l.ok.Load()+l.failed.Load() >= n }, 20*time.Second, time.Millisecond)
}

func (l *load) stop() (ok, failed int64) {
	close(l.stopc)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load()
}

func (l *load) firstErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
