package store

import (
	"strconv"
	"time"

	"github.com/ebbrun/ebb/api"
)

// The key layout. Every record is JSON at one key; prefixes group what a
// component watches. Names are DNS labels, so "/" never appears inside one.
const (
	PrefixFunctions   = "functions/"   // functions/{fn} → Function
	PrefixRevisions   = "revisions/"   // revisions/{fn}/{rev} → Revision
	PrefixScales      = "scales/"      // scales/{rev} → Scale
	PrefixKeepAlive   = "keepalive/"   // keepalive/{rev} → KeepAlive
	PrefixAssignments = "assignments/" // assignments/{node}/{rev} → Assignment
	PrefixEndpoints   = "endpoints/"   // endpoints/{rev}/{replica} → Endpoint
	PrefixReplicas    = "replicas/"    // replicas/{node}/{replica} → Replica
	PrefixPorts       = "ports/"       // ports/{node}/{port} → replica id
	PrefixRevStatus   = "revstatus/"   // revstatus/{rev}/{node} → RevisionNodeStatus
	PrefixNodes       = "nodes/"       // nodes/{node} → Node
	PrefixImages      = "images/"      // images/{ref} (escaped) → Image
	PrefixVIPs        = "vips/"        // vips/{fn} → VIP
	PrefixVIPSlots    = "vipslots/"    // vipslots/{index} → function name
)

func FunctionKey(fn string) string           { return PrefixFunctions + fn }
func RevisionsPrefix(fn string) string       { return PrefixRevisions + fn + "/" }
func RevisionKey(fn, rev string) string      { return RevisionsPrefix(fn) + rev }
func ScaleKey(rev string) string             { return PrefixScales + rev }
func AssignmentsPrefix(node string) string   { return PrefixAssignments + node + "/" }
func AssignmentKey(node, rev string) string  { return AssignmentsPrefix(node) + rev }
func EndpointsPrefix(rev string) string      { return PrefixEndpoints + rev + "/" }
func EndpointKey(rev, replica string) string { return EndpointsPrefix(rev) + replica }
func ReplicasPrefix(node string) string      { return PrefixReplicas + node + "/" }
func ReplicaKey(node, id string) string      { return ReplicasPrefix(node) + id }
func PortKey(node string, port int) string   { return PrefixPorts + node + "/" + itoa(port) }
func RevStatusPrefix(rev string) string      { return PrefixRevStatus + rev + "/" }
func RevStatusKey(rev, node string) string   { return RevStatusPrefix(rev) + node }
func NodeKey(node string) string             { return PrefixNodes + node }
func VIPKey(fn string) string                { return PrefixVIPs + fn }
func VIPSlotKey(index uint32) string         { return PrefixVIPSlots + itoa(int(index)) }

// Routers that keep access logs advertise where the control plane reads
// them (accesslog's Handler, behind node credentials).
const PrefixRouters = "routers/" // routers/{node} → Router

func RouterKey(node string) string { return PrefixRouters + node }

// Router is a router process's record, written while it runs.
type Router struct {
	Name string `json:"name"`
	// AccessAddr is host:port serving GET /v1/access; empty when the
	// router keeps no access log.
	AccessAddr string `json:"accessAddr,omitempty"`
}

// Namespaces. A function's keys above carry its qualified name
// (api.QualifiedName: {fn} in default, {fn}.{ns} elsewhere), so the
// namespace record is the only key of its own.
const PrefixNamespaces = "namespaces/" // namespaces/{ns} → Namespace

func NamespaceKey(ns string) string { return PrefixNamespaces + ns }

// Namespace is a namespace's record. The default namespace exists even
// without one.
type Namespace struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
	// Deleting is set by the first step of a namespace's delete; from then
	// on no function may be created in it.
	Deleting bool `json:"deleting,omitempty"`
	// Quota caps what the namespace may hold (api.Quota); zero caps nothing.
	Quota api.Quota `json:"quota,omitzero"`
}

// ImageKey escapes an image reference (which holds '/' and ':') into one key segment.
func ImageKey(ref string) string { return PrefixImages + escapeRef(ref) }

// KeepAliveKey is where the autoscaler keeps a revision's keep-alive state.
func KeepAliveKey(rev string) string { return PrefixKeepAlive + rev }

// Function is the stored state of a function: its latest spec and traffic.
type Function struct {
	Name string           `json:"name"`
	Spec api.FunctionSpec `json:"spec"`
	// LatestRevision is the newest revision; Generation is its number.
	LatestRevision string `json:"latestRevision"`
	Generation     int    `json:"generation"`
	// Traffic is the split as the user set it; latestRevision entries are
	// resolved by readers through ResolveTraffic.
	Traffic   []api.TrafficTarget `json:"traffic"`
	CreatedAt time.Time           `json:"createdAt"`
	UpdatedAt time.Time           `json:"updatedAt"`
}

// Revision is an immutable snapshot of a spec. It is written in the same
// transaction as the Function that points at it.
type Revision struct {
	Name       string           `json:"name"`
	Function   string           `json:"function"`
	Generation int              `json:"generation"`
	Spec       api.FunctionSpec `json:"spec"`
	CreatedAt  time.Time        `json:"createdAt"`
}

// Scale is the autoscaler's decision for a revision.
type Scale struct {
	Revision string `json:"revision"`
	Function string `json:"function"`
	Desired  int    `json:"desired"`
	// Panic is true while the decider is in panic mode.
	Panic bool `json:"panic,omitempty"`
	// Observed is the concurrency (or RPS) the decision was based on.
	Observed float64 `json:"observed"`
	// KeepWarmUntil is when the keep-alive policy lets the revision go idle.
	KeepWarmUntil time.Time `json:"keepWarmUntil,omitempty"`
	// PreWarm asks for a pre-created task even at zero replicas.
	PreWarm bool `json:"preWarm,omitempty"`
	// Wanted is what the decider wanted when the namespace's quota clipped
	// it to Desired, and Clipped says why (e.g. "clipped by namespace
	// quota: replicas 2 of 2"); both empty when not clipped.
	Wanted    int       `json:"wanted,omitempty"`
	Clipped   string    `json:"clipped,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// KeepAlive is what the autoscaler's keep-alive policy knows of a revision
// and its function, so that a restarted autoscaler holds the same warm
// tiers (pre-created tasks above all) at once, not only after new traffic
// has taught it again. The autoscaler rewrites it when it changed, at most
// every status refresh; the control plane deletes it with the revision.
type KeepAlive struct {
	Revision string `json:"revision"`
	Function string `json:"function"`
	// LastDemand is the revision's newest demand: its warm windows count from it.
	LastDemand time.Time `json:"lastDemand,omitzero"`
	// DeployedWarm is when a revision deployed with replicas started: until
	// it is first called, its only sign of use.
	DeployedWarm time.Time `json:"deployedWarm,omitzero"`
	// FunctionLastDemand ends the function's newest demand, by any of its
	// revisions: the function's next idle time counts from it.
	FunctionLastDemand time.Time `json:"functionLastDemand,omitzero"`
	// IdleTimes is the function's idle-time histogram: how many idle times
	// fell in each bin, by the bin's lower edge, empty bins left out.
	IdleTimes []IdleCount `json:"idleTimes,omitempty"`
	// LongIdle counts idle times longer than the histogram's range.
	LongIdle  uint32    `json:"longIdle,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// IdleCount is a number of idle times from one histogram bin.
type IdleCount struct {
	From  api.Duration `json:"from"`
	Count uint32       `json:"count"`
}

// Assignment is a revision's share on one node: how many replicas to run and
// how many pre-created tasks to hold. The node agent reconciles it.
type Assignment struct {
	Function   string `json:"function"`
	Revision   string `json:"revision"`
	Replicas   int    `json:"replicas"`
	PreCreated int    `json:"preCreated"`
}

// Endpoint is a ready replica that the data plane may send requests to.
// The node agent writes it when the readiness probe passes and deletes it
// before draining the replica.
type Endpoint struct {
	Function string `json:"function"`
	Revision string `json:"revision"`
	Replica  string `json:"replica"`
	Node     string `json:"node"`
	// Addr is host:port reachable from the node's router.
	Addr string `json:"addr"`
	// Limit is the hard concurrency limit for this replica; 0 means none.
	Limit   int       `json:"limit"`
	ReadyAt time.Time `json:"readyAt"`
	// Start is when the replica's start passed each phase, for the
	// activator's cold-start spans and Server-Timing; absent on records of
	// older agents.
	Start *StartPhases `json:"start,omitempty"`
}

// StartPhases are the node agent's times of one replica start: Decided
// when it chose to start it, Created when its container and task existed
// (zero for a pre-created one), Started when its program started and Ready
// when its readiness probe passed.
type StartPhases struct {
	Decided time.Time `json:"decided,omitzero"`
	Created time.Time `json:"created,omitzero"`
	Started time.Time `json:"started,omitzero"`
	Ready   time.Time `json:"ready,omitzero"`
}

// Replica states recorded by the node agent.
const (
	ReplicaPreCreated = "precreated"
	ReplicaStarting   = "starting"
	ReplicaReady      = "ready"
	ReplicaStopping   = "stopping"
	ReplicaBackoff    = "backoff"
	ReplicaFailed     = "failed"
)

// Replica is a node agent's record of one container it owns.
type Replica struct {
	ID           string    `json:"id"`
	Node         string    `json:"node"`
	Function     string    `json:"function"`
	Revision     string    `json:"revision"`
	Port         int       `json:"port"`
	State        string    `json:"state"`
	Restarts     int       `json:"restarts"`
	LastExitCode *int      `json:"lastExitCode,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
}

// RevisionNodeStatus is what one node observes of one revision. The control
// plane sums it across nodes for the revision status.
type RevisionNodeStatus struct {
	Revision     string    `json:"revision"`
	Node         string    `json:"node"`
	Ready        int       `json:"ready"`
	PreCreated   int       `json:"preCreated"`
	State        string    `json:"state"`
	Message      string    `json:"message,omitempty"`
	Restarts     int       `json:"restarts"`
	LastExitCode *int      `json:"lastExitCode,omitempty"`
	LastLogLines []string  `json:"lastLogLines,omitempty"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// Node is a node agent's heartbeat at NodeKey. It is api.Node itself, so
// that what the agent stores and what GET /v1/nodes serves cannot drift.
type Node = api.Node

// Image is an image imported through the API.
type Image struct {
	Name      string    `json:"name"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"createdAt"`
}

// VIP is a function's virtual address for callers on the nodes, allocated
// once by the first node that runs the eBPF programs and kept until the
// function is deleted. It is written together with VIPSlotKey(Index), which
// claims the index so that no two functions share an address.
type VIP struct {
	Function string `json:"function"`
	// Index is the address's position in the VIP range; the eBPF maps
	// identify the function by Index+1.
	Index uint32 `json:"index"`
	// Addr is the VIP as host:port, e.g. 127.77.0.1:80.
	Addr      string    `json:"addr"`
	CreatedAt time.Time `json:"createdAt"`
}

// ResolveTraffic replaces latestRevision targets with the named latest
// revision, so readers see concrete revision names.
func ResolveTraffic(fn Function) []api.TrafficTarget {
	out := make([]api.TrafficTarget, len(fn.Traffic))
	for i, t := range fn.Traffic {
		if t.LatestRevision {
			t.Revision = fn.LatestRevision
		}
		out[i] = t
	}
	return out
}

// Secret objects (issue 14). A secret's values are never stored in plain
// text: each is sealed (AES-256-GCM) with the secret's own data key, which
// is stored only wrapped by a key-encryption key (internal/envelope).
const PrefixSecrets = "secrets/" // secrets/{ns}/{name} → Secret

func SecretsPrefix(ns string) string   { return PrefixSecrets + ns + "/" }
func SecretKey(ns, name string) string { return SecretsPrefix(ns) + name }

// Secret is a namespaced secret object at rest.
type Secret struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// KeyID names the key-encryption key WrappedKey is wrapped under.
	KeyID      string `json:"keyId"`
	WrappedKey []byte `json:"wrappedKey"`
	// Values are the sealed values by key: nonce, ciphertext and tag,
	// bound to namespace, name and key.
	Values map[string][]byte `json:"values"`
	// Generation counts writes of the data (not re-wraps).
	Generation int       `json:"generation"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// API tokens and node credentials (controlplane/auth, internal/nodecred).
// Only a SHA-256 of each secret is stored; the secret is shown once.
const (
	PrefixTokens    = "tokens/"    // tokens/{id} → Token
	PrefixNodeCreds = "nodecreds/" // nodecreds/{node}/{role} → NodeCredential
)

func TokenKey(id string) string            { return PrefixTokens + id }
func NodeCredKey(node, role string) string { return PrefixNodeCreds + node + "/" + role }

// Token is an API token: ebb_{ID}_{secret}, of which only SecretHash is kept.
type Token struct {
	ID string `json:"id"`
	// SecretHash is the hex SHA-256 of the token's secret part.
	SecretHash string `json:"secretHash"`
	// Role is admin, developer, viewer or metrics; Namespace is set for the
	// namespaced roles (developer, viewer) only.
	Role        string    `json:"role"`
	Namespace   string    `json:"namespace,omitempty"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	// ExpiresAt, when not zero, is when the token stops working.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// NodeCredential is the hash of one ebbd process's credential for the
// endpoints between roles (/internal/ on the control plane, the node
// agent's logs API). Each process registers its own at start.
type NodeCredential struct {
	Node       string    `json:"node"`
	Role       string    `json:"role"`
	SecretHash string    `json:"secretHash"`
	CreatedAt  time.Time `json:"createdAt"`
}

// Rollouts (issue 15): a canary rollout's state, written by the API when a
// new revision starts one (and by its actions), and by the rollout runner
// of the control plane that holds its lease.
const PrefixRollouts = "rollouts/" // rollouts/{fn}/{canary revision} → Rollout

func RolloutsPrefix(fn string) string { return PrefixRollouts + fn + "/" }
func RolloutKey(fn, id string) string { return RolloutsPrefix(fn) + id }

// Rollout is one rollout of a function's revision: its state machine's
// state, and which runner drives it.
type Rollout struct {
	// ID is the canary revision's name; Function the qualified name.
	ID       string `json:"id"`
	Function string `json:"function"`
	api.RolloutState
	// Owner is the control plane whose runner drives the rollout until
	// LeaseUntil; another takes it over only after that. Every write is
	// also at the version read, so two runners never both apply a step.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"leaseUntil,omitzero"`
}

// Cron triggers (issue 20): a function's schedules, and each run's record.
// A run record is created with MustNotExist in the transaction that
// advances its trigger's cursor, so among several control planes exactly
// one claims (and fires) each run.
const (
	PrefixCronTriggers = "crontriggers/" // crontriggers/{fn}/{name} → CronTrigger
	PrefixCronRuns     = "cronruns/"     // cronruns/{fn}/{name}/{scheduled unix} → CronRun
)

func CronTriggersPrefix(fn string) string     { return PrefixCronTriggers + fn + "/" }
func CronTriggerKey(fn, name string) string   { return CronTriggersPrefix(fn) + name }
func CronRunsFunctionPrefix(fn string) string { return PrefixCronRuns + fn + "/" }
func CronRunsPrefix(fn, name string) string   { return CronRunsFunctionPrefix(fn) + name + "/" }
func CronRunKey(fn, name string, scheduled time.Time) string {
	return CronRunsPrefix(fn, name) + strconv.FormatInt(scheduled.Unix(), 10)
}

// CronTrigger is a trigger's record: its defaulted spec, and the firing
// loop's cursor.
type CronTrigger struct {
	// Function is the qualified function name.
	Function string              `json:"function"`
	Name     string              `json:"name"`
	Spec     api.CronTriggerSpec `json:"spec"`
	// LastScheduled is the newest schedule time handled: the next run is
	// the schedule's first time after it (after CreatedAt at first).
	LastScheduled time.Time `json:"lastScheduled,omitzero"`
	LastFired     time.Time `json:"lastFired,omitzero"`
	// Missed counts runs found later than the starting deadline.
	Missed    int       `json:"missed,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// CronRun is one run's record. Enqueued turns true once the invocation is
// in the queue; a run claimed but not enqueued (its control plane died in
// between) is enqueued again by whichever loop finds it, under the same
// idempotency key, so it is fired at most once.
type CronRun struct {
	Function string `json:"function"`
	Trigger  string `json:"trigger"`
	api.CronRun
	Enqueued bool `json:"enqueued,omitempty"`
}

// Jobs (issue 20): run-to-completion jobs. The API writes the job; the job
// controller of the control plane writes its status and one record per
// attempt (a job pod) at the node it places it on; that node's agent runs
// the pod and reports how it ended. The controller folds a finished pod's
// report into the job's status and deletes both records; deleting a pod's
// record while it runs kills it.
const (
	PrefixJobs         = "jobs/"         // jobs/{qualified job} → Job
	PrefixJobPods      = "jobpods/"      // jobpods/{node}/{pod} → JobPod
	PrefixJobPodStatus = "jobpodstatus/" // jobpodstatus/{qualified job}/{pod} → JobPodStatus
)

func JobKey(job string) string               { return PrefixJobs + job }
func JobPodsPrefix(node string) string       { return PrefixJobPods + node + "/" }
func JobPodKey(node, pod string) string      { return JobPodsPrefix(node) + pod }
func JobPodStatusPrefix(job string) string   { return PrefixJobPodStatus + job + "/" }
func JobPodStatusKey(job, pod string) string { return JobPodStatusPrefix(job) + pod }

// JobPodName names a job's index-th pod: {qualified job}-{index}.
func JobPodName(job string, index int) string { return job + "-" + itoa(index) }

// Job is a job as stored: the API's object, keyed by its qualified name.
type Job = api.Job

// JobPod asks a node to run one attempt of a job. It carries the job's spec
// as it was when the pod was made, so the agent reads nothing else.
type JobPod struct {
	Name string `json:"name"`
	// Job is the job's qualified name; Index the attempt's number.
	Job       string      `json:"job"`
	Namespace string      `json:"namespace"`
	Index     int         `json:"index"`
	Node      string      `json:"node"`
	Spec      api.JobSpec `json:"spec"`
	CreatedAt time.Time   `json:"createdAt"`
}

// Job pod phases, as the node agent reports them.
const (
	JobPodRunning   = "Running"
	JobPodSucceeded = "Succeeded"
	JobPodFailed    = "Failed"
)

// JobPodStatus is a node agent's report on one job pod. The agent writes it
// only while the pod's record exists (checked in the same transaction), so
// a killed pod leaves no report behind.
type JobPodStatus struct {
	Name  string `json:"name"`
	Job   string `json:"job"`
	Index int    `json:"index"`
	Node  string `json:"node"`
	Phase string `json:"phase"`
	// ExitCode is the program's exit status once it has exited.
	ExitCode   *int      `json:"exitCode,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// Domain mappings (issue 19): a host a user owns, routed to a function of
// one namespace. The key is the host alone, so a host has one owner.
const PrefixDomains = "domains/" // domains/{host} → Domain

func DomainKey(host string) string { return PrefixDomains + host }

// Domain is a domain mapping at rest; Function is the function's name in
// Namespace (not qualified).
type Domain struct {
	Host      string    `json:"host"`
	Namespace string    `json:"namespace"`
	Function  string    `json:"function"`
	Redirect  bool      `json:"redirect,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}
