package api

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration that travels as a Go duration string ("30s").
type Duration struct{ time.Duration }

// D is shorthand for building a Duration in code and tests.
func D(d time.Duration) Duration { return Duration{d} }

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts a duration string ("250ms", "30s").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q", s)
	}
	d.Duration = v
	return nil
}

// FunctionSpec is what a developer PUTs to /v1/functions/{name}. Zero values
// mean "use the default"; the control plane stores the defaulted spec, so every
// revision records exactly what it runs with. Defaults are listed on each field.
type FunctionSpec struct {
	// Image is an image reference already pushed with POST /v1/images. Required.
	Image string `json:"image"`
	// Port is the TCP port the process listens on, passed as $PORT. Default 8080.
	Port int `json:"port,omitempty"`
	// Protocol is what the process speaks on Port: "http1" (HTTP/1.1) or
	// "h2c" (HTTP/2 without TLS, as gRPC servers do), as Knative's port
	// name selects it. The router proxies to the replica in that protocol
	// whatever the client spoke, and probes it in that protocol. Empty
	// means "http1"; it is left empty rather than defaulted so that specs
	// stored before the field existed keep their revisions.
	Protocol string `json:"protocol,omitempty"`
	// Env is extra environment for the process.
	Env map[string]string `json:"env,omitempty"`
	// Args replaces the image's CMD when set.
	Args []string `json:"args,omitempty"`
	// Secrets are injected as environment variables or files under /run/secrets.
	Secrets []Secret `json:"secrets,omitempty"`
	// Concurrency sets the autoscaling target and the per-replica hard limit.
	Concurrency Concurrency `json:"concurrency"`
	// Scale bounds the replica count and tunes the autoscaler.
	Scale Scale `json:"scale"`
	// Resources limits each replica.
	Resources Resources `json:"resources"`
	// Timeout bounds one request end to end; past it the router answers 504.
	// Default 300s.
	Timeout Duration `json:"timeout"`
	// Labels are metadata (Kubernetes label syntax) that list and watch
	// select by (labelSelector). A change of labels alone creates no
	// revision; revisions record the spec without them.
	Labels map[string]string `json:"labels,omitempty"`
	// RevisionName, if set, is a name of the user's for the revision this
	// spec makes, as Knative's spec.template.metadata.name is: ebb still
	// names the revision {function}-NNNNN, and traffic may name it either
	// way. It must start with "{function}-", and a name once given is the
	// revision's for good: another spec under the same name is refused.
	RevisionName string `json:"revisionName,omitempty"`
	// Rollout, if set, makes a changed spec start a canary rollout under
	// this policy instead of moving all traffic to the new revision at once.
	Rollout *RolloutPolicy `json:"rollout,omitempty"`
	// Async tunes asynchronous invocations of the function; nil takes
	// the defaults.
	Async *AsyncPolicy `json:"async,omitempty"`
}

// AsyncPolicy tunes how the invoker delivers a function's queued
// invocations.
type AsyncPolicy struct {
	// MaxConcurrency bounds the deliveries of the function one invoker has
	// in flight at once, so a burst of queued work reaches the function
	// as fast as it admits rather than all at once. 0 means
	// DefaultAsyncMaxConcurrency.
	MaxConcurrency int `json:"maxConcurrency,omitempty"`
	// Target is how many queued invocations (queued or being delivered)
	// one replica is sized for: the autoscaler runs at least
	// ceil(depth/target) replicas of the routed revision, as KEDA's queue
	// scalers do, within scale.max. 0 means the concurrency target, capped
	// by the hard limit when there is one.
	Target int `json:"target,omitempty"`
}

// DefaultAsyncMaxConcurrency is AsyncPolicy.MaxConcurrency's default, and
// MaxAsyncConcurrency its bound.
const (
	DefaultAsyncMaxConcurrency = 10
	MaxAsyncConcurrency        = 1000
)

// AsyncMaxConcurrency is the spec's async concurrency limit, defaulted.
func (s FunctionSpec) AsyncMaxConcurrency() int {
	if s.Async == nil || s.Async.MaxConcurrency == 0 {
		return DefaultAsyncMaxConcurrency
	}
	return s.Async.MaxConcurrency
}

// MaxAsyncTarget bounds AsyncPolicy.Target, as concurrency.target is.
const MaxAsyncTarget = 100000

// AsyncTarget is the queued invocations one replica is sized for,
// defaulted: async.target, else the concurrency target capped by the hard
// limit (a replica admits no more at once). Call it on a defaulted spec.
func (s FunctionSpec) AsyncTarget() int {
	if s.Async != nil && s.Async.Target > 0 {
		return s.Async.Target
	}
	t := s.Concurrency.Target
	if s.Concurrency.HardLimit > 0 && s.Concurrency.HardLimit < t {
		t = s.Concurrency.HardLimit
	}
	return max(t, 1)
}

// Secret refers a replica to one key of a secret object of the function's
// namespace (PUT /v1/namespaces/{ns}/secrets/{name}), injected as an env
// var or a file. Exactly one of Env and File is set.
type Secret struct {
	// Secret names the secret object.
	Secret string `json:"secret"`
	// Key is the key in the secret whose value is injected.
	Key string `json:"key"`
	// Env is the variable name to expose the value as.
	Env string `json:"env,omitempty"`
	// File is a file name under /run/secrets to expose the value as.
	File string `json:"file,omitempty"`

	// Name and Value were the inline secret of earlier versions; a spec
	// that sets Value is refused with a message saying how to make a
	// secret object instead.
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
}

// MaxSecretBytes caps the values of one secret object together.
const MaxSecretBytes = 1 << 20

// SecretData is the body of PUT /v1/namespaces/{ns}/secrets/{name}: the
// secret's keys and values. Data values are base64 in JSON (binary safe);
// StringData takes text as it is and wins over Data for the same key.
type SecretData struct {
	Data       map[string][]byte `json:"data,omitempty"`
	StringData map[string]string `json:"stringData,omitempty"`
}

// SecretInfo describes a secret object. The API never returns values.
type SecretInfo struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	Keys      []string `json:"keys"`
	// Generation counts the writes of the secret's data.
	Generation int `json:"generation"`
	// KeyID names the key-encryption key its data key is wrapped under.
	KeyID string `json:"keyId"`
	// UsedBy lists the functions that refer to it.
	UsedBy    []string  `json:"usedBy,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// ResourceVersion is the store revision of the secret's last write;
	// send it back as If-Match to change the secret only if it has not
	// changed since.
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// SecretList is the body of GET /v1/namespaces/{ns}/secrets.
type SecretList struct {
	Secrets []SecretInfo `json:"secrets"`
	// Continue is set when more remain: pass it as ?continue= for the next page.
	Continue string `json:"continue,omitempty"`
}

// RotateKeyResult is the answer to POST /v1/secrets/rotate-key.
type RotateKeyResult struct {
	KeyID     string `json:"keyId"`
	Rewrapped int    `json:"rewrapped"`
}

// Metric names what the autoscaler sizes a function by.
const (
	MetricConcurrency = "concurrency"
	MetricRPS         = "rps"
)

// Concurrency configures per-replica load.
type Concurrency struct {
	// Metric is "concurrency" (default) or "rps".
	Metric string `json:"metric,omitempty"`
	// Target is the in-flight requests per replica the autoscaler aims for. Default 100.
	Target int `json:"target,omitempty"`
	// TargetUtilization scales Target (and RPSTarget) down to leave headroom. Default 0.7.
	TargetUtilization float64 `json:"targetUtilization,omitempty"`
	// HardLimit caps in-flight requests per replica; 0 means no limit. Default 0.
	HardLimit int `json:"hardLimit,omitempty"`
	// RPSTarget is requests per second per replica when Metric is "rps". Default 200.
	RPSTarget int `json:"rpsTarget,omitempty"`
}

// Scale bounds and tunes the autoscaler. The names and defaults follow
// Knative's KPA so that its documentation applies.
type Scale struct {
	// Min replicas. Default 0, so the function scales to zero.
	Min int `json:"min,omitempty"`
	// Max replicas; 0 means unlimited. Default 0.
	Max int `json:"max,omitempty"`
	// Initial replicas when a revision is created. A pointer because 0 is a
	// meaningful value. Default 1.
	Initial *int `json:"initial,omitempty"`
	// ActivationScale is the least a revision scales to when it leaves zero. Default 1.
	ActivationScale int `json:"activationScale,omitempty"`
	// ScaleToZeroGrace is how long a revision must see no demand before it goes
	// to zero. Default 30s.
	ScaleToZeroGrace Duration `json:"scaleToZeroGrace"`
	// ScaleToZeroRetention keeps the last replica at least this long after the
	// last request. Default 0.
	ScaleToZeroRetention Duration `json:"scaleToZeroRetention"`
	// ScaleDownDelay holds scale-downs until the lower count has held this long. Default 0.
	ScaleDownDelay Duration `json:"scaleDownDelay"`
	// StableWindow is the averaging window of the stable mode. Default 60s.
	StableWindow Duration `json:"stableWindow"`
	// PanicWindowPercent is the panic window as a percentage of StableWindow. Default 10.
	PanicWindowPercent float64 `json:"panicWindowPercent,omitempty"`
	// PanicThresholdPercent enters panic mode when the panic-window demand
	// exceeds this percentage of current capacity. Default 200.
	PanicThresholdPercent float64 `json:"panicThresholdPercent,omitempty"`
	// MaxScaleUpRate bounds growth per decision as a multiple of ready replicas. Default 1000.
	MaxScaleUpRate float64 `json:"maxScaleUpRate,omitempty"`
	// MaxScaleDownRate bounds shrinkage per decision as a divisor of ready replicas. Default 2.
	MaxScaleDownRate float64 `json:"maxScaleDownRate,omitempty"`
}

// Resources limit each replica.
type Resources struct {
	// CPU in cores, enforced as a CFS quota. Default 1.
	CPU float64 `json:"cpu,omitempty"`
	// Memory limit such as "256Mi" or "1Gi". Default "256Mi".
	Memory string `json:"memory,omitempty"`
	// Pids limits the number of processes and threads. Default 256.
	Pids int `json:"pids,omitempty"`
}

// TrafficTarget is one entry of a function's traffic split. Exactly one of
// Revision and LatestRevision names where the traffic goes.
type TrafficTarget struct {
	Revision       string `json:"revision,omitempty"`
	LatestRevision bool   `json:"latestRevision,omitempty"`
	Percent        int    `json:"percent"`
	// Tag gives the target its own URL, {tag}-{function}.{domain}, or
	// {tag}-{function}.{namespace}.{domain} outside the default namespace.
	Tag string `json:"tag,omitempty"`
	// Headers, when set, send every request to the function's own host
	// whose headers all match to this target's revision, whatever the
	// percents say, as a service mesh's header match does. Names are
	// matched case-insensitively, values exactly. Targets with Headers
	// are tried in order before the split; such a target's Percent is
	// normally 0, and it still counts towards the 100 the percents sum to.
	Headers map[string]string `json:"headers,omitempty"`
	// URL is output only: the tag's URL.
	URL string `json:"url,omitempty"`
}

// TrafficRequest is the body of PUT /v1/functions/{name}/traffic.
type TrafficRequest struct {
	Traffic []TrafficTarget `json:"traffic"`
}

// Revision states reported in RevisionStatus.State.
const (
	RevisionReady     = "Ready"     // every desired replica is ready
	RevisionScaling   = "Scaling"   // replicas are starting or stopping
	RevisionIdle      = "Idle"      // scaled to zero, as desired
	RevisionCrashLoop = "CrashLoop" // a replica keeps crashing (3 times in a row) and waits to restart with backoff
	RevisionFailed    = "Failed"    // replicas cannot start at all (bad image, bad entrypoint)
)

// RevisionStatus is the observed state of one revision.
type RevisionStatus struct {
	Name       string    `json:"name"`
	Generation int       `json:"generation"`
	Image      string    `json:"image"`
	CreatedAt  time.Time `json:"createdAt"`
	// Percent of the function's main traffic this revision receives.
	Percent int      `json:"percent"`
	Tags    []string `json:"tags,omitempty"`
	Desired int      `json:"desired"`
	Ready   int      `json:"ready"`
	// PreCreated counts tasks created but not started, ready for a fast cold start.
	PreCreated   int    `json:"preCreated"`
	State        string `json:"state"`
	Message      string `json:"message,omitempty"`
	Restarts     int    `json:"restarts"`
	LastExitCode *int   `json:"lastExitCode,omitempty"`
	// LastLogLines are the final lines a crashed replica wrote.
	LastLogLines []string `json:"lastLogLines,omitempty"`
	// Replicas lists the ready replicas and where they serve.
	Replicas []ReplicaStatus `json:"replicas,omitempty"`
}

// ReplicaStatus is one ready replica of a revision.
type ReplicaStatus struct {
	Name string `json:"name"`
	Node string `json:"node"`
	// Addr is the host:port the data plane sends the replica's requests to.
	Addr string `json:"addr"`
}

// Revision is an immutable snapshot of a function's spec.
type Revision struct {
	Name string `json:"name"`
	// Function is the function's name in its namespace.
	Function  string         `json:"function"`
	Namespace string         `json:"namespace"`
	Spec      FunctionSpec   `json:"spec"`
	Status    RevisionStatus `json:"status"`
}

// Function is the status document of GET /v1/functions/{name}.
type Function struct {
	// Name is the function's name in its namespace.
	Name      string       `json:"name"`
	Namespace string       `json:"namespace"`
	Spec      FunctionSpec `json:"spec"`
	// URL routes to the function's traffic split: {name}.{domain} in the
	// default namespace, {name}.{namespace}.{domain} in any other.
	URL string `json:"url"`
	// VIP is the function's virtual address (host:port) for callers on the
	// nodes, which eBPF sends straight to a ready replica; empty until a
	// node with the eBPF programs has allocated one.
	VIP            string           `json:"vip,omitempty"`
	LatestRevision string           `json:"latestRevision"`
	Traffic        []TrafficTarget  `json:"traffic"`
	Revisions      []RevisionStatus `json:"revisions"`
	CreatedAt      time.Time        `json:"createdAt"`
	UpdatedAt      time.Time        `json:"updatedAt"`
	// Labels are the spec's labels, repeated here for selectors' readers.
	Labels map[string]string `json:"labels,omitempty"`
	// ResourceVersion is the store revision of the function record's last
	// write (spec, labels or traffic); send it back as If-Match.
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// FunctionList is the body of GET /v1/functions.
type FunctionList struct {
	Functions []Function `json:"functions"`
	// Continue is set when more remain: pass it as ?continue= for the next page.
	Continue string `json:"continue,omitempty"`
}

// RevisionList is the body of GET /v1/functions/{name}/revisions.
type RevisionList struct {
	Revisions []Revision `json:"revisions"`
	// Continue is set when more remain: pass it as ?continue= for the next page.
	Continue string `json:"continue,omitempty"`
}

// ImageList is the body of GET /v1/images.
type ImageList struct {
	Images []Image `json:"images"`
	// Continue is set when more remain: pass it as ?continue= for the next page.
	Continue string `json:"continue,omitempty"`
}

// Image is the answer to POST /v1/images.
type Image struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// ErrorBody is the envelope of every API error: {"error":{"code","message"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is a stable machine-readable code plus a human sentence.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Quota has the numbers of a quota_exceeded error.
	Quota *QuotaExceeded `json:"quota,omitempty"`
}

// Error codes used in ErrorDetail.Code.
const (
	CodeInvalid         = "invalid"           // the request is malformed or fails validation
	CodeNotFound        = "not_found"         // the named object does not exist
	CodeConflict        = "conflict"          // a concurrent change won; retry
	CodeUnauthorized    = "unauthorized"      // missing or wrong bearer token
	CodeForbidden       = "forbidden"         // the token lacks the permission the message names
	CodeTooLarge        = "too_large"         // the body exceeds its limit
	CodeInvalidArchive  = "invalid_archive"   // the image archive is unsafe or malformed, or its image cannot run here
	CodeUnsupportedType = "unsupported_media" // wrong Content-Type
	CodeInternal        = "internal"          // a bug or an unavailable dependency
	CodeUnavailable     = "unavailable"       // a capacity limit is reached for now (a full image spool); retry after Retry-After
	CodeQuotaExceeded   = "quota_exceeded"    // the change would take the namespace past its quota (403)
)

// RevisionStat is one reporter's view of one revision over one reporting
// interval. Routers and activators send these to the autoscaler.
type RevisionStat struct {
	Revision string `json:"revision"`
	// Reporter identifies the router or activator, so the autoscaler can sum
	// across reporters without double counting one.
	Reporter string `json:"reporter"`
	// Time is the end of the interval.
	Time time.Time `json:"time"`
	// AvgConcurrency is the time-weighted average of in-flight plus buffered requests.
	AvgConcurrency float64 `json:"avgConcurrency"`
	// MaxConcurrency is the peak of in-flight plus buffered requests.
	MaxConcurrency float64 `json:"maxConcurrency"`
	// Requests is the count of requests that arrived in the interval.
	Requests float64 `json:"requests"`
	// Buffered is the number of requests waiting in an activator at Time.
	Buffered int `json:"buffered"`
	// Interval is the length of the interval the figures cover.
	Interval Duration `json:"interval"`
	// Outcomes are how the interval's requests ended; only routers count
	// them (an activator's requests came through a router).
	Outcomes *Outcomes `json:"outcomes,omitempty"`
}
