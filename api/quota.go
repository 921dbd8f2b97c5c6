package api

import (
	"math"
)

// Quota caps what a namespace may hold. Every cap is optional: zero means
// no cap, as max scale's zero does. Replicas, Memory and CPU cap what the
// namespace's running replicas hold together (pre-created tasks, which run
// nothing yet, are not counted); the autoscaler clips scale-ups to them and
// the API refuses a deploy whose min or initial scale alone cannot fit.
type Quota struct {
	// Functions caps the functions in the namespace.
	Functions int `json:"functions,omitempty"`
	// Replicas caps the running replicas of all its revisions together.
	Replicas int `json:"replicas,omitempty"`
	// Memory caps the memory limits of its running replicas together, a
	// quantity such as "1Gi".
	Memory string `json:"memory,omitempty"`
	// CPU caps the CPU limits of its running replicas together, in cores.
	CPU float64 `json:"cpu,omitempty"`
	// Secrets caps the secret objects in the namespace.
	Secrets int `json:"secrets,omitempty"`
}

// Bounds of a quota's caps: far above any real namespace, low enough that
// sums of them cannot overflow.
const (
	MaxQuotaCount = 1_000_000   // functions, replicas, secrets
	MaxQuotaCPU   = 1_000_000.0 // cores
	MinQuotaCPU   = 0.001       // one millicore, the unit CPU is counted in
)

// IsZero says whether the quota caps nothing.
func (q Quota) IsZero() bool { return q == Quota{} }

// Validate checks a quota from a request.
func (q Quota) Validate() error {
	for _, c := range []struct {
		field string
		n     int
	}{{"quota.functions", q.Functions}, {"quota.replicas", q.Replicas}, {"quota.secrets", q.Secrets}} {
		if c.n < 0 || c.n > MaxQuotaCount {
			return invalid(c.field, "%d is outside 0-%d (0: no cap)", c.n, MaxQuotaCount)
		}
	}
	if q.Memory != "" {
		if _, err := ParseBytes(q.Memory); err != nil {
			return invalid("quota.memory", "%v", err)
		}
	}
	if math.IsNaN(q.CPU) || q.CPU < 0 || q.CPU > MaxQuotaCPU || (q.CPU > 0 && q.CPU < MinQuotaCPU) {
		return invalid("quota.cpu", "%g is outside [%g, %g] cores (0: no cap)", q.CPU, MinQuotaCPU, MaxQuotaCPU)
	}
	return nil
}

// QuotaExceeded is the detail of a 403 quota_exceeded error: the cap a
// change would pass, with the numbers, in Unit.
type QuotaExceeded struct {
	Namespace string `json:"namespace"`
	// Resource is functions, replicas, memory, cpu or secrets.
	Resource string `json:"resource"`
	// Unit is what Limit, Used and Wants count: functions, replicas,
	// bytes, millicores or secrets.
	Unit  string `json:"unit"`
	Limit int64  `json:"limit"`
	Used  int64  `json:"used"`
	Wants int64  `json:"wants"`
}
