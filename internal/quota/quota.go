package quota

import (
	"fmt"
	"math"
	"strconv"

	"github.com/ebbrun/ebb/api"
)

// Usage is what a namespace holds, or what a change would add to it.
type Usage struct {
	Functions int
	Replicas  int
	Memory    int64 // bytes
	MilliCPU  int64
	Secrets   int
}

// Limits is a parsed api.Quota; a zero field caps nothing.
type Limits struct {
	Functions int
	Replicas  int
	Memory    int64 // bytes
	MilliCPU  int64
	Secrets   int
}

// Parse validates a quota and turns it into Limits.
func Parse(q api.Quota) (Limits, error) {
	if err := q.Validate(); err != nil {
		return Limits{}, err
	}
	l := Limits{Functions: q.Functions, Replicas: q.Replicas, Secrets: q.Secrets, MilliCPU: MilliCPU(q.CPU)}
	if q.Memory != "" {
		l.Memory, _ = api.ParseBytes(q.Memory) // validated above
	}
	return l, nil
}

// CapsReplicas says whether the limits cap running replicas in any way:
// their count, memory or CPU. Only then does the autoscaler clip.
func (l Limits) CapsReplicas() bool { return l.Replicas > 0 || l.Memory > 0 || l.MilliCPU > 0 }

// MilliCPU converts cores to millicores, rounding to the nearest.
func MilliCPU(cores float64) int64 { return int64(math.Round(cores * 1000)) }

// PerReplica is what one replica of a (defaulted) spec holds: its memory
// and CPU limits. An unparsable memory counts as zero: specs are validated
// on the way in, and a bad one must not stop scaling.
func PerReplica(spec api.FunctionSpec) Usage {
	mem, err := api.ParseBytes(spec.Resources.Memory)
	if err != nil {
		mem = 0
	}
	return Usage{Replicas: 1, Memory: mem, MilliCPU: MilliCPU(spec.Resources.CPU)}
}

// PerJobPod is what one running pod of a (defaulted) job spec holds: a
// replica's worth of the quota, with the pod's memory and CPU limits. Job
// pods and replicas share a namespace's replicas, memory and CPU.
func PerJobPod(spec api.JobSpec) Usage {
	return PerReplica(api.FunctionSpec{Resources: spec.Resources})
}

// Times is u for n replicas: its replica count, memory and CPU multiplied.
func (u Usage) Times(n int) Usage {
	return Usage{Replicas: u.Replicas * n, Memory: u.Memory * int64(n), MilliCPU: u.MilliCPU * int64(n)}
}

// Plus adds two usages.
func (u Usage) Plus(o Usage) Usage {
	return Usage{
		Functions: u.Functions + o.Functions, Replicas: u.Replicas + o.Replicas,
		Memory: u.Memory + o.Memory, MilliCPU: u.MilliCPU + o.MilliCPU, Secrets: u.Secrets + o.Secrets,
	}
}

// Resources, as an ExceededError and a clip reason name them.
const (
	ResourceFunctions = "functions"
	ResourceReplicas  = "replicas"
	ResourceMemory    = "memory"
	ResourceCPU       = "cpu"
	ResourceSecrets   = "secrets"
)

// ExceededError says a change would take a namespace past one cap, with
// the numbers. The API answers it with 403 quota_exceeded.
type ExceededError struct {
	Namespace string
	// Action names the change, e.g. "deploy".
	Action string
	// Resource is one of the Resource constants.
	Resource string
	// Limit, Used and Wants are in the resource's unit: a count, bytes or
	// millicores.
	Limit, Used, Wants int64
}

func (e *ExceededError) Error() string {
	return fmt.Sprintf("namespace %s: %s %s of %s used, %s wants %s more",
		e.Namespace, e.Resource, Format(e.Resource, e.Used), Format(e.Resource, e.Limit), e.Action, Format(e.Resource, e.Wants))
}

// Format writes an amount of a resource for people: memory as a quantity
// (512Mi), CPU in cores (1.5), counts as they are.
func Format(resource string, n int64) string {
	switch resource {
	case ResourceMemory:
		return formatBytes(n)
	case ResourceCPU:
		return strconv.FormatFloat(float64(n)/1000, 'f', -1, 64)
	default:
		return strconv.FormatInt(n, 10)
	}
}

func formatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Admit says whether a namespace that holds used may take on change: nil,
// or an *ExceededError for the first cap it would pass, in the order
// functions, replicas, memory, CPU, secrets. Only what the change adds is
// checked, so a namespace already over a lowered cap may still shrink or
// change what it does not grow.
func Admit(namespace, action string, l Limits, used, change Usage) error {
	for _, c := range []struct {
		resource           string
		limit, used, wants int64
	}{
		{ResourceFunctions, int64(l.Functions), int64(used.Functions), int64(change.Functions)},
		{ResourceReplicas, int64(l.Replicas), int64(used.Replicas), int64(change.Replicas)},
		{ResourceMemory, l.Memory, used.Memory, change.Memory},
		{ResourceCPU, l.MilliCPU, used.MilliCPU, change.MilliCPU},
		{ResourceSecrets, int64(l.Secrets), int64(used.Secrets), int64(change.Secrets)},
	} {
		if c.limit > 0 && c.wants > 0 && c.used+c.wants > c.limit {
			return &ExceededError{Namespace: namespace, Action: action, Resource: c.resource, Limit: c.limit, Used: c.used, Wants: c.wants}
		}
	}
	return nil
}
