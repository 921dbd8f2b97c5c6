package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/nodeagent/logring"
	"github.com/ebbrun/ebb/store"
)

// LogQuery selects log lines for ReadLogs: a function, optionally one
// revision, a tail of the newest lines of all its replicas together and
// whether to follow.
type LogQuery = logring.Query

// Agent reconciles the replicas the store assigns to its node into
// containers. Create it with New and run it with Run.
type Agent struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	met    *metrics
	logs   *logring.Store
	policy poolPolicy
	// assignments is what the agent reconciles to; ownAssignments says Run
	// runs it.
	assignments    *store.Cache[store.Assignment]
	ownAssignments bool

	wake       chan struct{} // the reconcile loop's doorbell
	statusWake chan struct{} // the status writer's doorbell
	wg         sync.WaitGroup

	mu       sync.Mutex
	ctx      context.Context // Run's; what replica goroutines live under
	running  bool
	synced   bool // the first assignment snapshot has arrived
	desired  map[string]store.Assignment
	revs     map[string]*revState
	replicas map[string]*replica
	ports    map[int]string // allocated port → replica id
	// busyPorts are ports some other program holds, skipped until the time.
	busyPorts map[int]time.Time
	// nextPort is where pickPort looks first.
	nextPort int
	// seedStatus is what an earlier agent last wrote for each revision, so
	// counters such as restarts survive an agent restart.
	seedStatus map[string]store.RevisionNodeStatus
	images     []string
	// written is the node record as last written, heartbeat aside; only
	// the heartbeat loop touches it (lease.go).
	written *store.Node
	// lastReady is when a replica last became ready; see PoolRefillDelay.
	lastReady time.Time
	// jobPods are the job pods the agent runs, by record key; jobPodCache
	// is this node's job pod records.
	jobPods        map[string]*jobPod
	jobPodCache    *store.Cache[store.JobPod]
	ownJobPodCache bool
	// secretsMu serialises writing secrets, and mounting the tmpfs they go
	// to, between the goroutines that prepare revisions.
	secretsMu sync.Mutex
}

// revState is what the agent knows of one revision on this node.
type revState struct {
	name     string
	function string
	// spec is set once the revision is prepared: record read, image
	// resolved and checked.
	spec      *revSpec
	preparing bool
	// failures counts consecutive failures to create or start a replica;
	// while retryAt is in the future no replica is created.
	failures int
	failMsg  string
	retryAt  time.Time
	lastUsed time.Time
	// wantSince is when the desired count last went up, for traces.
	wantSince time.Time
	restarts  int
	lastExit  *int
	lastLog   []string
	crashMsg  string
}

// New returns an agent. It creates the log directory but touches neither
// the store nor the runtime until Run.
func New(cfg Config, deps Deps) (*Agent, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node agent config: %w", err)
	}
	if deps.Store == nil || deps.Runtime == nil || deps.Logger == nil {
		return nil, errors.New("node agent needs a store, a runtime and a logger")
	}
	met, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register node agent metrics: %w", err)
	}
	logs, err := logring.New(logring.Config{
		Dir:       filepath.Join(cfg.DataDir, "logs"),
		MaxBytes:  cfg.LogMaxBytes,
		Retention: cfg.LogRetention,
	})
	if err != nil {
		return nil, fmt.Errorf("node agent logs: %w", err)
	}
	perRev := cfg.PoolPerRevision
	if perRev < 0 {
		perRev = 0
	}
	a := &Agent{
		cfg:  cfg,
		deps: deps,
		log:  deps.Logger.With("component", "nodeagent", "node", cfg.Node),
		met:  met,
		logs: logs,
		policy: poolPolicy{
			PerRevision:  perRev,
			Window:       cfg.PoolWindow,
			MemoryBudget: cfg.PoolMemoryBudget,
			EntryMemory:  cfg.PoolEntryMemory,
		},
		wake:       make(chan struct{}, 1),
		statusWake: make(chan struct{}, 1),
		desired:    map[string]store.Assignment{},
		revs:       map[string]*revState{},
		replicas:   map[string]*replica{},
		ports:      map[int]string{},
		busyPorts:  map[int]time.Time{},
		nextPort:   cfg.PortMin,
		seedStatus: map[string]store.RevisionNodeStatus{},
		jobPods:    map[string]*jobPod{},
	}
	a.jobPodCache = deps.JobPods
	if a.jobPodCache == nil {
		a.jobPodCache = store.NewCache(deps.Store, store.JobPodsPrefix(cfg.Node), store.CacheConfig[store.JobPod]{
			OnUndecodable: func(key string, err error) { a.log.Warn("ignoring undecodable job pod", "key", key, "err", err) },
		})
		a.ownJobPodCache = true
	}
	a.assignments = deps.Assignments
	if a.assignments == nil {
		a.assignments = store.NewCache(deps.Store, store.AssignmentsPrefix(cfg.Node), store.CacheConfig[store.Assignment]{
			OnUndecodable: func(key string, err error) { a.log.Warn("ignoring undecodable assignment", "key", key, "err", err) },
		})
		a.ownAssignments = true
	}
	met.poolBudget.Set(float64(cfg.PoolMemoryBudget))
	return a, nil
}

// ReadLogs writes the log lines of the function's replicas on this node to
// w as "{replica} {stream}: {text}" lines; see LogQuery. The control plane
// of a single-node setup calls it in process.
func (a *Agent) ReadLogs(ctx context.Context, w io.Writer, q LogQuery) error {
	return a.logs.Read(ctx, w, q)
}

// Handler serves this agent's API for other nodes:
//
//	GET /v1/logs?function=F&revision=R&tail=N&follow=true  ReadLogs, as text/plain
//	GET /healthz
//
// It requires Config.APIToken as a bearer token when one is set.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/logs", a.logs.Handler(a.cfg.APIToken))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

// Run adopts the containers an earlier agent left on this node, then
// reconciles until ctx ends. It leaves containers running when it returns,
// so that the next agent adopts them and no request is lost to a restart.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("node agent is already running")
	}
	a.running = true
	a.mu.Unlock()

	if err := os.MkdirAll(a.secretsRoot(), 0o700); err != nil {
		return fmt.Errorf("create run dir: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	a.mu.Lock()
	a.ctx = gctx
	a.mu.Unlock()
	// The lease is held from the start: adoption republishes the endpoints
	// of what it keeps, and the leader deletes those of a node without one.
	lctx, stopLease := context.WithCancel(gctx)
	defer stopLease()
	g.Go(func() error { return a.leaseLoop(lctx) })
	if err := a.adopt(gctx); err != nil {
		stopLease()
		_ = g.Wait()
		a.wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("adopt containers: %w", err)
	}
	if a.ownAssignments {
		g.Go(func() error { return a.assignments.Run(gctx) })
	}
	g.Go(func() error {
		return a.assignments.Follow(gctx, func(store.Update[store.Assignment]) {
			a.onAssignments(a.assignments.Snapshot())
		})
	})
	// Job pods start only after adopt, which deletes every container
	// without a replica record: no job pod outlives its agent, so neither
	// do the secrets of one.
	_ = os.RemoveAll(filepath.Join(a.secretsRoot(), "jobs"))
	if a.ownJobPodCache {
		g.Go(func() error { return a.jobPodCache.Run(gctx) })
	}
	g.Go(func() error {
		return a.jobPodCache.Follow(gctx, func(store.Update[store.JobPod]) {
			a.onJobPods(a.jobPodCache.Snapshot())
		})
	})
	g.Go(func() error { return a.loop(gctx) })
	g.Go(func() error { return a.statusLoop(gctx) })
	g.Go(func() error { return a.heartbeatLoop(gctx) })
	err := g.Wait()
	a.wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (a *Agent) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Agent) kickStatus() {
	select {
	case a.statusWake <- struct{}{}:
	default:
	}
}

func (a *Agent) onAssignments(snapshot *store.Snapshot[store.Assignment]) {
	now := time.Now()
	prefix := store.AssignmentsPrefix(a.cfg.Node)
	desired := make(map[string]store.Assignment, snapshot.Len())
	for v := range snapshot.All() {
		rev, mine := strings.CutPrefix(v.Key, prefix)
		if !mine {
			continue // another node's, in a cache of every node's
		}
		as := v.Value
		if api.ValidateQualifiedName("revision", rev) != nil || api.ValidateQualifiedName("function", as.Function) != nil {
			a.log.Warn("ignoring assignment with a bad revision or function name", "key", v.Key, "function", as.Function)
			continue
		}
		as.Revision = rev
		desired[rev] = as
	}
	a.mu.Lock()
	for rev, as := range desired {
		if as.Replicas > a.desired[rev].Replicas {
			a.revLocked(rev, as.Function).wantSince = now
		}
	}
	a.desired = desired
	a.synced = true
	a.mu.Unlock()
	a.kick()
}

func (a *Agent) revLocked(rev, function string) *revState {
	rs, ok := a.revs[rev]
	if !ok {
		rs = &revState{name: rev, function: function}
		if seed, ok := a.seedStatus[rev]; ok {
			rs.restarts, rs.lastExit, rs.lastLog = seed.Restarts, seed.LastExitCode, seed.LastLogLines
		}
		a.revs[rev] = rs
	}
	return rs
}

func (a *Agent) loop(ctx context.Context) error {
	t := time.NewTicker(a.cfg.ResyncInterval)
	defer t.Stop()
	for {
		a.reconcile(time.Now())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.wake:
		case <-t.C:
			a.kickStatus()
		}
	}
}

// reconcile compares desired and observed state once and sets replicas in
// motion. It does no I/O: replica goroutines do the work and kick the loop
// when they get somewhere.
func (a *Agent) reconcile(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.synced || a.ctx.Err() != nil {
		return
	}
	byRev := map[string][]*replica{}
	for _, r := range a.replicas {
		byRev[r.rev] = append(byRev[r.rev], r)
	}
	for rev, as := range a.desired {
		a.revLocked(rev, as.Function)
	}
	var cands []poolCandidate
	for rev, rs := range a.revs {
		as, assigned := a.desired[rev]
		if !assigned && len(byRev[rev]) == 0 {
			if !rs.preparing {
				delete(a.revs, rev)
				_ = os.RemoveAll(a.secretsDir(rev))
			}
			continue
		}
		busy := as.Replicas > 0
		for _, r := range byRev[rev] {
			busy = busy || r.view().active()
		}
		if busy {
			rs.lastUsed = now
		}
		if assigned {
			cands = append(cands, poolCandidate{Rev: rev, Explicit: as.PreCreated, LastUsed: rs.lastUsed})
			if rs.spec == nil && !rs.preparing && !now.Before(rs.retryAt) {
				rs.preparing = true
				a.wg.Add(1)
				go a.prepare(a.ctx, rs.name, rs.function)
			}
		}
	}
	targets := poolTargets(a.policy, now, cands)

	starting, poolCreating := 0, 0
	for _, r := range a.replicas {
		v := r.view()
		switch {
		case v.Phase == phaseStarting, v.Phase == phaseCreating && v.StartRequested:
			starting++
		case v.Phase == phaseCreating:
			poolCreating++
		}
	}
	refillScheduled := false
	for _, rev := range slices.Sorted(maps.Keys(a.revs)) {
		rs := a.revs[rev]
		in := revInput{
			Want:      a.desired[rev].Replicas,
			WantPool:  targets[rev],
			CanCreate: rs.spec != nil && !now.Before(rs.retryAt),
		}
		for _, r := range byRev[rev] {
			in.Replicas = append(in.Replicas, r.view())
		}
		for _, act := range planRevision(in) {
			switch act.Kind {
			case actStart:
				a.replicas[act.ID].requestStart(now, rs.wantSince)
				a.log.Debug("start", "replica", act.ID, "want", in.Want)
				starting++
			case actCreateStarted:
				id := a.spawnLocked(rs, true, now)
				a.log.Debug("create and start", "replica", id, "want", in.Want)
				starting++
			case actCreatePool:
				// Refilling the pool waits for starts to finish and their
				// first requests to be served, so it never takes a core
				// from a cold start.
				if wait := a.lastReady.Add(a.cfg.PoolRefillDelay).Sub(now); wait > 0 {
					if !refillScheduled {
						time.AfterFunc(wait, a.kick)
						refillScheduled = true
					}
					continue
				}
				if starting == 0 && poolCreating < a.cfg.PoolCreateParallel {
					id := a.spawnLocked(rs, false, now)
					a.log.Debug("pre-create", "replica", id, "wantPool", in.WantPool)
					poolCreating++
				}
			case actStop:
				a.replicas[act.ID].requestStop()
				a.log.Debug("stop", "replica", act.ID, "want", in.Want, "wantPool", in.WantPool)
			}
		}
	}
	a.kickStatus()
}

// spawnLocked creates a replica of rs and its goroutine.
func (a *Agent) spawnLocked(rs *revState, start bool, now time.Time) string {
	id := newReplicaID(rs.name)
	for a.replicas[id] != nil {
		id = newReplicaID(rs.name)
	}
	r := newReplica(id, rs.function, rs.name, now)
	r.spec = rs.spec
	r.limits = rs.spec.limits()
	if start {
		r.requestStart(now, rs.wantSince)
	}
	a.replicas[id] = r
	a.wg.Add(1)
	go a.supervise(a.ctx, r)
	return id
}

// prepare reads a revision's record and image and checks that the image can
// run, so that replicas are created from a spec known to be good.
func (a *Agent) prepare(ctx context.Context, rev, function string) {
	defer a.wg.Done()
	spec, err := a.resolve(ctx, rev, function)
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.revs[rev]
	if rs == nil {
		return
	}
	rs.preparing = false
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		a.revFailedLocked(rs, err)
		a.log.Warn("cannot prepare revision", "revision", rev, "err", err)
	} else {
		rs.spec = spec
	}
	a.kick()
}

func (a *Agent) resolve(ctx context.Context, rev, function string) (*revSpec, error) {
	sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	rec, _, err := store.GetJSON[store.Revision](sctx, a.deps.Store, store.RevisionKey(function, rev))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("read revision %s: %w", rev, err)
	}
	spec := rec.Spec.WithDefaults()
	img, err := a.deps.Runtime.Image(ctx, spec.Image)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: image %s is not on node %s", ErrBadImage, spec.Image, a.cfg.Node)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", spec.Image, err)
	}
	ns, _ := api.SplitQualifiedName(rec.Function)
	secrets, err := a.readSecrets(ctx, ns, rec.Spec.Secrets)
	if err != nil {
		return nil, err
	}
	rs, err := resolveRevSpec(rec, img, secrets)
	if err != nil {
		return nil, err
	}
	if err := a.deps.Runtime.CheckExecutable(ctx, spec.Image, rs.args[0], rs.env); err != nil {
		return nil, err
	}
	if err := a.writeSecrets(a.secretsDir(rev), rs); err != nil {
		return nil, err
	}
	return rs, nil
}

// readSecrets fetches the data of every secret object refs refer to, from
// namespace ns (the function's or the job's).
func (a *Agent) readSecrets(ctx context.Context, ns string, refs []api.Secret) (map[string]map[string][]byte, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	if a.deps.Secrets == nil {
		return nil, errors.New("this node cannot read secrets (no secret reader configured)")
	}
	out := map[string]map[string][]byte{}
	for _, ref := range refs {
		if _, ok := out[ref.Secret]; ok {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
		data, err := a.deps.Secrets.SecretValues(sctx, ns, ref.Secret)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read secret %s/%s: %w", ns, ref.Secret, err)
		}
		out[ref.Secret] = data
	}
	return out, nil
}

// writeSecrets puts a revision's (or a job pod's) secrets in dir, where
// its containers mount them from, on a tmpfs: the first with secrets
// mounts one unless the directory is on one already.
func (a *Agent) writeSecrets(dir string, rs *revSpec) error {
	if len(rs.secretFiles) == 0 && len(rs.secretEnv) == 0 {
		return nil
	}
	a.secretsMu.Lock()
	defer a.secretsMu.Unlock()
	if err := mountSecretsTmpfs(a.secretsRoot()); err != nil {
		return fmt.Errorf("secrets need a tmpfs: %w", err)
	}
	return writeSecrets(dir, rs.secretFiles, rs.secretEnv)
}

// secretsRoot is per node: agents of several nodes may share a host (and a
// RunDir) in tests and small setups.
func (a *Agent) secretsRoot() string {
	return filepath.Join(a.cfg.RunDir, a.cfg.Node, "secrets")
}

// secretsDir is one revision's secrets.
func (a *Agent) secretsDir(rev string) string {
	return filepath.Join(a.secretsRoot(), rev)
}

// revFailed records that a replica of rev could not be created or started:
// the revision backs off and reports Failed until a replica becomes ready.
func (a *Agent) revFailed(rev string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rs := a.revs[rev]; rs != nil {
		a.revFailedLocked(rs, err)
	}
}

func (a *Agent) revFailedLocked(rs *revState, err error) {
	rs.failures++
	rs.failMsg = errorMessage(err)
	delay := backoff(a.cfg.RestartBackoff, a.cfg.FailedRetryMax, rs.failures)
	rs.retryAt = time.Now().Add(delay)
	a.met.startFails.Inc()
	if !errors.Is(err, ErrBadImage) {
		// Something other than the image may be at fault (the runtime, the
		// store): prepare again next time rather than trust the old spec.
		rs.spec = nil
	}
	time.AfterFunc(delay, a.kick)
	a.kickStatus()
}

func (a *Agent) revOK(rev string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rs := a.revs[rev]; rs != nil {
		rs.failures, rs.failMsg, rs.retryAt = 0, "", time.Time{}
	}
}

// backoff is base doubled for each failure after the first, capped.
func backoff(base, max time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
