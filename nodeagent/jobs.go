package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/nodeagent/logring"
	"github.com/ebbrun/ebb/store"
)

// LabelJobPod marks a job pod's container with the pod's name.
const LabelJobPod = "ebb.jobpod"

// jobPod is one job pod the agent runs: a run-to-completion container,
// created like a replica's (the same image resolution, limits, user and
// network isolation, secrets and log ring) but with no port to serve, no
// readiness probe and no endpoint. Its goroutine (runJobPod) runs it once,
// reports how it ended, and removes it when the controller deletes the
// pod's record; deleting the record while it runs kills it.
type jobPod struct {
	key     string
	pod     store.JobPod
	version int64
	// id names the container: the pod's name and a random suffix, so that
	// a job deleted and created again never meets its old container.
	id       string
	stop     chan struct{}
	stopOnce sync.Once
	// running says the pod's program runs, so that the node's heartbeat
	// counts its limits as allocated. Guarded by Agent.mu.
	running bool
	// adopted is the container an earlier agent left running the pod;
	// nil for a pod this agent starts.
	adopted *adoptedJobPod
}

// setRunning records whether jp's program runs, for the heartbeat.
func (a *Agent) setRunning(jp *jobPod, running bool) {
	a.mu.Lock()
	jp.running = running
	a.mu.Unlock()
}

// onJobPods starts a goroutine for each new pod record of this node and
// stops the pods whose records are gone.
func (a *Agent) onJobPods(snapshot *store.Snapshot[store.JobPod]) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx == nil || a.ctx.Err() != nil {
		return
	}
	seen := map[string]bool{}
	mine := store.JobPodsPrefix(a.cfg.Node)
	for v := range snapshot.All() {
		// A process that runs the autoscaler too shares its cache of every
		// node's job pods.
		if !strings.HasPrefix(v.Key, mine) {
			continue
		}
		seen[v.Key] = true
		if _, ok := a.jobPods[v.Key]; ok {
			continue
		}
		p := v.Value
		ns := p.Namespace
		if ns == "" {
			ns = api.DefaultNamespace
		}
		if api.ValidateQualifiedName("job", p.Job) != nil || !strings.HasPrefix(p.Name, p.Job+"-") || api.ValidateName("namespace", ns) != nil {
			a.log.Warn("ignoring a job pod with a bad job or pod name", "key", v.Key, "job", p.Job)
			continue
		}
		p.Namespace = ns
		jp := &jobPod{key: v.Key, pod: p, version: v.Version, id: newReplicaID(p.Name), stop: make(chan struct{})}
		if j := a.adoptedJobs[v.Key]; j != nil {
			jp.id, jp.adopted = j.id, j
			delete(a.adoptedJobs, v.Key)
		}
		a.jobPods[v.Key] = jp
		a.wg.Add(1)
		go a.runJobPod(a.ctx, jp)
	}
	for key, jp := range a.jobPods {
		if !seen[key] {
			jp.stopOnce.Do(func() { close(jp.stop) })
		}
	}
	// An adopted container whose pod's record went before the agent saw
	// it: its job is gone.
	for key, j := range a.adoptedJobs {
		if !seen[key] {
			delete(a.adoptedJobs, key)
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				a.removeJobPod(&jobPod{id: j.id, pod: store.JobPod{Name: j.id}}, j.port)
			}()
		}
	}
}

// runJobPod runs one job pod to its end; see jobPod.
func (a *Agent) runJobPod(ctx context.Context, jp *jobPod) {
	defer a.wg.Done()
	defer func() {
		a.mu.Lock()
		delete(a.jobPods, jp.key)
		a.mu.Unlock()
	}()
	if jp.adopted != nil {
		a.runAdoptedJobPod(ctx, jp)
		return
	}
	p := jp.pod
	rep := store.JobPodStatus{Name: p.Name, Job: p.Job, Index: p.Index, Node: a.cfg.Node, Container: jp.id}

	// A Running report means an earlier agent ran this pod, and adopt did
	// not find its container still running it (see adoptJobContainer): the
	// pod is lost, not run twice.
	prev, _, err := store.GetJSON[store.JobPodStatus](ctx, a.deps.Store, store.JobPodStatusKey(p.Job, p.Name))
	switch {
	case err == nil && prev.Phase == store.JobPodRunning:
		rep = prev
		rep.Phase, rep.Reason, rep.FinishedAt = store.JobPodFailed, api.AttemptReasonNodeLost, time.Now()
		rep.Message = "the node agent restarted while the pod ran, and its container was gone"
		a.reportJobPod(ctx, jp, rep)
		a.awaitJobPodStop(ctx, jp)
		return
	case err == nil:
		a.awaitJobPodStop(ctx, jp) // already over
		return
	case !errors.Is(err, store.ErrNotFound):
		if ctx.Err() == nil {
			a.log.Warn("read job pod report", "pod", p.Name, "err", err)
		}
		// Claim it anyway: the report written next is the claim.
	}
	rep.Phase, rep.StartedAt = store.JobPodRunning, time.Now()
	if !a.reportJobPod(ctx, jp, rep) {
		return // the record is gone, or the agent stops
	}

	ring, err := a.openJobRing(jp)
	if err != nil {
		a.failJobPod(ctx, jp, rep, err)
		return
	}
	defer ring.Close()
	task, port, err := a.startJobPod(ctx, jp, Output{Stdout: ring.Stdout(), Stderr: ring.Stderr()})
	if err != nil {
		a.removeJobPod(jp, port)
		ring.Note(fmt.Sprintf("could not start: %s", errorMessage(err)))
		a.failJobPod(ctx, jp, rep, err)
		return
	}
	if !a.superviseJobPod(ctx, jp, task, ring, rep) {
		a.removeJobPod(jp, port)
	}
}

// openJobRing opens the log ring of the pod's attempt.
func (a *Agent) openJobRing(jp *jobPod) (*logring.Ring, error) {
	_, job := api.SplitQualifiedName(jp.pod.Job)
	return a.logs.Open(logring.ReplicaRef{Function: api.JobLogName(jp.pod.Namespace, job), Revision: "attempt-" + strconv.Itoa(jp.pod.Index), ID: jp.id})
}

// runAdoptedJobPod attaches to the container an earlier agent left
// running the pod and supervises it as runJobPod does one it started: its
// exit is the attempt's, even if it came while no agent ran. A container
// it cannot attach to is deleted and the pod reported lost.
func (a *Agent) runAdoptedJobPod(ctx context.Context, jp *jobPod) {
	p, port := jp.pod, jp.adopted.port
	rep, _, err := store.GetJSON[store.JobPodStatus](ctx, a.deps.Store, store.JobPodStatusKey(p.Job, p.Name))
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("read adopted job pod's report", "pod", p.Name, "err", err)
		}
		rep = store.JobPodStatus{Name: p.Name, Job: p.Job, Index: p.Index, Node: a.cfg.Node, Container: jp.id,
			Phase: store.JobPodRunning}
	}
	ring, err := a.openJobRing(jp)
	if err != nil {
		a.removeJobPod(jp, port)
		a.failJobPod(ctx, jp, rep, err)
		return
	}
	defer ring.Close()
	task, err := a.deps.Runtime.Attach(ctx, jp.id, Output{Stdout: ring.Stdout(), Stderr: ring.Stderr()})
	state := TaskOther
	if err == nil {
		state, err = task.State(ctx)
	}
	if err != nil || (state != TaskRunning && state != TaskStopped) {
		if ctx.Err() != nil {
			return // the next agent tries again
		}
		a.log.Warn("cannot attach to a job pod's container; the pod is lost", "pod", p.Name, "container", jp.id, "state", state, "err", err)
		a.removeJobPod(jp, port)
		ring.Note("was lost: a restarted node agent could not attach to it")
		rep.Phase, rep.Reason, rep.FinishedAt = store.JobPodFailed, api.AttemptReasonNodeLost, time.Now()
		rep.Message = "the node agent restarted and could not attach to the pod's container"
		a.reportJobPod(ctx, jp, rep)
		a.awaitJobPodStop(ctx, jp)
		return
	}
	a.log.Info("adopted a job pod", "pod", p.Name, "container", jp.id, "state", state)
	ring.Note("adopted by a restarted node agent")
	if !a.superviseJobPod(ctx, jp, task, ring, rep) {
		a.removeJobPod(jp, port)
	}
}

// superviseJobPod waits for the pod's program to exit and reports how, or
// kills it when its record goes. It returns true to leave the container
// for the next agent: the agent stops while the pod runs, or before its
// end is reported.
func (a *Agent) superviseJobPod(ctx context.Context, jp *jobPod, task Task, ring *logring.Ring, rep store.JobPodStatus) (leave bool) {
	a.setRunning(jp, true)
	defer a.setRunning(jp, false)
	select {
	case <-task.Done():
	case <-jp.stop:
		a.terminate(ctx, jp.id, task)
		return false
	case <-ctx.Done():
		// The agent stops; the pod runs on, as replicas do, for the next
		// agent to adopt.
		return true
	}
	exit := task.Exit()
	if exit.Err != nil && ctx.Err() != nil {
		// The runtime's watch ended with the stopping agent (its
		// connection closed), not the program: the next agent adopts it.
		return true
	}
	a.setRunning(jp, false)
	code := exit.Code
	rep.ExitCode, rep.FinishedAt = &code, exit.At
	if rep.FinishedAt.IsZero() {
		rep.FinishedAt = time.Now()
	}
	rep.Phase = store.JobPodSucceeded
	if code != 0 {
		rep.Phase = store.JobPodFailed
	}
	if exit.Err != nil {
		rep.Phase, rep.ExitCode, rep.Reason = store.JobPodFailed, nil, api.AttemptReasonNodeLost
		rep.Message = errorMessage(exit.Err)
		ring.Note(fmt.Sprintf("was lost by the runtime: %v", exit.Err))
	} else {
		ring.Note(fmt.Sprintf("exited with code %d", code))
	}
	a.log.Info("job pod exited", "pod", jp.pod.Name, "code", code)
	if !a.reportJobPod(ctx, jp, rep) && ctx.Err() != nil {
		// The exited container keeps its exit code for the next agent.
		return true
	}
	a.awaitJobPodStop(ctx, jp)
	return false
}

// startJobPod resolves the pod's spec against its image and creates and
// starts its container. It returns the port it holds (with network
// isolation, for its address; 0 otherwise) for removeJobPod.
func (a *Agent) startJobPod(ctx context.Context, jp *jobPod, out Output) (Task, int, error) {
	p := jp.pod
	img, err := a.image(ctx, p.Spec.Image, p.Namespace, p.Spec.ImagePullSecret)
	if err != nil {
		return nil, 0, imageError(p.Spec.Image, err)
	}
	secrets, err := a.readSecrets(ctx, p.Namespace, p.Spec.Secrets)
	if err != nil {
		return nil, 0, err
	}
	rs, err := resolveJobSpec(p, img, secrets)
	if err != nil {
		return nil, 0, err
	}
	if err := a.deps.Runtime.CheckExecutable(ctx, p.Spec.Image, rs.args[0], rs.env); err != nil {
		return nil, 0, err
	}
	if err := a.writeSecrets(a.jobSecretsDir(jp.id), rs); err != nil {
		return nil, 0, err
	}
	port := 0
	if a.deps.Network != nil {
		// An isolated container's address comes from a port of the
		// replicas' range; the job pod holds one as a replica does.
		if port, err = a.allocateJobPort(ctx, jp.id); err != nil {
			return nil, 0, err
		}
	}
	spec := rs.containerSpec(a.cfg.Node, jp.id, 0, a.jobSecretsDir(jp.id), a.cfg.TmpBytes)
	delete(spec.Labels, LabelPort)
	spec.Labels[LabelJobPod] = p.Name
	spec.Env = newEnvWithout(spec.Env, "PORT", "EBB_REPLICA")
	if err := a.isolate(ctx, &spec, p.Namespace, port); err != nil {
		return nil, port, err
	}
	if err := a.deps.Runtime.Create(ctx, spec); err != nil {
		return nil, port, fmt.Errorf("create container %s: %w", jp.id, err)
	}
	task, err := a.deps.Runtime.NewTask(ctx, jp.id, out)
	if err != nil {
		return nil, port, fmt.Errorf("create task %s: %w", jp.id, err)
	}
	if err := task.Start(ctx); err != nil {
		return nil, port, fmt.Errorf("start task %s: %w", jp.id, err)
	}
	return task, port, nil
}

// resolveJobSpec applies a job's spec to its image config as
// resolveRevSpec does for a revision, with the job's variables in place
// of a function's: EBB_JOB, EBB_NAMESPACE and EBB_JOB_INDEX (the
// attempt's number), and no PORT.
func resolveJobSpec(p store.JobPod, img ImageConfig, secrets map[string]map[string][]byte) (*revSpec, error) {
	spec := p.Spec.WithDefaults()
	rev := store.Revision{Name: p.Name, Function: p.Job, Spec: api.FunctionSpec{
		Image: spec.Image, Args: spec.Args, Env: spec.Env, Secrets: spec.Secrets, Resources: spec.Resources,
	}}
	rs, err := resolveRevSpec(rev, img, secrets)
	if err != nil {
		return nil, err
	}
	env := newEnv(newEnvWithout(rs.env, "PORT", "EBB_FUNCTION", "EBB_REVISION"))
	_, name := api.SplitQualifiedName(p.Job)
	env.set("EBB_JOB", name)
	env.set("EBB_NAMESPACE", p.Namespace)
	env.set("EBB_JOB_INDEX", strconv.Itoa(p.Index))
	rs.env = env.list()
	return rs, nil
}

// newEnvWithout is kvs without the variables named.
func newEnvWithout(kvs []string, names ...string) []string {
	out := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || k == n
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// allocateJobPort reserves a port of the replicas' range for a job pod's
// address, recorded like a replica's so that no other node process takes
// it, and released by removeJobPod (or, after a restart, by adopt).
func (a *Agent) allocateJobPort(ctx context.Context, id string) (int, error) {
	span := a.cfg.PortMax - a.cfg.PortMin + 1
	for range span {
		port, err := a.pickPort(id)
		if err != nil {
			return 0, err
		}
		sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
		_, err = a.deps.Store.Txn(sctx, store.PutJSON(store.PortKey(a.cfg.Node, port), id, store.MustNotExist))
		cancel()
		switch {
		case err == nil:
			return port, nil
		case errors.Is(err, store.ErrConflict):
			a.markBusy(port, id)
		default:
			a.releasePort(port, id)
			return 0, fmt.Errorf("record port of job pod %s: %w", id, err)
		}
	}
	return 0, fmt.Errorf("no free port in %d-%d for job pod %s", a.cfg.PortMin, a.cfg.PortMax, id)
}

// removeJobPod deletes the pod's container, network, port and secrets.
// It runs even as the agent stops, for a pod that is over: only a running
// pod is left for the next agent to adopt.
func (a *Agent) removeJobPod(jp *jobPod, port int) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.StoreTimeout)
	defer cancel()
	if err := a.deps.Runtime.Delete(ctx, jp.id); err != nil {
		a.log.Warn("delete job pod container", "pod", jp.pod.Name, "container", jp.id, "err", err)
	}
	if a.deps.Network != nil {
		if err := a.deps.Network.Release(ctx, jp.id); err != nil {
			a.log.Warn("release job pod network", "pod", jp.pod.Name, "err", err)
		}
	}
	if port != 0 {
		if _, err := a.deps.Store.Txn(ctx, store.Delete(store.PortKey(a.cfg.Node, port), store.AnyVersion)); err != nil {
			a.log.Warn("delete job pod port record", "pod", jp.pod.Name, "err", err)
		}
		a.releasePort(port, jp.id)
	}
	_ = os.RemoveAll(a.jobSecretsDir(jp.id))
}

// failJobPod reports a pod that could not run, and waits for its record
// to go.
func (a *Agent) failJobPod(ctx context.Context, jp *jobPod, rep store.JobPodStatus, err error) {
	if ctx.Err() != nil {
		return
	}
	a.log.Warn("job pod could not run", "pod", jp.pod.Name, "err", err)
	rep.Phase, rep.Reason, rep.Message, rep.FinishedAt = store.JobPodFailed, api.AttemptReasonStartFailed, errorMessage(err), time.Now()
	a.reportJobPod(ctx, jp, rep)
	a.awaitJobPodStop(ctx, jp)
}

// reportJobPod writes the pod's report if its record still exists at the
// version the agent knows, retrying store errors. It reports false when
// the record is gone or the agent stops.
func (a *Agent) reportJobPod(ctx context.Context, jp *jobPod, rep store.JobPodStatus) bool {
	for attempt := 1; ; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
		_, err := a.deps.Store.Txn(sctx,
			store.Check(jp.key, jp.version),
			store.PutJSON(store.JobPodStatusKey(jp.pod.Job, jp.pod.Name), rep, store.AnyVersion))
		cancel()
		switch {
		case err == nil:
			return true
		case errors.Is(err, store.ErrConflict):
			return false
		}
		a.met.storeErrors.Inc()
		a.log.Warn("report job pod", "pod", jp.pod.Name, "attempt", attempt, "err", err)
		t := time.NewTimer(backoff(20*time.Millisecond, time.Second, attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-jp.stop:
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

func (a *Agent) awaitJobPodStop(ctx context.Context, jp *jobPod) {
	select {
	case <-jp.stop:
	case <-ctx.Done():
	}
}

// jobSecretsDir is one job pod's secrets, apart from the revisions'.
func (a *Agent) jobSecretsDir(id string) string {
	return filepath.Join(a.secretsRoot(), "jobs", id) // Run empties secretsRoot/jobs at start
}

// adoptedJobPod is a job pod container an earlier agent left running,
// kept by adopt for the pod's goroutine to attach to.
type adoptedJobPod struct {
	id string
	// port is the replica-range port its address holds; 0 without one.
	port int
}

// runningJobContainers reads this node's job pod records and their
// reports: the containers the reports say run them, by container id.
func (a *Agent) runningJobContainers(ctx context.Context) (map[string]string, error) {
	pods, _, err := store.ListJSON[store.JobPod](ctx, a.deps.Store, store.JobPodsPrefix(a.cfg.Node))
	if err != nil {
		return nil, fmt.Errorf("list job pods: %w", err)
	}
	out := map[string]string{}
	for _, p := range pods {
		rep, _, err := store.GetJSON[store.JobPodStatus](ctx, a.deps.Store, store.JobPodStatusKey(p.Value.Job, p.Value.Name))
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case err != nil:
			return nil, fmt.Errorf("read job pod report %s: %w", p.Value.Name, err)
		}
		if rep.Phase == store.JobPodRunning && rep.Container != "" {
			out[rep.Container] = p.Key
		}
	}
	return out, nil
}

// adoptJobContainer keeps a job pod's container that its pod's report
// names (for onJobPods to hand to the pod's goroutine) and deletes any
// other: without its record, the pod's job is gone; without the report,
// the pod is reported lost and another attempt runs in its place.
func (a *Agent) adoptJobContainer(ctx context.Context, c Container, left leftovers) error {
	key, ok := left.jobContainers[c.ID]
	if ok && containerNetworkMode(c) == a.networkMode() {
		j := &adoptedJobPod{id: c.ID}
		for _, kv := range left.ports {
			var id string
			if json.Unmarshal(kv.Value, &id) == nil && id == c.ID {
				j.port, _ = strconv.Atoi(path.Base(kv.Key))
			}
		}
		a.mu.Lock()
		a.adoptedJobs[key] = j
		if j.port != 0 {
			a.ports[j.port] = j.id
		}
		a.mu.Unlock()
		a.log.Info("adopting a running job pod", "container", c.ID, "pod", c.Labels[LabelJobPod])
		return nil
	}
	a.log.Warn("deleting a job pod container no pod record runs", "container", c.ID, "pod", c.Labels[LabelJobPod])
	if err := a.deps.Runtime.Delete(ctx, c.ID); err != nil {
		return fmt.Errorf("delete job pod container %s: %w", c.ID, err)
	}
	return nil
}

// keepJobPort says the port record at key belongs to an adopted job pod.
func (a *Agent) keepJobPort(key, id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, j := range a.adoptedJobs {
		if j.id == id && j.port != 0 && path.Base(key) == strconv.Itoa(j.port) {
			return true
		}
	}
	return false
}

// removeJobSecretsBut removes the secrets of every job pod but the
// adopted ones, whose containers still read theirs.
func (a *Agent) removeJobSecretsBut() {
	root := filepath.Join(a.secretsRoot(), "jobs")
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	a.mu.Lock()
	keep := map[string]bool{}
	for _, j := range a.adoptedJobs {
		keep[j.id] = true
	}
	a.mu.Unlock()
	for _, e := range entries {
		if !keep[e.Name()] {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}
