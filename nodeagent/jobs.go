package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
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
	for v := range snapshot.All() {
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
		a.jobPods[v.Key] = jp
		a.wg.Add(1)
		go a.runJobPod(a.ctx, jp)
	}
	for key, jp := range a.jobPods {
		if !seen[key] {
			jp.stopOnce.Do(func() { close(jp.stop) })
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
	p := jp.pod
	rep := store.JobPodStatus{Name: p.Name, Job: p.Job, Index: p.Index, Node: a.cfg.Node}

	// A report means an earlier agent ran this pod: its container went
	// with that agent (adopt deletes containers without replica record),
	// so a pod it left running is lost, not run twice.
	prev, _, err := store.GetJSON[store.JobPodStatus](ctx, a.deps.Store, store.JobPodStatusKey(p.Job, p.Name))
	switch {
	case err == nil && prev.Phase == store.JobPodRunning:
		rep = prev
		rep.Phase, rep.Reason, rep.FinishedAt = store.JobPodFailed, api.AttemptReasonNodeLost, time.Now()
		rep.Message = "the node agent restarted while the pod ran"
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

	_, job := api.SplitQualifiedName(p.Job)
	ring, err := a.logs.Open(logring.ReplicaRef{Function: api.JobLogName(p.Namespace, job), Revision: "attempt-" + strconv.Itoa(p.Index), ID: jp.id})
	if err != nil {
		a.failJobPod(ctx, jp, rep, err)
		return
	}
	defer ring.Close()
	task, port, err := a.startJobPod(ctx, jp, Output{Stdout: ring.Stdout(), Stderr: ring.Stderr()})
	defer a.removeJobPod(jp, port)
	if err != nil {
		ring.Note(fmt.Sprintf("could not start: %s", errorMessage(err)))
		a.failJobPod(ctx, jp, rep, err)
		return
	}
	a.setRunning(jp, true)
	defer a.setRunning(jp, false)
	select {
	case <-task.Done():
	case <-jp.stop:
		a.terminate(ctx, jp.id, task)
		return
	case <-ctx.Done():
		return
	}
	a.setRunning(jp, false)
	exit := task.Exit()
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
	a.log.Info("job pod exited", "pod", p.Name, "code", code)
	a.reportJobPod(ctx, jp, rep)
	a.awaitJobPodStop(ctx, jp)
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
// It runs even as the agent stops: a job pod is never adopted, so what it
// leaves would only be deleted by the next agent.
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
