package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/liveness"
	"github.com/ebbrun/ebb/store"
)

// Defaults for Config fields left zero.
const (
	DefaultRunDir              = "/run/ebb/nodeagent"
	DefaultHostIP              = "127.0.0.1"
	DefaultPortMin             = 20000
	DefaultPortMax             = 29999
	DefaultProbeInterval       = 500 * time.Microsecond
	DefaultProbeTimeout        = 30 * time.Second
	DefaultProbePath           = "/"
	DefaultRestartBackoff      = 100 * time.Millisecond
	DefaultRestartBackoffMax   = 30 * time.Second
	DefaultBackoffReset        = time.Minute
	DefaultFailedRetryMax      = 5 * time.Minute
	DefaultDrainDelay          = 50 * time.Millisecond
	DefaultDrainTimeout        = 10 * time.Second
	DefaultTerminationGrace    = 10 * time.Second
	DefaultPoolPerRevision     = 1
	DefaultPoolWindow          = 10 * time.Minute
	DefaultPoolMemoryBudget    = 512 << 20
	DefaultPoolEntryMemory     = 16 << 20
	DefaultPoolCreateParallel  = 1
	DefaultPoolRefillDelay     = 250 * time.Millisecond
	DefaultHeartbeatInterval   = 5 * time.Second
	DefaultLeaseTTL            = liveness.DefaultLeaseTTL
	DefaultLeaseRenewEvery     = liveness.DefaultRenewEvery
	DefaultResyncInterval      = time.Second
	DefaultTmpBytes            = 64 << 20
	DefaultUser                = "65532:65532"
	DefaultLastLogLines        = 10
	DefaultLogMaxBytes         = 1 << 20
	DefaultLogRetention        = time.Hour
	DefaultStoreTimeout        = 10 * time.Second
	DefaultPullTimeout         = 10 * time.Minute
	poolPerRevisionNone        = -1
	maxReplicaIDLen            = 76 // containerd's identifier limit
	defaultProbeAttemptTimeout = 250 * time.Millisecond
)

// Config configures an Agent. Zero fields take the documented defaults.
type Config struct {
	// Node names this node in the store. Required; a DNS label.
	Node string
	// DataDir holds what must survive a restart: the log rings (logs/).
	// Required, absolute.
	DataDir string
	// RunDir holds what must not: secret files ({node}/secrets/{revision}/).
	// It should be a tmpfs so secrets never reach a disk. Default
	// /run/ebb/nodeagent.
	RunDir string
	// AdvertiseAddr is host:port where this agent's Handler is served, for
	// control planes on other nodes to read logs from. Written to the node
	// record; empty means none.
	AdvertiseAddr string
	// APIToken is the bearer token Handler requires; empty means none.
	APIToken string
	// HostIP is the address endpoints are published with. Default 127.0.0.1.
	HostIP string
	// PortMin and PortMax bound the host ports given to replicas. Default
	// 20000-29999, below Linux's ephemeral range.
	PortMin, PortMax int

	// ProbeInterval is the readiness probe's cadence. Default 500µs.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a replica may take to become ready after its
	// start before it is killed and restarted. Default 30s.
	ProbeTimeout time.Duration
	// ProbeTCP makes readiness a TCP connect instead of an HTTP GET.
	ProbeTCP bool
	// ProbePath is the HTTP probe's path; any status below 500 passes.
	// Default "/".
	ProbePath string

	// RestartBackoff is the wait before the first restart of a crashed
	// replica; each further crash doubles it up to RestartBackoffMax.
	// Defaults 100ms and 30s.
	RestartBackoff    time.Duration
	RestartBackoffMax time.Duration
	// BackoffReset forgets earlier crashes once a replica has been ready
	// this long. Default 1m.
	BackoffReset time.Duration
	// FailedRetryMax caps the wait between attempts to create replicas of a
	// revision whose image cannot start. Default 5m.
	FailedRetryMax time.Duration

	// DrainDelay is the least time between removing an endpoint and
	// signalling the replica, for routers to see the removal. Default 50ms.
	DrainDelay time.Duration
	// DrainTimeout bounds the wait for a replica's connections to close
	// after its endpoint is removed, before SIGTERM; the revision's request
	// timeout bounds it too. Default 10s.
	DrainTimeout time.Duration
	// TerminationGrace is the time between SIGTERM and SIGKILL. Default 10s.
	TerminationGrace time.Duration

	// PoolPerRevision is how many pre-created tasks to keep for every
	// revision used on this node within PoolWindow; the store's
	// Assignment.PreCreated can ask for more. Default 1; -1 means none.
	PoolPerRevision int
	// PoolWindow: see PoolPerRevision. Default 10m.
	PoolWindow time.Duration
	// PoolMemoryBudget bounds the memory of all pre-created tasks, counted
	// at PoolEntryMemory each (a shim and a waiting runc init). Defaults
	// 512 MiB and 16 MiB.
	PoolMemoryBudget int64
	PoolEntryMemory  int64
	// PoolCreateParallel bounds the pre-created tasks being created at once,
	// and none is created while a replica is starting or for
	// PoolRefillDelay after one became ready, so refilling the pool never
	// competes with a cold start or its first requests. Defaults 1 and
	// 250ms.
	PoolCreateParallel int
	PoolRefillDelay    time.Duration

	// HeartbeatInterval is how often the node record is looked at; it is
	// written only when something in it changed: liveness is the lease's.
	// Default 5s.
	HeartbeatInterval time.Duration
	// LeaseTTL is how long the node's lease lasts unrenewed: how soon
	// routers drop this node after it dies. Default 3s.
	LeaseTTL time.Duration
	// LeaseRenewEvery is how often the lease is renewed; below LeaseTTL/2.
	// Default 1s.
	LeaseRenewEvery time.Duration
	// ResyncInterval is how often the agent reconciles without a change,
	// to retry and to age the pool. Default 1s.
	ResyncInterval time.Duration
	// StoreTimeout bounds one store call. Default 10s.
	StoreTimeout time.Duration

	// PullTimeout bounds one image pull. Default 10m.
	PullTimeout time.Duration
	// InsecureRegistries are the registries (host:port, as image
	// references name them) pulled from over plain HTTP, as dockerd's
	// --insecure-registry; every other is HTTPS.
	InsecureRegistries []string
	// DockerHubPulls pulls the docker.io images the node lacks from Docker
	// Hub. Off, such an image is not on the node: names without a
	// registry ("hello") mean uploaded images, which normalize to
	// docker.io too, and a node must not look for a missing upload on the
	// internet. Registry references of any other registry are always
	// pulled.
	DockerHubPulls bool
	// UploadRegistry, if its Mirror is set, is where this node pulls the
	// images uploaded to the control plane (POST /v1/images) when it lacks
	// them: the control plane's /v2/ registry, with this node's credential
	// as Bearer. Empty in the all role, whose node shares the control
	// plane's containerd and so holds every upload already.
	UploadRegistry PullSource

	// TmpBytes sizes each replica's /tmp tmpfs. Default 64 MiB.
	TmpBytes int64
	// DefaultUser is the "uid:gid" a replica runs as when its image names
	// no USER. Default 65532:65532, a user with no name and no files.
	DefaultUser string
	// LastLogLines is how many of a crashed replica's last lines the
	// revision status carries. Default 10.
	LastLogLines int
	// LogMaxBytes bounds each replica's log ring. Default 1 MiB.
	LogMaxBytes int64
	// LogRetention keeps the logs of removed replicas readable. Default 1h.
	LogRetention time.Duration

	// CPU and MemoryBytes override the capacity reported in the node
	// record; zero means the machine's.
	CPU         float64
	MemoryBytes int64
	// EBPF is reported in the node record as is ("on", "off", ...).
	EBPF string
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.RunDir == "" {
		c.RunDir = DefaultRunDir
	}
	if c.HostIP == "" {
		c.HostIP = DefaultHostIP
	}
	if c.PortMin == 0 && c.PortMax == 0 {
		c.PortMin, c.PortMax = DefaultPortMin, DefaultPortMax
	}
	set(&c.ProbeInterval, DefaultProbeInterval)
	set(&c.ProbeTimeout, DefaultProbeTimeout)
	if c.ProbePath == "" {
		c.ProbePath = DefaultProbePath
	}
	set(&c.RestartBackoff, DefaultRestartBackoff)
	set(&c.RestartBackoffMax, DefaultRestartBackoffMax)
	set(&c.BackoffReset, DefaultBackoffReset)
	set(&c.FailedRetryMax, DefaultFailedRetryMax)
	set(&c.DrainDelay, DefaultDrainDelay)
	set(&c.DrainTimeout, DefaultDrainTimeout)
	set(&c.TerminationGrace, DefaultTerminationGrace)
	if c.PoolPerRevision == 0 {
		c.PoolPerRevision = DefaultPoolPerRevision
	}
	set(&c.PoolWindow, DefaultPoolWindow)
	if c.PoolMemoryBudget == 0 {
		c.PoolMemoryBudget = DefaultPoolMemoryBudget
	}
	if c.PoolEntryMemory == 0 {
		c.PoolEntryMemory = DefaultPoolEntryMemory
	}
	if c.PoolCreateParallel == 0 {
		c.PoolCreateParallel = DefaultPoolCreateParallel
	}
	set(&c.PoolRefillDelay, DefaultPoolRefillDelay)
	set(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	set(&c.LeaseTTL, DefaultLeaseTTL)
	set(&c.LeaseRenewEvery, DefaultLeaseRenewEvery)
	set(&c.ResyncInterval, DefaultResyncInterval)
	set(&c.StoreTimeout, DefaultStoreTimeout)
	set(&c.PullTimeout, DefaultPullTimeout)
	if c.TmpBytes == 0 {
		c.TmpBytes = DefaultTmpBytes
	}
	if c.DefaultUser == "" {
		c.DefaultUser = DefaultUser
	}
	if c.LastLogLines == 0 {
		c.LastLogLines = DefaultLastLogLines
	}
	if c.LogMaxBytes == 0 {
		c.LogMaxBytes = DefaultLogMaxBytes
	}
	set(&c.LogRetention, DefaultLogRetention)
	return c
}

// Validate reports the first problem with a defaulted Config.
func (c Config) Validate() error {
	if err := api.ValidateName("node", c.Node); err != nil {
		return err
	}
	if !filepath.IsAbs(c.DataDir) {
		return fmt.Errorf("data dir %q must be an absolute path", c.DataDir)
	}
	if !filepath.IsAbs(c.RunDir) {
		return fmt.Errorf("run dir %q must be an absolute path", c.RunDir)
	}
	if net.ParseIP(c.HostIP) == nil {
		return fmt.Errorf("host ip %q is not an IP address", c.HostIP)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("advertise addr %q: %w", c.AdvertiseAddr, err)
		}
	}
	if c.PortMin < 1 || c.PortMax > 65535 || c.PortMin > c.PortMax {
		return fmt.Errorf("port range %d-%d is not within 1-65535", c.PortMin, c.PortMax)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"probe interval", c.ProbeInterval}, {"probe timeout", c.ProbeTimeout},
		{"restart backoff", c.RestartBackoff}, {"restart backoff max", c.RestartBackoffMax},
		{"backoff reset", c.BackoffReset}, {"failed retry max", c.FailedRetryMax},
		{"drain delay", c.DrainDelay}, {"drain timeout", c.DrainTimeout},
		{"termination grace", c.TerminationGrace}, {"pool window", c.PoolWindow},
		{"pool refill delay", c.PoolRefillDelay},
		{"heartbeat interval", c.HeartbeatInterval}, {"resync interval", c.ResyncInterval},
		{"lease ttl", c.LeaseTTL}, {"lease renew interval", c.LeaseRenewEvery},
		{"store timeout", c.StoreTimeout}, {"pull timeout", c.PullTimeout},
		{"log retention", c.LogRetention},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive", d.name)
		}
	}
	switch {
	case 2*c.LeaseRenewEvery >= c.LeaseTTL:
		return errors.New("lease renew interval must be under half the lease ttl")
	case c.RestartBackoffMax < c.RestartBackoff:
		return errors.New("restart backoff max is below restart backoff")
	case c.ProbePath[0] != '/':
		return fmt.Errorf("probe path %q must start with /", c.ProbePath)
	case c.PoolPerRevision < poolPerRevisionNone:
		return errors.New("pool per revision must be -1 (none) or more")
	case c.PoolMemoryBudget < 0 || c.PoolEntryMemory <= 0:
		return errors.New("pool memory budget must not be negative and pool entry memory must be positive")
	case c.PoolCreateParallel < 1:
		return errors.New("pool create parallel must be at least 1")
	case c.TmpBytes < 1<<20:
		return errors.New("tmp bytes must be at least 1 MiB")
	case c.LastLogLines < 0:
		return errors.New("last log lines must not be negative")
	case c.CPU < 0 || c.MemoryBytes < 0:
		return errors.New("cpu and memory overrides must not be negative")
	}
	return nil
}

// Deps are the agent's collaborators.
type Deps struct {
	Store   store.Store
	Runtime Runtime
	Logger  *slog.Logger
	// Assignments is the process's cache of assignments, which the caller
	// runs: of this node (store.AssignmentsPrefix(Config.Node)) or of every
	// node (store.PrefixAssignments), where the agent picks out its own.
	// When nil the agent opens its own of this node's and runs it.
	Assignments *store.Cache[store.Assignment]
	// JobPods is the process's cache of job pods, which the caller runs:
	// of this node (store.JobPodsPrefix(Config.Node)) or of every node
	// (store.PrefixJobPods), where the agent picks out its own. When nil
	// the agent opens its own of this node's and runs it.
	JobPods *store.Cache[store.JobPod]
	// Registerer takes the agent's metrics; nil means they are not exported.
	Registerer prometheus.Registerer
	// Requests, if set, counts the open requests on replica ports that
	// sockets cannot show: with eBPF socket redirection on, a connection's
	// data skips TCP, so tcp_info says it is idle. Draining waits for
	// either count. *bpf.Loader is one.
	Requests RequestCounter
	// OnStarted, if set, observes every replica start with its phase
	// timings, for benchmarks and tracing. It runs on the replica's goroutine
	// and must return quickly.
	OnStarted func(StartTrace)
	// Dial connects to a replica's address for its readiness probe; nil
	// means TCP. Tests pass an in-memory network (nodeagent/fake), which
	// testing/synctest can wait on, as it cannot on sockets.
	Dial DialFunc
	// Network, if set, gives every replica a network namespace of its own
	// (nodeagent/replicanet); nil shares the host's.
	Network Network
	// Users, if set, runs every replica in a user namespace of its own,
	// mapped to the host ids of its tenancy namespace (nodeagent/idrange);
	// nil keeps the host's.
	Users UserRanges
	// Secrets reads the values of the secret objects revisions refer to;
	// the control plane holds the key that decrypts them. Nil means a
	// revision with secrets cannot run on this node.
	Secrets SecretReader
	// Lease renews this node's liveness lease (store/redis's Store or
	// internal/liveness.Memory); nil means the node holds none, and
	// routers that follow leases do not serve it.
	Lease NodeLease
}

// UserRanges hands out the host ids a tenancy namespace's replicas run
// as, the same range every time for one namespace and never another's.
type UserRanges interface {
	For(namespace string) (IDMap, error)
}

// SecretReader returns the key → value data of a secret object. Values
// stay in memory: the agent writes them only to its tmpfs.
type SecretReader interface {
	SecretValues(ctx context.Context, namespace, name string) (map[string][]byte, error)
}

// DialFunc connects to addr on network, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// RequestCounter counts the requests waiting for their answer on a
// replica's port; tracked is false for a port it does not follow.
type RequestCounter interface {
	OpenRequests(port uint16) (open int, tracked bool, err error)
}

// StartTrace is the timeline of one replica start.
type StartTrace struct {
	Function, Revision, Replica string
	// PoolHit says the replica came from a pre-created task.
	PoolHit bool
	// Desired is when the agent saw the desired count that asked for the
	// replica, Decided when it chose this replica for it.
	Desired, Decided time.Time
	// Created and TaskCreated end the container and task creation; both
	// are zero on a pool hit.
	Created, TaskCreated time.Time
	// Started is when the program was started, Ready when the probe passed
	// and Published when the endpoint was in the store.
	Started, Ready, Published time.Time
}
