package nodeagent_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/nodeagent"
	"github.com/ebbrun/ebb/nodeagent/fake"
	"github.com/ebbrun/ebb/store"
)

// jobPod writes a job pod record for this node, as the job controller does.
func (e *env) jobPod(job string, index int, spec api.JobSpec) store.JobPod {
	e.t.Helper()
	p := store.JobPod{Name: store.JobPodName(job, index), Job: job, Namespace: api.DefaultNamespace,
		Index: index, Node: node, Spec: spec.WithDefaults(), CreatedAt: time.Now()}
	_, err := e.store.Txn(context.Background(), store.PutJSON(store.JobPodKey(node, p.Name), p, store.MustNotExist))
	require.NoError(e.t, err)
	return p
}

func (e *env) deleteJobPod(p store.JobPod) {
	e.t.Helper()
	_, err := e.store.Txn(context.Background(), store.Delete(store.JobPodKey(node, p.Name), store.AnyVersion))
	require.NoError(e.t, err)
}

func (e *env) jobReport(p store.JobPod) (store.JobPodStatus, bool) {
	rep, _, err := store.GetJSON[store.JobPodStatus](context.Background(), e.store, store.JobPodStatusKey(p.Job, p.Name))
	return rep, err == nil
}

func (e *env) waitJobReport(p store.JobPod, phase string) store.JobPodStatus {
	e.t.Helper()
	var rep store.JobPodStatus
	e.waitFor(func() bool {
		var ok bool
		rep, ok = e.jobReport(p)
		return ok && rep.Phase == phase
	}, "job pod %s: want %s, have %+v", p.Name, phase, &rep)
	return rep
}

// jobContainer is the one container of pod p.
func (e *env) jobContainer(p store.JobPod) (string, nodeagent.ContainerSpec) {
	e.t.Helper()
	var id string
	var spec nodeagent.ContainerSpec
	e.waitFor(func() bool {
		for cid, s := range e.rt.Containers() {
			if s.Labels[nodeagent.LabelJobPod] == p.Name && e.rt.Task(cid) != nil {
				id, spec = cid, s
				return true
			}
		}
		return false
	}, "no container of job pod %s", p.Name)
	return id, spec
}

func TestJobPodRunsToCompletion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		p := e.jobPod("batch", 0, api.JobSpec{Image: image, Args: []string{"--once"}, Env: map[string]string{"MODE": "x"},
			Resources: api.Resources{CPU: 0.5, Memory: "64Mi"}})
		rep := e.waitJobReport(p, store.JobPodRunning)
		assert.False(t, rep.StartedAt.IsZero())
		id, spec := e.jobContainer(p)

		// The same limits and environment rules as a replica, without a
		// port, and with the job's variables.
		assert.Equal(t, []string{"/hello", "--once"}, spec.Args)
		assert.Equal(t, 0.5, spec.CPU)
		assert.Equal(t, int64(64<<20), spec.MemoryBytes)
		assert.Contains(t, spec.Env, "MODE=x")
		assert.Contains(t, spec.Env, "GREETING=hi")
		assert.Contains(t, spec.Env, "EBB_JOB=batch")
		assert.Contains(t, spec.Env, "EBB_JOB_INDEX=0")
		assert.Contains(t, spec.Env, "EBB_NAMESPACE=default")
		for _, kv := range spec.Env {
			assert.NotRegexp(t, `^(PORT|EBB_FUNCTION|EBB_REVISION|EBB_REPLICA)=`, kv)
		}
		assert.NotContains(t, spec.Labels, nodeagent.LabelPort)
		assert.Equal(t, node, spec.Labels[nodeagent.LabelNode])
		assert.Empty(t, e.endpoints("batch"), "no endpoint")

		// The node's heartbeat counts the running pod's limits.
		e.waitFor(func() bool {
			n, _, err := store.GetJSON[store.Node](context.Background(), e.store, store.NodeKey(node))
			return err == nil && n.AllocatedCPU == 0.5 && n.AllocatedMemory == 64<<20
		}, "the heartbeat counts the job pod's limits")

		e.rt.Task(id).Crash(0)
		rep = e.waitJobReport(p, store.JobPodSucceeded)
		e.waitFor(func() bool {
			n, _, err := store.GetJSON[store.Node](context.Background(), e.store, store.NodeKey(node))
			return err == nil && n.AllocatedCPU == 0 && n.Heartbeat.After(rep.FinishedAt)
		}, "an exited job pod allocates nothing")
		require.NotNil(t, rep.ExitCode)
		assert.Equal(t, 0, *rep.ExitCode)
		assert.False(t, rep.FinishedAt.IsZero())

		// Its logs read like a replica's, under the job's log name.
		var b bytes.Buffer
		require.NoError(t, e.agent.ReadLogs(context.Background(), &b, nodeagent.LogQuery{Function: api.JobLogName("default", "batch")}))
		assert.Contains(t, b.String(), id+" stdout: fake: running as a job")
		assert.Contains(t, b.String(), id+" ebb: exited with code 0")
		req, err := http.NewRequest(http.MethodGet, "/v1/logs?function=job.batch.default", nil)
		require.NoError(t, err)
		w := &recorder{header: http.Header{}, body: &bytes.Buffer{}}
		e.agent.Handler().ServeHTTP(w, req)
		assert.Equal(t, http.StatusOK, w.status)
		assert.Contains(t, w.body.String(), "fake: running as a job")

		// The exited container stays until the controller deletes the
		// pod's record; it is never restarted.
		assert.Len(t, e.rt.Containers(), 1)
		e.deleteJobPod(p)
		e.waitContainers(0)
	})
}

func TestJobPodReportsExitCode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		p := e.jobPod("fails", 2, api.JobSpec{Image: crashImg})
		rep := e.waitJobReport(p, store.JobPodFailed)
		require.NotNil(t, rep.ExitCode)
		assert.Equal(t, 3, *rep.ExitCode)
		assert.Equal(t, 2, rep.Index)
		synctest.Wait()
		starts := 0
		for _, c := range e.rt.Calls() {
			if len(c) > 5 && c[:5] == "start" {
				starts++
			}
		}
		assert.Equal(t, 1, starts, "a job pod runs once: retries are new pods")
	})
}

func TestJobPodKilledOnDelete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		p := e.jobPod("forever", 0, api.JobSpec{Image: stubborn})
		e.waitJobReport(p, store.JobPodRunning)
		id, _ := e.jobContainer(p)
		start := time.Now()
		e.deleteJobPod(p)
		e.waitContainers(0)
		assert.GreaterOrEqual(t, time.Since(start), e.cfg.TerminationGrace, "SIGTERM, then SIGKILL after the grace period")
		e.callAt("signal " + id + " killed")
		rep, _ := e.jobReport(p)
		assert.Equal(t, store.JobPodRunning, rep.Phase, "nothing is reported once the pod's record is gone")
	})
}

func TestJobPodStartFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		p := e.jobPod("bad", 0, api.JobSpec{Image: badImage})
		rep := e.waitJobReport(p, store.JobPodFailed)
		assert.Equal(t, api.AttemptReasonStartFailed, rep.Reason)
		assert.Contains(t, rep.Message, "exec format error")
		assert.Nil(t, rep.ExitCode)

		missing := e.jobPod("missing", 0, api.JobSpec{Image: "example.com/nope:1"})
		rep = e.waitJobReport(missing, store.JobPodFailed)
		// The node lacks it, so it pulls it, and the registry has none.
		assert.Contains(t, rep.Message, "example.com/nope:1: not found")
		e.rt.FailNext("Create", fake.ErrInjected)
		broken := e.jobPod("broken", 0, api.JobSpec{Image: image})
		rep = e.waitJobReport(broken, store.JobPodFailed)
		assert.Contains(t, rep.Message, "injected")
		e.waitContainers(0)
	})
}

// A job pod outlives its agent, as replicas do: the restarted agent
// attaches to the same container, never starts a second, and reports the
// exit it sees, or one that came while no agent ran.
func TestJobPodAdoptedOnAgentRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		// exitWhileDown ends the program while no agent runs.
		exitWhileDown bool
	}{
		{"still running", false},
		{"exited while the agent was down", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
				p := e.jobPod("long", 0, api.JobSpec{Image: image})
				started := e.waitJobReport(p, store.JobPodRunning)
				id, _ := e.jobContainer(p)
				assert.Equal(t, id, started.Container, "the report names the container")
				e.stop()
				require.Contains(t, e.rt.Containers(), id, "a stopping agent leaves a running job pod")
				if tc.exitWhileDown {
					e.rt.Task(id).Crash(3)
				}
				e.start()
				if !tc.exitWhileDown {
					synctest.Wait()
					rep, _ := e.jobReport(p)
					assert.Equal(t, store.JobPodRunning, rep.Phase)
					assert.Equal(t, started.StartedAt, rep.StartedAt)
					e.rt.Task(id).Crash(3)
				}
				rep := e.waitJobReport(p, store.JobPodFailed)
				require.NotNil(t, rep.ExitCode)
				assert.Equal(t, 3, *rep.ExitCode, "the program's own exit, not a lost pod")
				assert.Empty(t, rep.Reason)
				assert.Equal(t, []string{id}, slices.Collect(maps.Keys(e.rt.Containers())), "one container, never a second")
				assert.Equal(t, 1, countCalls(e.rt.Calls(), "create "), "created once")
				e.deleteJobPod(p)
				e.waitContainers(0)
			})
		})
	}
}

// A job pod whose container is gone when its agent comes back (the
// machine rebooted, say) is reported lost, and not started again: the
// controller decides on another attempt.
func TestJobPodLostWhenItsContainerIsGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		p := e.jobPod("long", 0, api.JobSpec{Image: image})
		e.waitJobReport(p, store.JobPodRunning)
		id, _ := e.jobContainer(p)
		e.stop()
		require.NoError(t, e.rt.Delete(context.Background(), id))
		e.start()
		rep := e.waitJobReport(p, store.JobPodFailed)
		assert.Equal(t, api.AttemptReasonNodeLost, rep.Reason)
		synctest.Wait()
		assert.Empty(t, e.rt.Containers(), "not run twice")
	})
}

// Containers of job pods that a restarted agent must not adopt are
// deleted with what they hold: one whose pod's record is gone (its job
// was deleted while the agent was down), and one that no report names
// (a crash between its create and its report, or a stale one).
func TestJobPodContainersNotAdoptedAreDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		gone := e.jobPod("gone", 0, api.JobSpec{Image: image})
		e.waitJobReport(gone, store.JobPodRunning)
		goneID, _ := e.jobContainer(gone)
		e.stop()
		e.deleteJobPod(gone)
		// A container labelled as a pod of this node that no report names.
		stray := nodeagent.ContainerSpec{ID: "stray-0-abcdef", Image: image,
			Labels: map[string]string{nodeagent.LabelNode: node, nodeagent.LabelJobPod: "stray-0"}}
		require.NoError(t, e.rt.Create(context.Background(), stray))
		task, err := e.rt.NewTask(context.Background(), stray.ID, nodeagent.Output{})
		require.NoError(t, err)
		require.NoError(t, task.Start(context.Background()))
		require.Len(t, e.rt.Containers(), 2)
		e.start()
		e.waitContainers(0)
		assert.Contains(t, e.rt.Calls(), "delete "+goneID)
		assert.Contains(t, e.rt.Calls(), "delete "+stray.ID)
	})
}

func countCalls(calls []string, prefix string) int {
	n := 0
	for _, c := range calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// A process that runs the autoscaler shares its cache of every node's job
// pods with its agent, which runs its own node's only.
func TestJobPodsOfOtherNodesAreNotRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		e.stop()
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		e.jobPods = store.NewCache(e.store, store.PrefixJobPods, store.CacheConfig[store.JobPod]{})
		go func() { _ = e.jobPods.Run(ctx) }()
		other := store.JobPod{Name: "elsewhere-0", Job: "elsewhere", Namespace: api.DefaultNamespace, Node: "node-b",
			Spec: api.JobSpec{Image: image}.WithDefaults()}
		_, err := e.store.Txn(context.Background(), store.PutJSON(store.JobPodKey("node-b", other.Name), other, store.MustNotExist))
		require.NoError(t, err)
		e.start()
		mine := e.jobPod("here", 0, api.JobSpec{Image: image})
		e.waitJobReport(mine, store.JobPodRunning)
		synctest.Wait()
		_, reported := e.jobReport(other)
		assert.False(t, reported, "another node's pod is not run here")
		e.jobContainer(mine)
		assert.Len(t, e.rt.Containers(), 1)
	})
}

func TestJobPodSecrets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 })
		p := e.jobPod("withsecret", 0, api.JobSpec{Image: image, Secrets: []api.Secret{{Secret: "app", Key: "token", Env: "TOKEN"}}})
		e.waitJobReport(p, store.JobPodRunning)
		_, spec := e.jobContainer(p)
		assert.NotEmpty(t, spec.SecretEnvFile, "secret variables reach the program through ebb-launch's file")
		for _, kv := range spec.Env {
			assert.NotContains(t, kv, "s3cret")
		}
		_, err := os.Stat(spec.SecretEnvFile)
		require.NoError(t, err)

		// A job pod outlives its agent, and so do its secrets, which it
		// still reads; they go with the pod.
		id, _ := e.jobContainer(p)
		e.stop()
		e.start()
		synctest.Wait()
		_, err = os.Stat(spec.SecretEnvFile)
		require.NoError(t, err, "the adopted pod keeps its secrets")
		e.rt.Task(id).Crash(0)
		e.waitJobReport(p, store.JobPodSucceeded)
		e.deleteJobPod(p)
		e.waitContainers(0)
		e.waitFor(func() bool {
			_, err := os.Stat(spec.SecretEnvFile)
			return errors.Is(err, os.ErrNotExist)
		}, "the secrets of a removed job pod are gone")
	})
}

func TestJobPodNetworkIsolation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := fake.NewNetwork()
		e := newEnvWith(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 }, net)
		p := e.jobPod("isolated", 0, api.JobSpec{Image: image})
		e.waitJobReport(p, store.JobPodRunning)
		id, spec := e.jobContainer(p)
		assert.NotEmpty(t, spec.NetnsPath, "a namespace of its own, as a replica has")
		assert.Equal(t, []string{id}, net.Namespaces())
		ports, _, err := e.store.List(context.Background(), store.PrefixPorts+node+"/")
		require.NoError(t, err)
		require.Len(t, ports, 1, "its address's port is held")

		// A restarted agent adopts the pod with its namespace and port.
		e.stop()
		e.start()
		synctest.Wait()
		assert.Equal(t, []string{id}, net.Namespaces(), "the adopted pod keeps its namespace")
		after, _, err := e.store.List(context.Background(), store.PrefixPorts+node+"/")
		require.NoError(t, err)
		assert.Equal(t, ports, after, "and its port")

		e.rt.Task(id).Crash(4)
		e.waitJobReport(p, store.JobPodFailed)
		e.deleteJobPod(p)
		e.waitContainers(0)
		e.waitFor(func() bool { return len(net.Namespaces()) == 0 }, "network released")
		ports, _, err = e.store.List(context.Background(), store.PrefixPorts+node+"/")
		require.NoError(t, err)
		assert.Empty(t, ports)
	})
}
