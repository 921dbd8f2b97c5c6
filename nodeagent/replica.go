package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/nodeagent/logring"
	"github.com/ebbrun/ebb/store"
)

// replicaLimits are the parts of a revision's spec a running replica needs.
type replicaLimits struct {
	cpu       float64
	memory    int64
	hardLimit int
	timeout   time.Duration
}

func (s *revSpec) limits() replicaLimits {
	return replicaLimits{cpu: s.cpu, memory: s.memory, hardLimit: s.hardLimit, timeout: s.timeout}
}

func limitsOf(spec api.FunctionSpec) replicaLimits {
	spec = spec.WithDefaults()
	mem, _ := api.ParseBytes(spec.Resources.Memory) // validated when the revision was written
	return replicaLimits{cpu: spec.Resources.CPU, memory: mem, hardLimit: spec.Concurrency.HardLimit, timeout: spec.Timeout.Duration}
}

// replica is one container the agent owns. A goroutine (supervise) drives
// it through its life; the reconcile loop only requests a start or a stop.
type replica struct {
	id, function, rev string
	createdAt         time.Time
	spec              *revSpec // nil for adopted replicas, which never need creating
	limits            replicaLimits
	adopted           *adoption
	// adoptRing is the log ring an adopted task's output was reattached to.
	adoptRing *logring.Ring

	startCh, stopCh     chan struct{}
	startOnce, stopOnce sync.Once

	// Guarded by Agent.mu.
	port           int
	phase          phase
	startRequested bool
	stopRequested  bool
	restarts       int
	// crashes is the replica's consecutive crashes as of its last one, as
	// the restart backoff counts them: serving for BackoffReset forgets
	// earlier ones.
	crashes   int
	lastExit  *int
	desiredAt time.Time
	decidedAt time.Time
}

// adoption is what an earlier agent left of an adopted replica.
type adoption struct {
	task  Task // nil if the container has no task
	state TaskState
	// record is the replica's store record as the earlier agent left it.
	record store.Replica
}

func newReplica(id, function, rev string, now time.Time) *replica {
	return &replica{
		id: id, function: function, rev: rev, createdAt: now,
		phase:   phaseCreating,
		startCh: make(chan struct{}), stopCh: make(chan struct{}),
	}
}

// view is the planner's picture of r. Call with Agent.mu held.
func (r *replica) view() replicaView {
	return replicaView{ID: r.id, Phase: r.phase, StartRequested: r.startRequested, Since: r.createdAt, Crashes: r.crashes}
}

// requestStart asks r to start. Call with Agent.mu held.
func (r *replica) requestStart(now, desiredAt time.Time) {
	if r.startRequested || r.stopRequested {
		return
	}
	r.startRequested = true
	r.decidedAt, r.desiredAt = now, desiredAt
	if r.phase == phasePooled {
		r.phase = phaseStarting
	}
	r.startOnce.Do(func() { close(r.startCh) })
}

// requestStop asks r to drain and go away. Call with Agent.mu held.
func (r *replica) requestStop() {
	r.stopRequested = true
	r.phase = phaseStopping
	r.stopOnce.Do(func() { close(r.stopCh) })
}

func (a *Agent) setPhase(r *replica, p phase) {
	a.mu.Lock()
	if !r.stopRequested {
		r.phase = p
	}
	a.mu.Unlock()
	a.kick()
}

func (a *Agent) stopRequested(r *replica) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return r.stopRequested
}

func (a *Agent) addr(r *replica) string {
	a.mu.Lock()
	port := r.port
	a.mu.Unlock()
	return a.localAddr(port)
}

// supervise runs r's life and forgets it when it is over. If the agent is
// stopping it leaves the container and records as they are, for the next
// agent to adopt.
func (a *Agent) supervise(ctx context.Context, r *replica) {
	defer a.wg.Done()
	err := a.runReplica(ctx, r)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		a.log.Warn("replica ended", "replica", r.id, "err", err)
	}
	a.mu.Lock()
	delete(a.replicas, r.id)
	if r.port != 0 && a.ports[r.port] == r.id {
		delete(a.ports, r.port)
	}
	a.mu.Unlock()
	a.kick()
	a.kickStatus()
}

// runReplica takes r from wherever it is (new, or as an earlier agent left
// it) through its phases to its removal:
//
//	pool  → start → serve ─┬→ (removed on a stop)
//	          ↑            ↓
//	          └── crash ←──┘
//
// pool takes a task (an adopted one, or a new container and task) and
// holds a created one until a start is asked for; start lets its program
// run; serve probes it, publishes its endpoint and waits for its exit;
// crash reports the exit, backs off and makes a new task in the same
// container. runReplica returns when r is gone, or with ctx's error when
// the agent stops.
func (a *Agent) runReplica(ctx context.Context, r *replica) error {
	ring := r.adoptRing
	if ring == nil {
		var err error
		if ring, err = a.logs.Open(logring.ReplicaRef{Function: r.function, Revision: r.rev, ID: r.id}); err != nil {
			return err
		}
	}
	defer ring.Close()
	run := &replicaRun{
		r: r, ring: ring,
		out:   Output{Stdout: ring.Stdout(), Stderr: ring.Stderr()},
		trace: StartTrace{Function: r.function, Revision: r.rev, Replica: r.id},
		// Only a replica's first start is a cold start worth tracing;
		// adopted replicas and restarts are not.
		traced: r.adopted == nil,
	}
	next, err := a.poolPhase(ctx, run)
	for next != stepDone {
		switch next {
		case stepStart:
			next, err = a.startPhase(ctx, run)
		case stepServe:
			next, err = a.servePhase(ctx, run)
		case stepCrash:
			next, err = a.crashPhase(ctx, run)
		}
	}
	return err
}

// replicaRun is what the phases of one replica's life share. Only the
// replica's goroutine touches it.
type replicaRun struct {
	r    *replica
	ring *logring.Ring
	out  Output
	task Task
	// trace times the start under way; traced says it is a first start.
	trace  StartTrace
	traced bool
	// startPending says the task was released, and Start follows once it
	// serves.
	startPending bool
	// crashes counts consecutive crashes, for the restart backoff; serving
	// for BackoffReset forgets them.
	crashes int
	// exitReason says why the process is gone where its exit does not: it
	// was killed for failing its probe.
	exitReason string
}

// step is the phase a replica's life goes to next.
type step int

const (
	stepStart step = iota // let the task's program run
	stepServe             // probe, publish, serve until the process exits
	stepCrash             // the process is gone: report, back off, new task
	stepDone              // removed, or the agent stops; see the error
)

// done ends a replica's life with err: nil once it is removed.
func done(err error) (step, error) { return stepDone, err }

// poolPhase takes r's task: the one an earlier agent left, or a new
// container and task. A created task then waits in the pool for a start;
// an adopted running or exited one goes straight to serve or crash.
func (a *Agent) poolPhase(ctx context.Context, run *replicaRun) (step, error) {
	r := run.r
	state := TaskCreated
	if ad := r.adopted; ad != nil {
		run.task, state = ad.task, ad.state
		if ad.record.State == store.ReplicaStopping || a.stopRequested(r) {
			return done(a.remove(ctx, r, run.task, state == TaskRunning))
		}
	} else {
		task, err := a.create(ctx, r, run.out, &run.trace)
		if err != nil {
			if ctx.Err() != nil {
				return done(ctx.Err())
			}
			a.revFailed(r.rev, err)
			a.cleanup(ctx, r)
			return done(err)
		}
		run.task = task
	}
	switch state {
	case TaskRunning:
		return stepServe, nil
	case TaskStopped:
		return stepCrash, nil
	}
	return a.awaitStart(ctx, run)
}

// awaitStart holds a created task as a pool entry until a start is asked
// for, and counts the start as a pool hit or miss.
func (a *Agent) awaitStart(ctx context.Context, run *replicaRun) (step, error) {
	r, task := run.r, run.task
	a.mu.Lock()
	if !r.startRequested && !r.stopRequested {
		r.phase = phasePooled
	}
	a.mu.Unlock()
	a.kick()
	select {
	case <-r.startCh:
	case <-r.stopCh:
		return done(a.remove(ctx, r, task, false))
	case <-task.Done():
		// A pre-created task that dies (its shim killed, containerd
		// restarted) is useless: replace it rather than repair it.
		a.log.Warn("pre-created task exited", "replica", r.id, "code", task.Exit().Code)
		return done(a.remove(ctx, r, task, false))
	case <-ctx.Done():
		return done(ctx.Err())
	}
	if a.stopRequested(r) {
		return done(a.remove(ctx, r, task, false))
	}
	a.mu.Lock()
	run.trace.Desired, run.trace.Decided = r.desiredAt, r.decidedAt
	a.mu.Unlock()
	// A hit is a start decided after its task already existed.
	run.trace.PoolHit = r.adopted != nil || run.trace.TaskCreated.Before(run.trace.Decided)
	if run.trace.PoolHit {
		a.met.poolHits.Inc()
	} else {
		a.met.poolMisses.Inc()
	}
	return stepStart, nil
}

// startPhase lets the task's program run. A task that cannot start fails
// the revision and is removed.
func (a *Agent) startPhase(ctx context.Context, run *replicaRun) (step, error) {
	r, task := run.r, run.task
	a.setPhase(r, phaseStarting)
	pending, err := a.startTask(ctx, r, task)
	if err != nil {
		if ctx.Err() != nil {
			return done(ctx.Err())
		}
		a.revFailed(r.rev, fmt.Errorf("start replica %s: %w", r.id, err))
		return done(a.remove(ctx, r, task, false))
	}
	run.startPending = pending
	run.trace.Started = time.Now()
	if run.traced {
		from := run.trace.Decided
		if run.trace.TaskCreated.After(from) {
			from = run.trace.TaskCreated
		}
		a.met.startPhase.WithLabelValues(phaseLabelStart).Observe(run.trace.Started.Sub(from).Seconds())
	}
	return stepServe, nil
}

// servePhase probes the running program until it answers, then serves it.
// A program that is not ready within ProbeTimeout is killed, and its exit
// is a crash.
func (a *Agent) servePhase(ctx context.Context, run *replicaRun) (step, error) {
	r, task := run.r, run.task
	p := newProber(a.deps.Dial, a.addr(r), a.cfg.ProbePath, a.cfg.ProbeTCP, a.cfg.ProbeInterval, a.cfg.ProbeTimeout)
	p.h2c = r.spec != nil && r.spec.h2c
	switch err := p.wait(ctx, task.Done(), r.stopCh); {
	case err == nil:
		return a.serveReady(ctx, run)
	case errors.Is(err, errStopped):
		return done(a.remove(ctx, r, task, true))
	case errors.Is(err, errExited):
		return stepCrash, nil
	case errors.Is(err, errProbeTimeout):
		run.exitReason = fmt.Sprintf("was not ready within %s", a.cfg.ProbeTimeout)
		_ = task.Signal(ctx, syscall.SIGKILL)
		if !waitDone(ctx, task, 10*time.Second) {
			if ctx.Err() != nil {
				return done(ctx.Err())
			}
			a.revFailed(r.rev, fmt.Errorf("replica %s ignored SIGKILL", r.id))
			return done(a.remove(ctx, r, task, false))
		}
		return stepCrash, nil
	default:
		return done(err)
	}
}

// serveReady publishes the ready replica's endpoint, finishes a released
// start, and waits for the process to exit (a crash) or a stop.
func (a *Agent) serveReady(ctx context.Context, run *replicaRun) (step, error) {
	r, task := run.r, run.task
	startPending := run.startPending
	run.startPending = false
	if err := a.publish(ctx, r, task, &run.trace, run.traced); err != nil {
		if ctx.Err() != nil {
			return done(ctx.Err())
		}
		if errors.Is(err, errStopped) {
			return done(a.remove(ctx, r, task, true))
		}
		return stepCrash, nil // the process exited while the endpoint was being written
	}
	if startPending {
		a.confirmStart(ctx, r, task)
	}
	run.traced = false
	readyAt := time.Now()
	select {
	case <-r.stopCh:
		return done(a.remove(ctx, r, task, true))
	case <-task.Done():
	case <-ctx.Done():
		return done(ctx.Err())
	}
	if time.Since(readyAt) >= a.cfg.BackoffReset {
		run.crashes = 0
	}
	return stepCrash, nil
}

// crashPhase deals with a process that is gone: it reports the crash
// (recordCrash, the one place a crash is reported), waits out the backoff
// and makes a new task in the same container, keeping the replica's name
// and port.
func (a *Agent) crashPhase(ctx context.Context, run *replicaRun) (step, error) {
	r := run.r
	run.crashes++
	c := crash{
		exit:        run.task.Exit(),
		consecutive: run.crashes,
		delay:       backoff(a.cfg.RestartBackoff, a.cfg.RestartBackoffMax, run.crashes),
	}
	reason := run.exitReason
	run.exitReason = ""
	if reason == "" {
		reason = fmt.Sprintf("exited with code %d", c.exit.Code)
		if c.exit.Err != nil {
			reason = fmt.Sprintf("was lost by the runtime: %v", c.exit.Err)
		}
	}
	run.ring.Note(fmt.Sprintf("%s; restarting in %s", reason, c.delay))
	c.lines, _ = run.ring.Last(a.cfg.LastLogLines)
	c.msg = fmt.Sprintf("replica %s %s; restarting in %s", r.id, reason, c.delay)
	a.recordCrash(ctx, r, c)

	t := time.NewTimer(c.delay)
	select {
	case <-t.C:
	case <-r.stopCh:
		t.Stop()
		return done(a.remove(ctx, r, nil, false))
	case <-ctx.Done():
		t.Stop()
		return done(ctx.Err())
	}
	task, err := a.deps.Runtime.NewTask(ctx, r.id, run.out)
	if err != nil {
		if ctx.Err() != nil {
			return done(ctx.Err())
		}
		a.revFailed(r.rev, fmt.Errorf("recreate task of replica %s: %w", r.id, err))
		return done(a.remove(ctx, r, nil, false))
	}
	run.task = task
	run.trace = StartTrace{Function: r.function, Revision: r.rev, Replica: r.id}
	return stepStart, nil
}

// startTask lets a created task's program run: through Release where the
// runtime can, and through Start otherwise. It reports whether Start is
// still to come, for confirmStart once the replica serves.
func (a *Agent) startTask(ctx context.Context, r *replica, task Task) (startPending bool, err error) {
	err = task.Release(ctx)
	if err == nil {
		a.met.starts.WithLabelValues("release").Inc()
		return true, nil
	}
	switch {
	case ctx.Err() != nil:
	case errors.Is(err, ErrNoRelease):
		a.log.Debug("task cannot be released; starting through the runtime", "replica", r.id, "err", err)
	default:
		a.log.Warn("release failed; starting through the runtime", "replica", r.id, "err", err)
	}
	a.met.starts.WithLabelValues("start").Inc()
	return false, task.Start(ctx)
}

// confirmStart sends the Start that follows a Release. It waits until the
// replica serves and its endpoint is written, because the runtime's
// bookkeeping takes as much CPU as the program's own start, and a cold
// request should not wait for it. A failure leaves the program serving,
// with the runtime calling it created until a restarted agent's Attach
// finishes the start; a process that has exited meanwhile is the crash
// path's, not an error here.
func (a *Agent) confirmStart(ctx context.Context, r *replica, task Task) {
	err := task.Start(ctx)
	if err == nil || ctx.Err() != nil {
		return
	}
	select {
	case <-task.Done():
	default:
		a.log.Warn("runtime did not record the start of a released task", "replica", r.id, "err", err)
	}
}

// create allocates r's port, records it, and creates its container and
// task. On failure it leaves cleanup to the caller.
func (a *Agent) create(ctx context.Context, r *replica, out Output, trace *StartTrace) (Task, error) {
	if err := a.allocate(ctx, r); err != nil {
		return nil, err
	}
	a.mu.Lock()
	port := r.port
	a.mu.Unlock()
	spec := r.spec.containerSpec(a.cfg.Node, r.id, port, a.secretsDir(r.rev), a.cfg.TmpBytes)
	ns, _ := api.SplitQualifiedName(r.function)
	if err := a.isolate(ctx, &spec, ns, port); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := a.deps.Runtime.Create(ctx, spec); err != nil {
		return nil, fmt.Errorf("create container %s: %w", r.id, err)
	}
	trace.Created = time.Now()
	a.met.startPhase.WithLabelValues(phaseLabelCreate).Observe(trace.Created.Sub(t0).Seconds())
	task, err := a.deps.Runtime.NewTask(ctx, r.id, out)
	if err != nil {
		return nil, fmt.Errorf("create task %s: %w", r.id, err)
	}
	trace.TaskCreated = time.Now()
	a.met.startPhase.WithLabelValues(phaseLabelTask).Observe(trace.TaskCreated.Sub(trace.Created).Seconds())
	return task, nil
}

// isolate gives a container what every one the agent runs gets, replica
// or job pod: the default user, a user namespace of its tenancy
// namespace's ids, and a network namespace of its own with the address
// port fixes (when the agent isolates networks).
func (a *Agent) isolate(ctx context.Context, spec *ContainerSpec, namespace string, port int) error {
	spec.DefaultUser = a.cfg.DefaultUser
	spec.Labels[LabelNetwork] = a.networkMode()
	if a.deps.Users != nil {
		ids, err := a.deps.Users.For(namespace)
		if err != nil {
			return fmt.Errorf("user namespace of %s: %w", spec.ID, err)
		}
		spec.UserNS = &ids
	}
	if a.deps.Network != nil {
		t0 := time.Now()
		netns, err := a.deps.Network.Prepare(ctx, spec.ID, port)
		if err != nil {
			return fmt.Errorf("network of %s: %w", spec.ID, err)
		}
		spec.NetnsPath = netns
		a.met.startPhase.WithLabelValues(phaseLabelNetwork).Observe(time.Since(t0).Seconds())
	}
	return nil
}

// publish writes r's endpoint and ready record, retrying store errors until
// it succeeds, r is stopped or its process exits.
func (a *Agent) publish(ctx context.Context, r *replica, task Task, trace *StartTrace, traced bool) error {
	trace.Ready = time.Now()
	if traced && !trace.Started.IsZero() {
		a.met.startPhase.WithLabelValues(phaseLabelReady).Observe(trace.Ready.Sub(trace.Started).Seconds())
	}
	a.mu.Lock()
	port, restarts, lastExit := r.port, r.restarts, r.lastExit
	a.mu.Unlock()
	ep := store.Endpoint{
		Function: r.function, Revision: r.rev, Replica: r.id, Node: a.cfg.Node,
		Addr:    a.endpointAddr(port),
		Limit:   r.limits.hardLimit,
		ReadyAt: trace.Ready,
		Start:   startPhases(trace),
	}
	rec := a.record(r, port, store.ReplicaReady, restarts, lastExit)
	for attempt := 1; ; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
		_, err := a.deps.Store.Txn(sctx,
			store.PutJSON(store.EndpointKey(r.rev, r.id), ep, store.AnyVersion),
			store.PutJSON(store.ReplicaKey(a.cfg.Node, r.id), rec, store.AnyVersion))
		cancel()
		if err == nil {
			break
		}
		a.met.storeErrors.Inc()
		a.log.Warn("publish endpoint", "replica", r.id, "attempt", attempt, "err", err)
		t := time.NewTimer(backoff(10*time.Millisecond, time.Second, attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-r.stopCh:
			t.Stop()
			return errStopped
		case <-task.Done():
			t.Stop()
			return errExited
		case <-t.C:
		}
	}
	trace.Published = time.Now()
	a.mu.Lock()
	a.lastReady = trace.Published
	a.mu.Unlock()
	a.setPhase(r, phaseReady)
	a.revOK(r.rev)
	a.kickStatus()
	if traced && !trace.Started.IsZero() {
		pool := "miss"
		if trace.PoolHit {
			pool = "hit"
		}
		from := trace.Decided
		if from.IsZero() {
			from = trace.Started
		}
		a.met.coldStart.WithLabelValues(pool).Observe(trace.Published.Sub(from).Seconds())
		if a.deps.OnStarted != nil {
			a.deps.OnStarted(*trace)
		}
	}
	return nil
}

func (a *Agent) record(r *replica, port int, state string, restarts int, lastExit *int) store.Replica {
	return store.Replica{
		ID: r.id, Node: a.cfg.Node, Function: r.function, Revision: r.rev,
		Port: port, State: state, Restarts: restarts, LastExitCode: lastExit, CreatedAt: r.createdAt,
	}
}

// crash is one crash of a replica, as recordCrash reports it.
type crash struct {
	exit Exit
	// consecutive counts the replica's crashes in a row, this one
	// included: the restart backoff's count.
	consecutive int
	// delay is the wait before the restart.
	delay time.Duration
	// msg is for the revision status; lines are the replica's last log
	// lines.
	msg   string
	lines []string
}

// recordCrash counts a crash on the replica and its revision, and takes the
// replica's endpoint out of the store.
func (a *Agent) recordCrash(ctx context.Context, r *replica, c crash) {
	code, msg, lines := c.exit.Code, c.msg, c.lines
	a.mu.Lock()
	r.restarts++
	r.crashes = c.consecutive
	r.lastExit = &code
	if !r.stopRequested {
		r.phase = phaseBackoff
	}
	if rs := a.revs[r.rev]; rs != nil {
		rs.restarts++
		rs.lastExit = &code
		rs.lastLog = lines
		rs.crashMsg = msg
	}
	port, restarts := r.port, r.restarts
	a.mu.Unlock()
	a.met.restarts.Inc()
	a.log.Info("replica crashed", "replica", r.id, "code", code, "msg", msg)
	a.kick()
	a.kickStatus()
	rec := a.record(r, port, store.ReplicaBackoff, restarts, &code)
	a.txn(ctx, "unpublish crashed replica",
		store.Delete(store.EndpointKey(r.rev, r.id), store.AnyVersion),
		store.PutJSON(store.ReplicaKey(a.cfg.Node, r.id), rec, store.AnyVersion))
}

// remove drains and removes r: endpoint first, then (for a running
// process) a wait for its connections to close, SIGTERM, SIGKILL after the
// grace period, and finally the container and r's records. A process that
// never ran is simply deleted with its container.
func (a *Agent) remove(ctx context.Context, r *replica, task Task, running bool) error {
	a.setPhase(r, phaseStopping)
	a.mu.Lock()
	r.stopRequested = true
	r.phase = phaseStopping
	port, restarts, lastExit := r.port, r.restarts, r.lastExit
	a.mu.Unlock()
	a.kickStatus()
	if running {
		rec := a.record(r, port, store.ReplicaStopping, restarts, lastExit)
		if err := a.txn(ctx, "unpublish stopping replica",
			store.Delete(store.EndpointKey(r.rev, r.id), store.AnyVersion),
			store.PutJSON(store.ReplicaKey(a.cfg.Node, r.id), rec, store.AnyVersion)); err != nil {
			return err
		}
		if task != nil {
			a.drain(ctx, r, task, port)
			a.terminate(ctx, r.id, task)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return a.cleanup(ctx, r)
}

// cleanup deletes r's container and records. With a cancelled ctx it does
// nothing: the next agent finds the records and finishes the job.
func (a *Agent) cleanup(ctx context.Context, r *replica) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := a.deps.Runtime.Delete(ctx, r.id); err != nil {
		a.log.Warn("delete container", "replica", r.id, "err", err)
		return fmt.Errorf("delete container %s: %w", r.id, err)
	}
	if a.deps.Network != nil {
		if err := a.deps.Network.Release(ctx, r.id); err != nil {
			a.log.Warn("release replica network", "replica", r.id, "err", err)
			return fmt.Errorf("release network of %s: %w", r.id, err)
		}
	}
	a.mu.Lock()
	port := r.port
	a.mu.Unlock()
	ops := []store.Op{
		store.Delete(store.EndpointKey(r.rev, r.id), store.AnyVersion),
		store.Delete(store.ReplicaKey(a.cfg.Node, r.id), store.AnyVersion),
	}
	if port != 0 {
		ops = append(ops, store.Delete(store.PortKey(a.cfg.Node, port), store.AnyVersion))
	}
	return a.txn(ctx, "remove replica records", ops...)
}

// drain waits until no connection of the replica carries a request (see
// connActivity), at least DrainDelay (for routers to see the endpoint go)
// and at most DrainTimeout or the revision's request timeout.
func (a *Agent) drain(ctx context.Context, r *replica, task Task, port int) {
	limit := a.cfg.DrainTimeout
	if r.limits.timeout > 0 && r.limits.timeout < limit {
		limit = r.limits.timeout
	}
	if limit < a.cfg.DrainDelay {
		limit = a.cfg.DrainDelay
	}
	start := time.Now()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTimer(a.cfg.DrainDelay)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-task.Done():
			return
		case <-deadline.C:
			a.log.Info("drain timed out", "replica", r.id, "after", limit)
			return
		case <-tick.C:
		}
		busy, err := a.busyConns(r, task, port)
		if err != nil {
			a.log.Warn("cannot see the replica's connections; not draining", "replica", r.id, "err", err)
			return
		}
		if busy == 0 {
			a.log.Debug("drained", "replica", r.id, "after", time.Since(start))
			return
		}
		tick.Reset(20 * time.Millisecond)
	}
}

// busyConns counts the replica's requests in flight: its connections that
// carry one as sock_diag sees them (or, if sock_diag is unavailable, every
// established connection), or the open requests Deps.Requests counts on
// connections whose data skips TCP, whichever is more.
func (a *Agent) busyConns(r *replica, task Task, port int) (int, error) {
	busy, err := a.socketBusy(r, task, port)
	if a.deps.Requests == nil || port <= 0 || port > 65535 {
		return busy, err
	}
	open, tracked, rerr := a.deps.Requests.OpenRequests(uint16(port))
	switch {
	case rerr != nil || !tracked:
		return busy, err
	case err != nil:
		return open, nil
	default:
		return max(busy, open), nil
	}
}

// socketBusy asks sock_diag about the replica's sockets, in its own
// network namespace when it has one: sock_diag sees only the namespace its
// socket was made in.
func (a *Agent) socketBusy(r *replica, task Task, port int) (int, error) {
	var act connActivity
	var err error
	diag := func() error {
		act, err = replicaConns(port)
		return nil
	}
	if a.deps.Network != nil {
		if nerr := a.deps.Network.InNamespace(r.id, diag); nerr != nil {
			err = nerr
		}
	} else {
		_ = diag()
	}
	if err == nil {
		return act.Busy, nil
	}
	return procEstablished(task.Pid(), port)
}

// terminate sends SIGTERM, then SIGKILL after the grace period.
func (a *Agent) terminate(ctx context.Context, id string, task Task) {
	select {
	case <-task.Done():
		return
	default:
	}
	if err := task.Signal(ctx, syscall.SIGTERM); err != nil && !errors.Is(err, ErrNotFound) {
		a.log.Warn("SIGTERM", "container", id, "err", err)
	}
	if waitDone(ctx, task, a.cfg.TerminationGrace) {
		return
	}
	a.log.Info("replica ignored SIGTERM; killing", "container", id, "grace", a.cfg.TerminationGrace)
	_ = task.Signal(ctx, syscall.SIGKILL)
	waitDone(ctx, task, 10*time.Second)
}

func waitDone(ctx context.Context, task Task, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-task.Done():
		return true
	case <-ctx.Done():
		return false
	case <-t.C:
		return false
	}
}

// txn applies ops, retrying store errors a few times.
func (a *Agent) txn(ctx context.Context, what string, ops ...store.Op) error {
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
		_, err = a.deps.Store.Txn(sctx, ops...)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		a.met.storeErrors.Inc()
		a.log.Warn(what, "attempt", attempt, "err", err)
		t := time.NewTimer(backoff(20*time.Millisecond, time.Second, attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// allocate picks a free port for r and writes its port and replica records
// in one transaction, before any container exists: whatever happens next,
// the next agent finds the records and can clean up.
func (a *Agent) allocate(ctx context.Context, r *replica) error {
	// Other programs on the node may hold any number of ports in the range,
	// so try every port once before giving up.
	span := a.cfg.PortMax - a.cfg.PortMin + 1
	for tries := 0; tries < span; tries++ {
		port, err := a.pickPort(r.id)
		if err != nil {
			return err
		}
		// A replica in its own network namespace binds the port there,
		// where no other program can hold it.
		if a.deps.Network == nil && !bindable(port) {
			a.markBusy(port, r.id)
			continue
		}
		state := store.ReplicaPreCreated
		a.mu.Lock()
		if r.startRequested {
			state = store.ReplicaStarting
		}
		a.mu.Unlock()
		rec := a.record(r, port, state, 0, nil)
		sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
		_, err = a.deps.Store.Txn(sctx,
			store.PutJSON(store.PortKey(a.cfg.Node, port), r.id, store.MustNotExist),
			store.PutJSON(store.ReplicaKey(a.cfg.Node, r.id), rec, store.MustNotExist))
		cancel()
		switch {
		case err == nil:
			a.mu.Lock()
			r.port = port
			a.mu.Unlock()
			return nil
		case errors.Is(err, store.ErrConflict):
			a.markBusy(port, r.id)
			continue
		default:
			a.releasePort(port, r.id)
			return fmt.Errorf("record replica %s: %w", r.id, err)
		}
	}
	return fmt.Errorf("no free port in %d-%d: every one is held by a replica or another program", a.cfg.PortMin, a.cfg.PortMax)
}

// pickPort reserves the next port in range that no replica holds, going
// round the range from the last one it gave: a port, and with isolation
// the address it fixes, is not handed out again until the others have
// been, so nothing that remembers an address for a while (the kernel's
// neighbour and connection state, a client's pool) mistakes a new replica
// for the one that just went.
func (a *Agent) pickPort(id string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	span := a.cfg.PortMax - a.cfg.PortMin + 1
	for i := range span {
		p := a.cfg.PortMin + ((a.nextPort-a.cfg.PortMin+i)%span+span)%span
		if _, taken := a.ports[p]; taken {
			continue
		}
		if until, busy := a.busyPorts[p]; busy {
			if now.Before(until) {
				continue
			}
			delete(a.busyPorts, p)
		}
		a.ports[p] = id
		a.nextPort = p + 1
		return p, nil
	}
	return 0, fmt.Errorf("all ports %d-%d are allocated", a.cfg.PortMin, a.cfg.PortMax)
}

func (a *Agent) markBusy(port int, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ports[port] == id {
		delete(a.ports, port)
	}
	a.busyPorts[port] = time.Now().Add(time.Minute)
}

func (a *Agent) releasePort(port int, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ports[port] == id {
		delete(a.ports, port)
	}
}

// bindable reports whether no other program listens on port, on any
// address: the replica binds it on all of them.
func bindable(port int) bool {
	l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// startPhases is what the endpoint record says of the start: the phases
// the activator shows a request that waited for it.
func startPhases(t *StartTrace) *store.StartPhases {
	if t.Started.IsZero() {
		return nil
	}
	// A pooled task was created before the start was decided: the start
	// spent nothing on it.
	var created time.Time
	if !t.PoolHit {
		created = t.TaskCreated
		if created.IsZero() {
			created = t.Created
		}
	}
	return &store.StartPhases{Decided: t.Decided, Created: created, Started: t.Started, Ready: t.Ready}
}
