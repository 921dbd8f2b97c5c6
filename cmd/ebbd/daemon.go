package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/accesslog"
	"github.com/ebbrun/ebb/activator"
	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/autoscaler"
	"github.com/ebbrun/ebb/controlplane"
	"github.com/ebbrun/ebb/controlplane/audit"
	"github.com/ebbrun/ebb/controlplane/registry"
	"github.com/ebbrun/ebb/controlplane/rollouts"
	"github.com/ebbrun/ebb/internal/containerdproc"
	"github.com/ebbrun/ebb/internal/envelope"
	"github.com/ebbrun/ebb/internal/imagestore"
	"github.com/ebbrun/ebb/internal/liveness"
	"github.com/ebbrun/ebb/internal/nodecred"
	"github.com/ebbrun/ebb/internal/proxy"
	"github.com/ebbrun/ebb/internal/replicaset"
	"github.com/ebbrun/ebb/nodeagent"
	nodecontainerd "github.com/ebbrun/ebb/nodeagent/containerd"
	"github.com/ebbrun/ebb/nodeagent/nodelogs"
	"github.com/ebbrun/ebb/nodeagent/replicanet"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/router"
	"github.com/ebbrun/ebb/store"
)

// daemon holds what the roles share while ebbd runs.
type daemon struct {
	cfg   Config
	log   *slog.Logger
	store store.Store
	// queue holds asynchronous invocations; opened on first use.
	queue queue.Queue
	reg   *prometheus.Registry
	// token is the admin token from <data-dir>/token, loaded only by the
	// roles that serve the API.
	token string
	// cred is this process's node credential for the endpoints between
	// roles; the all role, which calls none of them, has none.
	cred nodecred.Credential
	// caches are the store caches every component of the roles shares.
	caches *caches
	// secrets are the secret objects, in the control-plane roles, which
	// hold their key-encryption key.
	secrets *controlplane.Secrets
	// audit is the control plane's audit log, opened before any component
	// starts, so that a node agent's first secret reads are lines too.
	audit *audit.Log

	// containerd is connected lazily by the roles that need it.
	containerd *containerd.Client
	closers    []func()
	ebpf       ebpfState // see ebpf.go
	// network is the replicas' network with --isolation on, and users the
	// host ids of their user namespaces; nil when off.
	network *replicanet.Net
	users   *userRanges
	// ha is node liveness and leadership (ha.go).
	ha haState
	// access is the router's access log in this process, when on;
	// remoteAccess reads the routers' on other machines, in the
	// control-plane role.
	access       *accesslog.Logger
	remoteAccess controlplane.LogReader
}

// close releases what start opened, last opened first.
func (d *daemon) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// start builds the components of the configured role and runs each in g.
//
//	all           API + autoscaler + router + activator + node agent, in process
//	controlplane  API + autoscaler; other nodes reach the autoscaler at /internal/v1/
//	router        router + activator, reporting to --autoscaler-url
//	nodeagent     node agent, serving its logs API on --metrics-addr
func (d *daemon) start(ctx context.Context, g *errgroup.Group) error {
	if d.cfg.Role == RoleAll || d.cfg.Role == RoleControlPlane {
		token, err := controlplane.LoadOrCreateToken(filepath.Join(d.cfg.DataDir, "token"))
		if err != nil {
			return err
		}
		d.token = token
	}
	if d.cfg.Role != RoleAll {
		if err := d.registerCredential(ctx); err != nil {
			return err
		}
	}
	assignments, jobPods := store.AssignmentsPrefix(d.cfg.NodeName), store.JobPodsPrefix(d.cfg.NodeName)
	if d.cfg.Role == RoleAll || d.cfg.Role == RoleControlPlane {
		assignments, jobPods = store.PrefixAssignments, store.PrefixJobPods
		keyFile, create := d.cfg.SecretsKeyFile, false
		if keyFile == "" {
			keyFile, create = filepath.Join(d.cfg.DataDir, "secrets.key"), true
		}
		keys, err := envelope.OpenKeyFile(keyFile, create)
		if err != nil {
			return err
		}
		d.log.Info("secrets are sealed under", "keyId", keys.KeyID(), "keyFile", keyFile)
		d.secrets = controlplane.NewSecrets(d.store, keys, nil)
		moved, err := d.secrets.MigrateInline(ctx)
		if err != nil {
			return err
		}
		for fn, secret := range moved {
			d.log.Warn("moved a function's inline secret values (stored in plain text by an earlier version) into a secret object; its spec now refers to it",
				"function", fn, "secret", secret)
		}
		if err := d.openAudit(ctx); err != nil {
			return err
		}
	}
	d.caches = newCaches(ctx, g, d.store, d.log, assignments, jobPods)
	switch d.cfg.Role {
	case RoleAll:
		// The node's lease lives in this process's memory and died with
		// the last one: take it before any component asks who is alive,
		// or the job controller would find this node's running pods lost
		// on a restart. The node agent renews it from then on.
		if err := d.leaseBackend().RenewNodeLease(ctx, d.cfg.NodeName, d.cfg.NodeLeaseTTL); err != nil {
			return fmt.Errorf("node lease: %w", err)
		}
		runner, loops, err := d.startControlPlane(ctx, g)
		if err != nil {
			return err
		}
		if err := d.loadEBPF(); err != nil {
			return err
		}
		if err := d.setupNetwork(ctx); err != nil {
			return err
		}
		agent, err := d.startNodeAgent(ctx, g)
		if err != nil {
			return err
		}
		rt, err := d.startDataPlane(ctx, g, runner, statsTee{runner, loops.rolls})
		if err != nil {
			return err
		}
		if err := d.startEBPF(ctx, g, runner, rt); err != nil {
			return err
		}
		return d.startAPIAndLead(ctx, g, runner, loops, logReader{agent})
	case RoleControlPlane:
		runner, loops, err := d.startControlPlane(ctx, g)
		if err != nil {
			return err
		}
		remote := &nodelogs.Reader{Store: d.store, Token: d.cred.String(), Client: &http.Client{}}
		d.remoteAccess = d.routersAccess()
		return d.startAPIAndLead(ctx, g, runner, loops, remoteLogs{remote})
	case RoleRouter:
		client, err := d.autoscalerClient()
		if err != nil {
			return err
		}
		if _, err := d.startDataPlane(ctx, g, client, client); err != nil {
			return err
		}
		access, err := d.advertiseAccess(ctx, g)
		if err != nil {
			return err
		}
		return d.serveHealth(ctx, g, access)
	case RoleNodeAgent:
		if err := d.loadEBPF(); err != nil {
			return err
		}
		if err := d.setupNetwork(ctx); err != nil {
			return err
		}
		agent, err := d.startNodeAgent(ctx, g)
		if err != nil {
			return err
		}
		act, err := d.nodeActivator()
		if err != nil {
			return err
		}
		if err := d.startEBPF(ctx, g, act, nil); err != nil {
			return err
		}
		// Only the control plane reads a node's logs.
		logs := nodecred.Require(&nodecred.Verifier{Store: d.store, Roles: []string{nodecred.RoleControlPlane}},
			d.log.With("component", "nodeagent"), agent.Handler())
		return d.serveHealth(ctx, g, logs)
	}
	return fmt.Errorf("unknown role %q", d.cfg.Role)
}

// registerCredential loads or creates this process's node credential and
// publishes its hash, so the processes it calls accept it.
func (d *daemon) registerCredential(ctx context.Context) error {
	role := map[string]string{
		RoleControlPlane: nodecred.RoleControlPlane,
		RoleRouter:       nodecred.RoleRouter,
		RoleNodeAgent:    nodecred.RoleNodeAgent,
	}[d.cfg.Role]
	cred, err := nodecred.LoadOrCreate(nodecred.Path(d.cfg.DataDir, role), d.cfg.NodeName, role)
	if err != nil {
		return err
	}
	if err := nodecred.Register(ctx, d.store, cred, time.Now()); err != nil {
		return err
	}
	d.cred = cred
	return nil
}

// controlPlaneLoops are the leader-only loops of a control plane, built
// before the API, which feeds the rollout runner its reports.
type controlPlaneLoops struct {
	rolls *rollouts.Runner
	loops []leaderLoop
}

// startControlPlane starts the autoscaler (following the store and taking
// reports in every control plane; deciding only in the leader) and builds
// the other leader-only loops, which startAPIAndLead runs.
func (d *daemon) startControlPlane(ctx context.Context, g *errgroup.Group) (*autoscaler.Runner, controlPlaneLoops, error) {
	var l controlPlaneLoops
	live, err := d.liveness(ctx, g)
	if err != nil {
		return nil, l, err
	}
	runner, err := d.startAutoscaler(ctx, g, live)
	if err != nil {
		return nil, l, err
	}
	if l.rolls, err = d.newRollouts(); err != nil {
		return nil, l, err
	}
	cron, err := d.newCron(ctx)
	if err != nil {
		return nil, l, err
	}
	jobs, err := d.newJobs(live)
	if err != nil {
		return nil, l, err
	}
	l.loops = []leaderLoop{l.rolls.Run, cron, jobs, d.cleanupLoop(live)}
	return runner, l, nil
}

// startAPIAndLead serves the API, which every control plane does, and
// runs the leader-only loops, with revision garbage collection among them.
func (d *daemon) startAPIAndLead(ctx context.Context, g *errgroup.Group, runner *autoscaler.Runner, l controlPlaneLoops, logs controlplane.LogReader) error {
	api, err := d.startAPI(ctx, g, statsTee{runner, l.rolls}, logs)
	if err != nil {
		return err
	}
	// Every control plane, leader or not, keeps backups of its own: a
	// copy on each of their machines.
	if err := d.startBackups(ctx, g); err != nil {
		return err
	}
	return d.runLeaderLoops(ctx, g, runner, append(l.loops, d.revisionGCLoop(api))...)
}

// startAutoscaler runs the autoscaler's runner, which also counts the
// asynchronous invocations queued for each function as its demand. It
// places replicas on the nodes whose lease holds; where control planes
// elect a leader it decides only while it leads.
func (d *daemon) startAutoscaler(ctx context.Context, g *errgroup.Group, live *liveness.Watcher) (*autoscaler.Runner, error) {
	q, err := d.invocations(ctx)
	if err != nil {
		return nil, err
	}
	runner, err := autoscaler.NewRunner(autoscaler.RunnerConfig{}, autoscaler.RunnerDeps{
		Store: d.store,
		Queue: q,
		Caches: autoscaler.RunnerCaches{
			Functions:   d.caches.Functions(),
			Revisions:   d.caches.Revisions(),
			Endpoints:   d.caches.Endpoints(),
			Nodes:       d.caches.Nodes(),
			Assignments: d.caches.Assignments(),
			Scales:      d.caches.Scales(),
			KeepAlive:   d.caches.KeepAlive(),
			Namespaces:  d.caches.Namespaces(),
			JobPods:     d.caches.JobPods(),
		},
		Logger:     d.log.With("component", "autoscaler"),
		Registerer: d.reg,
		Liveness:   live,
		Standby:    d.elects(),
	})
	if err != nil {
		return nil, err
	}
	g.Go(func() error { return runner.Run(ctx) })
	return runner, nil
}

// autoscalerClient reaches the control planes' autoscaler over HTTP, for
// the router role on another machine: each of the comma-separated
// --autoscaler-url.
func (d *daemon) autoscalerClient() (controlPlanes, error) {
	urls := autoscalerURLs(d.cfg.AutoscalerURL)
	if len(urls) == 0 {
		return nil, errors.New("--role router needs --autoscaler-url, the control plane's API URL")
	}
	var cps controlPlanes
	for _, u := range urls {
		c, err := autoscaler.NewClient(autoscaler.ClientConfig{
			BaseURL: u,
			Token:   d.cred.String(),
			Logger:  d.log.With("component", "autoscaler-client", "url", u),
		})
		if err != nil {
			return nil, err
		}
		cps = append(cps, c)
	}
	return cps, nil
}

// scaleReporter is what the data plane needs from the autoscaler: load
// reports and activation pokes, in process or over HTTP.
type scaleReporter interface {
	Report(stats []api.RevisionStat)
	Activate(ctx context.Context, revision string) error
}

// startDataPlane runs the router and the activator over one shared replica
// registry, so each replica's hard limit holds across both paths. The
// router's reports go to routerStats, which carries them to the rollout
// runner too where one runs in this process.
func (d *daemon) startDataPlane(ctx context.Context, g *errgroup.Group, scaler scaleReporter, routerStats router.StatsSink) (*router.Router, error) {
	transport, err := proxy.NewTransport(proxy.Config{})
	if err != nil {
		return nil, err
	}
	g.Go(func() error { return transport.Run(ctx) })
	replicas := replicaset.New(d.caches.Endpoints(), transport, d.log.With("component", "replicas"))
	live, err := d.liveness(ctx, g)
	if err != nil {
		return nil, err
	}
	replicas.FollowLiveness(live)
	g.Go(func() error { return replicas.Run(ctx) })
	act, err := activator.New(activator.Config{MaxRetries: d.cfg.MaxRetries}, activator.Deps{
		Store:      d.store,
		RevStatus:  d.caches.RevStatus(),
		Replicas:   replicas,
		ScaleUpper: scaler,
		Stats:      scaler,
		Registerer: d.reg,
		Logger:     d.log.With("component", "activator"),
	})
	if err != nil {
		return nil, err
	}
	g.Go(func() error { return act.Run(ctx) })
	l, err := net.Listen("tcp", d.cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("router listen %s: %w", d.cfg.HTTPAddr, err)
	}
	// Asynchronous invocations: the router queues them, and the invoker
	// beside it delivers them back through it.
	q, err := d.invocations(ctx)
	if err != nil {
		l.Close()
		return nil, err
	}
	if err := d.startInvoker(ctx, g, q); err != nil {
		l.Close()
		return nil, err
	}
	tlsDeps, err := d.routerTLS(ctx, g, d.caches.Domains())
	if err != nil {
		l.Close()
		return nil, err
	}
	deps := router.Deps{
		Domains:    d.caches.Domains(),
		TLS:        tlsDeps,
		Store:      d.store,
		Functions:  d.caches.Functions(),
		Revisions:  d.caches.Revisions(),
		Replicas:   replicas,
		Activator:  act,
		Stats:      routerStats,
		Async:      q,
		Registerer: d.reg,
		Logger:     d.log.With("component", "router"),
		Listener:   l,
	}
	if err := d.startObservability(ctx, g, &deps); err != nil {
		l.Close()
		return nil, err
	}
	rt, err := router.New(d.cfg.routerConfig(), deps)
	if err != nil {
		l.Close()
		return nil, err
	}
	g.Go(func() error { return rt.Run(ctx) })
	return rt, nil
}

func (d *daemon) nodeAgentDeps(rt nodeagent.Runtime) nodeagent.Deps {
	deps := nodeagent.Deps{
		Store:      d.store,
		Runtime:    rt,
		Logger:     d.log,
		Registerer: d.reg,
		// In the all role, every node's job pods: the agent picks its own.
		JobPods: d.caches.JobPods(),
		Lease:   d.leaseBackend(),
	}
	// The agent reads secret values from the control plane, which alone
	// holds the key: in process in the all role, over its internal
	// endpoint in the nodeagent role.
	switch {
	case d.secrets != nil:
		deps.Secrets = d.secrets.ForNode(d.cfg.NodeName)
	case len(autoscalerURLs(d.cfg.AutoscalerURL)) > 0:
		// Any control plane serves secrets; the first is asked.
		deps.Secrets = &nodeagent.RemoteSecrets{BaseURL: autoscalerURLs(d.cfg.AutoscalerURL)[0], Token: d.cred.String(),
			Client: &http.Client{Timeout: 10 * time.Second}}
	default:
		d.log.Info("revisions with secrets cannot run on this node: set --autoscaler-url, the control plane's API URL, to read them")
	}
	// In the all role this is the autoscaler's cache of every node's
	// assignments, which the agent picks its own out of.
	deps.Assignments = d.caches.Assignments()
	// With socket redirection on, only the programs see the requests on a
	// replica's connections; a nil loader must not become a non-nil
	// interface.
	if d.ebpf.loader != nil {
		deps.Requests = d.ebpf.loader
	}
	if d.network != nil {
		deps.Network = d.network
		deps.Users = d.users
	}
	return deps
}

func (d *daemon) startNodeAgent(ctx context.Context, g *errgroup.Group) (*nodeagent.Agent, error) {
	client, err := d.connectContainerd(ctx, g)
	if err != nil {
		return nil, err
	}
	runc, err := runcBinary(d.cfg.Runc, ebbdPaths())
	if err != nil {
		return nil, err
	}
	d.log.Info("replicas start through", "runc", cmp.Or(runc, "runc"))
	launcher := launcherBinary(ebbdPaths())
	if launcher == "" {
		d.log.Warn("ebb-launch is not beside ebbd: replicas with secret environment variables cannot start")
	}
	rt, err := nodecontainerd.New(client, nodecontainerd.Config{RuncBinary: runc, Launcher: launcher})
	if err != nil {
		return nil, err
	}
	warnMissingRuncBinaries(ctx, rt, d.log)
	portMin, portMax, _ := d.cfg.replicaPortRange() // validated at start
	agent, err := nodeagent.New(nodeagent.Config{
		Node:          d.cfg.NodeName,
		HostIP:        d.cfg.HostIP,
		PortMin:       portMin,
		PortMax:       portMax,
		DataDir:       filepath.Join(d.cfg.DataDir, "nodeagent"),
		AdvertiseAddr: d.advertiseAddr(),
		// The logs API is wrapped in nodecred.Require instead (start).
		EBPF:               d.ebpf.status,
		LeaseTTL:           d.cfg.NodeLeaseTTL,
		LeaseRenewEvery:    d.cfg.NodeLeaseRenew,
		InsecureRegistries: d.cfg.InsecureRegistries,
		DockerHubPulls:     d.cfg.DockerHubPulls,
		UploadRegistry:     d.uploadRegistry(),
	}, d.nodeAgentDeps(rt))
	if err != nil {
		return nil, err
	}
	g.Go(func() error {
		// The task watchers stop after the agent, before the containerd
		// client closes.
		defer rt.Close()
		return agent.Run(ctx)
	})
	return agent, nil
}

// uploadRegistry is where this node pulls the images uploaded to the
// control plane: its /v2/ at --autoscaler-url, with this node's
// credential. The all role shares the control plane's containerd, so it
// holds every upload already and pulls none.
func (d *daemon) uploadRegistry() nodeagent.PullSource {
	if d.cfg.Role == RoleAll || d.cfg.AutoscalerURL == "" {
		return nodeagent.PullSource{}
	}
	u, err := url.Parse(d.cfg.AutoscalerURL)
	if err != nil || u.Host == "" {
		d.log.Warn("uploaded images cannot be pulled: --autoscaler-url is not a URL", "url", d.cfg.AutoscalerURL)
		return nodeagent.PullSource{}
	}
	return nodeagent.PullSource{Mirror: u.Host, PlainHTTP: u.Scheme == "http", Bearer: d.cred.String()}
}

// advertiseAddr is where other nodes read this node agent's logs: the
// health server in the nodeagent role; nothing in the all role, where the
// API reads them in process.
func (d *daemon) advertiseAddr() string {
	if d.cfg.Role == RoleNodeAgent {
		return d.cfg.MetricsAddr
	}
	return ""
}

// logReader adapts the node agent's log rings to the API's LogReader.
type logReader struct{ agent *nodeagent.Agent }

func (l logReader) Logs(ctx context.Context, w io.Writer, req controlplane.LogRequest) error {
	return l.agent.ReadLogs(ctx, w, nodeagent.LogQuery{
		Function: req.Function,
		Revision: req.Revision,
		Tail:     req.Tail,
		Follow:   req.Follow,
	})
}

// remoteLogs adapts node agents on other machines to the API's LogReader.
type remoteLogs struct{ reader *nodelogs.Reader }

func (l remoteLogs) Logs(ctx context.Context, w io.Writer, req controlplane.LogRequest) error {
	return l.reader.Read(ctx, w, nodelogs.Query{
		Function: req.Function,
		Revision: req.Revision,
		Tail:     req.Tail,
		Follow:   req.Follow,
	})
}

// startAPI runs the API server. It imports images into containerd, so it
// connects to (or starts) containerd too.
func (d *daemon) startAPI(ctx context.Context, g *errgroup.Group, sink autoscaler.Sink, logs controlplane.LogReader) (*controlplane.Server, error) {
	client, err := d.connectContainerd(ctx, g)
	if err != nil {
		return nil, err
	}
	importer, err := imagestore.New(client, imagestore.Config{})
	if err != nil {
		return nil, err
	}
	reg, err := d.registryHandler(client)
	if err != nil {
		return nil, err
	}
	auditLog := d.audit
	// controlplane.New creates the spool dir and removes the uploads a
	// killed ebbd left in it.
	q, err := d.invocations(ctx)
	if err != nil {
		return nil, err
	}
	api, err := controlplane.New(controlplane.Config{
		Addr:          d.cfg.APIAddr,
		Token:         d.token,
		Domain:        d.cfg.Domain,
		RouterPort:    portOf(d.cfg.HTTPAddr),
		SpoolDir:      filepath.Join(d.cfg.DataDir, "spool"),
		MaxSpoolBytes: d.cfg.MaxSpoolBytes,
		// Submits are checked as the router checks its async requests.
		CallbackPolicy: d.cfg.callbackPolicy(),
		RegistryAddr:   registryAddr(d.cfg.APIAddr),
	}, controlplane.Deps{
		Store:      d.store,
		Images:     importer,
		Logger:     d.log.With("component", "api"),
		Registerer: d.reg,
		Gatherer:   d.reg,
		Logs:       logs,
		AccessLogs: d.accessLogs(),
		// Routers and node agents reach /internal/ with their node
		// credentials; API tokens, the admin's too, are refused.
		Internal: d.internalHandler(sink),
		Registry: reg,
		Secrets:  d.secrets,
		Audit:    auditLog,
		Queue:    q,
		NodeLive: d.ha.live.Live,
	})
	if err != nil {
		return nil, err
	}
	// Bind now, so a port clash fails the start with a clear error.
	l, err := net.Listen("tcp", d.cfg.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("api listen %s: %w", d.cfg.APIAddr, err)
	}
	// The log closes after the server has answered its last call.
	g.Go(func() error { return errors.Join(api.Serve(ctx, l), auditLog.Close()) })
	return api, nil
}

// openAudit opens the audit log of the control-plane roles and makes every
// read of secret values by a node agent a line of it. It opens before any
// component starts: in the all role the node agent reads secrets before
// the API serves.
func (d *daemon) openAudit(ctx context.Context) error {
	auditLog, err := audit.Open(filepath.Join(d.cfg.DataDir, "audit"), audit.Options{})
	if err != nil {
		return err
	}
	d.audit = auditLog
	// A start that fails closes it here; otherwise it closes once the API
	// has answered its last call (Close is idempotent).
	d.closers = append(d.closers, func() { _ = auditLog.Close() })
	d.secrets.OnNodeRead(func(ns, name, node string, err error) {
		status := http.StatusOK
		switch {
		case errors.Is(err, controlplane.ErrSecretNotFound):
			status = http.StatusNotFound
		case err != nil:
			status = http.StatusInternalServerError
		}
		_ = auditLog.Record(ctx, audit.Event{TokenID: "node/" + node, Namespace: ns, Verb: "read-secret", Object: "secrets/" + name, Status: status})
	})
	return nil
}

// internalHandler serves the control plane's /internal/ endpoints, each
// to the node credentials it takes: secret values to node agents only
// (the credential names the node, for the audit line), load reports and
// activations to routers and node agents.
func (d *daemon) internalHandler(sink autoscaler.Sink) http.Handler {
	log := d.log.With("component", "internal")
	agents := &nodecred.Verifier{Store: d.store, Roles: []string{nodecred.RoleNodeAgent}}
	dataPlane := &nodecred.Verifier{Store: d.store, Roles: []string{nodecred.RoleRouter, nodecred.RoleNodeAgent}}
	mux := http.NewServeMux()
	mux.Handle(controlplane.InternalSecretsPath, nodecred.Require(agents, log, d.secrets.InternalHandler(nodeAgentCaller)))
	mux.Handle("/internal/", nodecred.Require(dataPlane, log, autoscaler.NewHandler(sink, autoscaler.HandlerConfig{})))
	return mux
}

// registryAddr is where nodes reach this control plane's /v2/, as image
// records name it: the API address, unless it names no one host (":8090",
// "0.0.0.0:8090"), when nodes use their --autoscaler-url instead.
func registryAddr(apiAddr string) string {
	host, _, err := net.SplitHostPort(apiAddr)
	if err != nil || host == "" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return ""
	}
	return apiAddr
}

// registryHandler serves the images this control plane holds, read only,
// through the OCI distribution API, to node agents with their node
// credentials: nodes in split roles pull uploads from it (Deps.Registry).
func (d *daemon) registryHandler(client *containerd.Client) (http.Handler, error) {
	log := d.log.With("component", "registry")
	srv, err := registry.New(registry.Config{}, registry.Deps{
		Images: client.ImageService(), Content: client.ContentStore(), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	agents := &nodecred.Verifier{Store: d.store, Roles: []string{nodecred.RoleNodeAgent}}
	return nodecred.Require(agents, log, srv), nil
}

// nodeAgentCaller names the node agent nodecred.Require let through.
func nodeAgentCaller(r *http.Request) (string, bool) {
	c, ok := nodecred.Caller(r.Context())
	return c.Node, ok && c.Role == nodecred.RoleNodeAgent
}

// connectContainerd returns a client for the configured containerd, or for
// a private one that ebbd starts and supervises when none answers.
func (d *daemon) connectContainerd(ctx context.Context, g *errgroup.Group) (*containerd.Client, error) {
	if d.containerd != nil {
		return d.containerd, nil
	}
	sup, err := containerdproc.New(containerdproc.Config{
		Address: d.cfg.ContainerdAddress,
		DataDir: filepath.Join(d.cfg.DataDir, "containerd"),
	}, d.log.With("component", "containerd"))
	if err != nil {
		return nil, err
	}
	addr, err := sup.Start(ctx)
	if err != nil {
		return nil, err
	}
	g.Go(func() error { return sup.Run(ctx) })
	client, err := containerd.New(addr, containerd.WithTimeout(10*time.Second))
	if err != nil {
		sup.Stop()
		return nil, fmt.Errorf("connect containerd at %s: %w", addr, err)
	}
	d.containerd = client
	d.closers = append(d.closers, func() { client.Close() })
	return client, nil
}

// serveHealth serves /healthz, /readyz and /metrics for roles that do not
// run the API, which serves them itself.
func (d *daemon) serveHealth(ctx context.Context, g *errgroup.Group, extra http.Handler) error {
	mux := http.NewServeMux()
	if extra != nil {
		mux.Handle("/v1/", extra)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := d.store.Get(r.Context(), "readyz"); err != nil && !isNotFound(err) {
			http.Error(w, "store unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	l, err := net.Listen("tcp", d.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", d.cfg.MetricsAddr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		go func() {
			<-ctx.Done()
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdownCtx)
		}()
		if err := srv.Serve(l); err != http.ErrServerClosed {
			return fmt.Errorf("metrics serve: %w", err)
		}
		return nil
	})
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// portOf returns the port of a host:port address, for building URLs.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
