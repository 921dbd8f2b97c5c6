package api

import (
	"bytes"
	"strings"
	"time"
)

// Job defaults, applied by JobSpec.WithDefaults.
const (
	DefaultJobCompletions  = 1
	DefaultJobParallelism  = 1
	DefaultJobBackoffLimit = 6
	// MaxJobCompletions bounds completions and parallelism, so that one
	// job cannot ask for an unbounded number of pods.
	MaxJobCompletions = 10000
)

// Job phases.
const (
	JobRunning  = "Running"
	JobComplete = "Complete"
	JobFailed   = "Failed"
)

// Reasons a job failed, or an attempt ended without its own exit code.
const (
	JobReasonBackoffLimit     = "BackoffLimitExceeded"
	JobReasonDeadlineExceeded = "DeadlineExceeded"
	// AttemptReasonNodeLost: the attempt's node stopped heartbeating, or
	// its agent restarted and found the attempt's container gone.
	AttemptReasonNodeLost = "NodeLost"
	// AttemptReasonStartFailed: the container could not be created or
	// started (bad image, missing secret, runtime error).
	AttemptReasonStartFailed = "StartFailed"
	AttemptReasonKilled      = "Killed"
)

// Job runs an image to completion, as a Kubernetes Job does: its pods'
// exit codes are the result, 0 a success and anything else a failure.
type Job struct {
	Name      string    `json:"name"`
	Namespace string    `json:"namespace,omitempty"`
	Spec      JobSpec   `json:"spec"`
	Status    JobStatus `json:"status"`
	CreatedAt time.Time `json:"createdAt"`
}

// JobSpec is what a job runs and how often.
type JobSpec struct {
	// Image is the image to run, as for functions.
	Image string `json:"image"`
	// ImagePullSecret names the secret object with Image's registry
	// credentials, as for functions.
	ImagePullSecret string `json:"imagePullSecret,omitempty"`
	// Args replace the image's CMD and keep its ENTRYPOINT.
	Args []string          `json:"args,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
	// Secrets are injected as for functions: env or /run/secrets files.
	Secrets   []Secret  `json:"secrets,omitempty"`
	Resources Resources `json:"resources,omitzero"`
	// Completions is how many pods must exit 0 for the job to be Complete.
	// Default 1.
	Completions int `json:"completions,omitempty"`
	// Parallelism is how many pods may run at once. Default 1.
	Parallelism int `json:"parallelism,omitempty"`
	// BackoffLimit is how many failed pods the job tolerates: one more
	// fails the job. Default 6; 0 fails it on the first failure.
	BackoffLimit *int `json:"backoffLimit,omitempty"`
	// ActiveDeadline, if set, fails the job (DeadlineExceeded) and kills
	// its pods once it has run this long.
	ActiveDeadline Duration `json:"activeDeadline,omitzero"`
	// TTLAfterFinished, if set, deletes the job this long after it
	// completed or failed.
	TTLAfterFinished Duration `json:"ttlAfterFinished,omitzero"`
}

// JobStatus is the job controller's account of a job.
type JobStatus struct {
	// Phase is Running, Complete or Failed.
	Phase string `json:"phase"`
	// Reason says why a job Failed.
	Reason    string `json:"reason,omitempty"`
	Active    int    `json:"active"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	// StartedAt is when the controller first saw the job; CompletedAt when
	// it became Complete or Failed.
	StartedAt   time.Time `json:"startedAt,omitzero"`
	CompletedAt time.Time `json:"completedAt,omitzero"`
	// Attempts are the job's pods, finished ones included, by Index.
	Attempts []JobAttempt `json:"attempts,omitempty"`
	// Waiting says why pods the job is due do not start yet: its
	// namespace's quota is used up, or no live node has room. Empty when
	// every pod due runs.
	Waiting string `json:"waiting,omitempty"`
}

// JobAttempt is one pod of a job.
type JobAttempt struct {
	// Index numbers the job's pods from 0, in creation order.
	Index int    `json:"index"`
	Node  string `json:"node"`
	// ExitCode is set once the pod's program has exited.
	ExitCode   *int      `json:"exitCode,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// Reason says why the attempt ended without an exit code of its own,
	// or was killed (see the AttemptReason constants).
	Reason string `json:"reason,omitempty"`
}

// Finished reports whether the attempt is over.
func (a JobAttempt) Finished() bool { return !a.FinishedAt.IsZero() }

// Succeeded reports whether the attempt is over with exit code 0.
func (a JobAttempt) Succeeded() bool {
	return a.Finished() && a.ExitCode != nil && *a.ExitCode == 0 && a.Reason == ""
}

// Finished reports whether the job is Complete or Failed.
func (s JobStatus) Finished() bool { return s.Phase == JobComplete || s.Phase == JobFailed }

// JobList is the body of GET /v1/namespaces/{ns}/jobs.
type JobList struct {
	Jobs []Job `json:"jobs"`
}

// DecodeJobSpec decodes and validates a JobSpec and returns it with every
// default filled in.
func DecodeJobSpec(b []byte) (JobSpec, error) {
	var spec JobSpec
	if err := DecodeStrict(bytes.NewReader(b), &spec); err != nil {
		return JobSpec{}, err
	}
	if err := spec.Validate(); err != nil {
		return JobSpec{}, err
	}
	return spec.WithDefaults(), nil
}

// WithDefaults returns a copy of s with every zero field set to its default.
func (s JobSpec) WithDefaults() JobSpec {
	if s.Completions == 0 {
		s.Completions = DefaultJobCompletions
	}
	if s.Parallelism == 0 {
		s.Parallelism = DefaultJobParallelism
	}
	if s.BackoffLimit == nil {
		v := DefaultJobBackoffLimit
		s.BackoffLimit = &v
	} else {
		v := *s.BackoffLimit // never alias the caller's pointer
		s.BackoffLimit = &v
	}
	r := &s.Resources
	if r.CPU == 0 {
		r.CPU = DefaultCPU
	}
	if r.Memory == "" {
		r.Memory = DefaultMemory
	}
	if r.Pids == 0 {
		r.Pids = DefaultPids
	}
	return s
}

// Backoff is the spec's backoff limit, defaulted.
func (s JobSpec) Backoff() int {
	if s.BackoffLimit == nil {
		return DefaultJobBackoffLimit
	}
	return *s.BackoffLimit
}

// Validate checks a spec, defaulted or not: each error names its field.
func (s JobSpec) Validate() error {
	fs := FunctionSpec{Image: s.Image, ImagePullSecret: s.ImagePullSecret, Args: s.Args, Env: s.Env, Secrets: s.Secrets}
	if err := fs.validateRunnable(); err != nil {
		return err
	}
	switch {
	case s.Completions < 0 || s.Completions > MaxJobCompletions:
		return invalid("completions", "%d is outside 0-%d (0 means the default, %d)", s.Completions, MaxJobCompletions, DefaultJobCompletions)
	case s.Parallelism < 0 || s.Parallelism > MaxJobCompletions:
		return invalid("parallelism", "%d is outside 0-%d (0 means the default, %d)", s.Parallelism, MaxJobCompletions, DefaultJobParallelism)
	case s.BackoffLimit != nil && (*s.BackoffLimit < 0 || *s.BackoffLimit > MaxJobCompletions):
		return invalid("backoffLimit", "%d is outside 0-%d", *s.BackoffLimit, MaxJobCompletions)
	case s.ActiveDeadline.Duration < 0:
		return invalid("activeDeadline", "%s is negative", s.ActiveDeadline.Duration)
	case s.TTLAfterFinished.Duration < 0:
		return invalid("ttlAfterFinished", "%s is negative", s.TTLAfterFinished.Duration)
	}
	if s.Resources != (Resources{}) {
		d := FunctionSpec{Resources: s.Resources}.WithDefaults()
		if err := d.Resources.validate(); err != nil {
			return err
		}
	}
	return nil
}

// JobLogName is the name a job's logs go under in the node agents' log
// rings, in place of a function's qualified name: "job.{name}.{namespace}",
// which no function's qualified name ({fn} or {fn}.{ns}) can equal.
func JobLogName(namespace, name string) string {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	return "job." + name + "." + namespace
}

// ValidateJobLogName checks a name made by JobLogName.
func ValidateJobLogName(field, s string) error {
	rest, ok := strings.CutPrefix(s, "job.")
	name, ns, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return invalid(field, "%q is not a job's log name", truncate(s))
	}
	return ValidateQualified(ns, name)
}
