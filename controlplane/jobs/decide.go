package jobs

import (
	"slices"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/placement"
	"github.com/ebbrun/ebb/internal/quota"
	"github.com/ebbrun/ebb/store"
)

// Pod is what decide sees of one job pod whose record exists.
type Pod struct {
	Name  string
	Index int
	Node  string
	// Report is the node agent's report; nil before its first.
	Report *store.JobPodStatus
	// NodeLive says the pod's node still heartbeats.
	NodeLive bool
}

// Input is one job's state for decide.
type Input struct {
	Job  api.Job
	Pods []Pod
	// Nodes are the live nodes, where new pods may go; decide adds the
	// pods it places to their allocations.
	Nodes []*Node
	// Quota is the job's namespace's quota and what it holds, when the
	// quota caps replicas, memory or CPU; nil otherwise. Decide adds the
	// pods it places to its use.
	Quota *Budget
	Now   time.Time
}

// Budget is a capped namespace's quota and its use: the replicas the
// autoscaler runs there and the namespace's job pods that have not
// finished, every job's.
type Budget struct {
	Namespace string
	Limits    quota.Limits
	Used      quota.Usage
}

// Node is a live node as placement sees it.
type Node struct {
	Name string
	// CPU and Memory are the node's capacity; a node that reports none
	// takes no pod, as it takes no replica.
	CPU    float64
	Memory int64
	// AllocCPU and AllocMemory are the limits of what the node runs, as
	// its heartbeat says, plus the job pods placed there since.
	AllocCPU    float64
	AllocMemory int64
	// Images are the image references the node holds.
	Images []string
	// JobPods counts the job pods placed there, every job's.
	JobPods int
}

// Decision is what to do for one job.
type Decision struct {
	// Status is the job's new status.
	Status api.JobStatus
	// Create are new pods, by their attempt in Status.Attempts.
	Create []api.JobAttempt
	// Delete are pod names whose records (and reports) go: finished pods
	// folded into Status, and running ones killed.
	Delete []string
	// DeleteJob says the job's time to live after finishing is over.
	DeleteJob bool
}

// decide is the job controller's pure core; see the package doc.
func decide(in Input) Decision {
	job, now := in.Job, in.Now
	spec := job.Spec.WithDefaults()
	st := job.Status
	st.Attempts = slices.Clone(st.Attempts)
	st.Waiting = ""
	if st.Phase == "" {
		st.Phase, st.StartedAt = api.JobRunning, now
	}
	var d Decision

	// Fold what the pods report into their attempts.
	seen := map[int]bool{}
	for _, p := range in.Pods {
		seen[p.Index] = true
		i := attemptIndex(&st, p.Index, p.Node)
		a := &st.Attempts[i]
		if a.Finished() {
			d.Delete = append(d.Delete, p.Name)
			continue
		}
		if r := p.Report; r != nil {
			if a.StartedAt.IsZero() {
				a.StartedAt = r.StartedAt
			}
			if r.Phase == store.JobPodSucceeded || r.Phase == store.JobPodFailed {
				a.ExitCode, a.Reason = r.ExitCode, r.Reason
				a.FinishedAt = r.FinishedAt
				if a.FinishedAt.IsZero() {
					a.FinishedAt = now
				}
				if r.Phase == store.JobPodFailed && a.Reason == "" && (a.ExitCode == nil || *a.ExitCode == 0) {
					a.Reason = api.AttemptReasonStartFailed
				}
				d.Delete = append(d.Delete, p.Name)
				continue
			}
		}
		if !p.NodeLive {
			a.Reason, a.FinishedAt = api.AttemptReasonNodeLost, now
			d.Delete = append(d.Delete, p.Name)
		}
	}
	// An unfinished attempt without a pod record lost it (it is written
	// with the attempt and deleted only once the attempt is finished).
	for i := range st.Attempts {
		if a := &st.Attempts[i]; !a.Finished() && !seen[a.Index] {
			a.Reason, a.FinishedAt = api.AttemptReasonNodeLost, now
		}
	}

	if st.Finished() {
		d.Delete = appendUnique(d.Delete, killAll(&st, in.Pods, now)...)
		count(&st)
		d.Status = st
		ttl := spec.TTLAfterFinished.Duration
		d.DeleteJob = ttl > 0 && !now.Before(st.CompletedAt.Add(ttl))
		return d
	}

	count(&st)
	switch {
	case st.Failed > spec.Backoff():
		finish(&st, api.JobFailed, api.JobReasonBackoffLimit, now)
	case st.Succeeded >= spec.Completions:
		finish(&st, api.JobComplete, "", now)
	case spec.ActiveDeadline.Duration > 0 && !now.Before(st.StartedAt.Add(spec.ActiveDeadline.Duration)):
		finish(&st, api.JobFailed, api.JobReasonDeadlineExceeded, now)
	}
	if st.Finished() {
		d.Delete = appendUnique(d.Delete, killAll(&st, in.Pods, now)...)
		count(&st)
		d.Status = st
		return d
	}

	want := min(spec.Parallelism, spec.Completions-st.Succeeded) - st.Active
	next := 0
	for _, a := range st.Attempts {
		next = max(next, a.Index+1)
	}
	cpu, mem := spec.Resources.CPU, memoryOf(spec)
	each := quota.PerJobPod(spec)
	for range max(want, 0) {
		// A pod past the namespace's quota waits, as a replica past it is
		// not started: try again next tick.
		if q := in.Quota; q != nil {
			if err := quota.Admit(q.Namespace, "a pod of job "+job.Name, q.Limits, q.Used, each); err != nil {
				st.Waiting = "waiting for the namespace quota: " + err.Error()
				break
			}
		}
		n := place(in.Nodes, spec.Image, cpu, mem)
		if n == nil {
			st.Waiting = "waiting for a live node with room for a pod"
			break // try again next tick
		}
		if q := in.Quota; q != nil {
			q.Used = q.Used.Plus(each)
		}
		n.AllocCPU += cpu
		n.AllocMemory += mem
		n.JobPods++
		a := api.JobAttempt{Index: next, Node: n.Name}
		next++
		st.Attempts = append(st.Attempts, a)
		d.Create = append(d.Create, a)
	}
	count(&st)
	d.Status = st
	return d
}

// attemptIndex finds the attempt of a pod, adding it if the status lacks
// it (a status write lost to a conflict), and returns its position.
func attemptIndex(st *api.JobStatus, index int, node string) int {
	for i, a := range st.Attempts {
		if a.Index == index {
			return i
		}
	}
	st.Attempts = append(st.Attempts, api.JobAttempt{Index: index, Node: node})
	slices.SortFunc(st.Attempts, func(a, b api.JobAttempt) int { return a.Index - b.Index })
	for i, a := range st.Attempts {
		if a.Index == index {
			return i
		}
	}
	return len(st.Attempts) - 1
}

// killAll ends every unfinished attempt as Killed and returns the names
// of the pods to delete.
func killAll(st *api.JobStatus, pods []Pod, now time.Time) []string {
	var names []string
	for _, p := range pods {
		for i := range st.Attempts {
			a := &st.Attempts[i]
			if a.Index == p.Index && !a.Finished() {
				a.Reason, a.FinishedAt = api.AttemptReasonKilled, now
				names = append(names, p.Name)
			}
		}
	}
	return names
}

func finish(st *api.JobStatus, phase, reason string, now time.Time) {
	st.Phase, st.Reason, st.CompletedAt = phase, reason, now
}

// count sets the status's counters from its attempts. A killed attempt
// counts as neither a success nor a failure, as in Kubernetes.
func count(st *api.JobStatus) {
	st.Active, st.Succeeded, st.Failed = 0, 0, 0
	for _, a := range st.Attempts {
		switch {
		case !a.Finished():
			st.Active++
		case a.Succeeded():
			st.Succeeded++
		case a.Reason != api.AttemptReasonKilled:
			st.Failed++
		}
	}
}

// placementConfig is the autoscaler's default for replicas, so that a job
// pod goes where a replica of the same size would.
var placementConfig = placement.Config{}.WithDefaults()

// place picks the node for a pod of cpu cores and mem bytes of image by
// the filter and score replicas are placed by (internal/placement): among
// the nodes it fits, the one with the best score; ties go to the node
// with the fewest job pods, then by name. nil when none fits.
func place(nodes []*Node, image string, cpu float64, mem int64) *Node {
	var best *Node
	var bestScore float64
	r := placement.Request{CPU: cpu, Memory: mem}
	for _, n := range nodes {
		c := placement.Candidate{CPU: n.CPU, Memory: n.Memory, AllocCPU: n.AllocCPU, AllocMemory: n.AllocMemory,
			HasImage: slices.Contains(n.Images, image)}
		if !placement.Fits(placementConfig, c, r) {
			continue
		}
		s := placement.Score(placementConfig, c, r)
		if best == nil || s > bestScore ||
			(s == bestScore && (n.JobPods < best.JobPods || (n.JobPods == best.JobPods && n.Name < best.Name))) {
			best, bestScore = n, s
		}
	}
	return best
}

// memoryOf is a defaulted spec's memory limit in bytes.
func memoryOf(spec api.JobSpec) int64 {
	mem, _ := api.ParseBytes(spec.Resources.Memory) // validated when the job was written
	return mem
}

func appendUnique(s []string, more ...string) []string {
	for _, m := range more {
		if !slices.Contains(s, m) {
			s = append(s, m)
		}
	}
	return s
}
