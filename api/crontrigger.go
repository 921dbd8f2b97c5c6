package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"reflect"
	"strconv"
	"strings"
	"time"
	// The zone database is built in, so every process parses a trigger's
	// TimeZone alike whatever the host's /usr/share/zoneinfo holds.
	_ "time/tzdata"
	"unicode"

	"github.com/robfig/cron/v3"
)

// CronPolicy says what a cron trigger does when a run is due while the
// previous run's invocation is not final yet.
type CronPolicy string

const (
	// CronAllow fires the run anyway (the default).
	CronAllow CronPolicy = "Allow"
	// CronForbid skips the run; it is recorded as Skipped.
	CronForbid CronPolicy = "Forbid"
	// CronReplace fires the run and marks the previous one Replaced. An
	// invocation being delivered cannot be called back, so the previous
	// one still runs to its end: Replace only stops waiting for it.
	CronReplace CronPolicy = "Replace"
)

// Cron trigger defaults and limits.
const (
	DefaultCronTimeZone         = "UTC"
	DefaultCronMethod           = http.MethodPost
	DefaultCronPath             = "/"
	DefaultCronStartingDeadline = time.Minute
	MinCronStartingDeadline     = time.Second
	DefaultCronSuccessful       = 3
	DefaultCronFailed           = 1
	// MaxCronHistory bounds each history limit.
	MaxCronHistory = 100
	// MaxCronSchedule bounds a schedule expression's length.
	MaxCronSchedule = 200
)

// Headers a fired run carries, so the function can tell a scheduled call
// from a user's. X-Ebb-, like the invoker's X-Ebb-Invocation-Id, because
// the router's proxy drops every Ebb- header on the way to a replica.
const (
	HeaderCronTrigger   = "X-Ebb-Cron-Trigger"
	HeaderCronScheduled = "X-Ebb-Cron-Scheduled"
)

// CronTriggerSpec is what a developer PUTs to
// .../functions/{fn}/crontriggers/{name}. Zero values mean the documented
// defaults; the control plane stores the defaulted spec.
type CronTriggerSpec struct {
	// Schedule is a standard five-field cron expression ("*/5 * * * *"),
	// a descriptor (@hourly, @daily, ...) or @every with a duration of at
	// least one second ("@every 2s"). Required.
	Schedule string `json:"schedule"`
	// TimeZone is the IANA zone the schedule is read in. Default UTC.
	TimeZone string `json:"timeZone,omitempty"`
	// Request is what each run sends to the function.
	Request CronRequest `json:"request,omitzero"`
	// Job, when set, makes each run create a Job from this spec, named
	// {trigger}-{scheduled unix} in the function's namespace, instead of
	// sending Request: a CronJob. A run's outcome is then its job's.
	Job *JobSpec `json:"job,omitempty"`
	// ConcurrencyPolicy is Allow (default), Forbid or Replace.
	ConcurrencyPolicy CronPolicy `json:"concurrencyPolicy,omitempty"`
	// StartingDeadline is how late a run may still be fired: a run found
	// due longer ago (the control planes were down) is counted as missed.
	// Default one minute; at least a second.
	StartingDeadline Duration `json:"startingDeadline,omitzero"`
	// SuccessfulHistory and FailedHistory are how many finished runs of
	// each kind are kept. Defaults 3 and 1; 0 keeps none.
	SuccessfulHistory *int `json:"successfulHistory,omitempty"`
	FailedHistory     *int `json:"failedHistory,omitempty"`
	// Suspend stops firing; runs due while suspended are neither fired
	// nor counted as missed.
	Suspend bool `json:"suspend,omitempty"`
}

// CronRequest is the HTTP request a run delivers. Body is text: a
// schedule sends a fixed payload, not binary data.
type CronRequest struct {
	// Method defaults to POST; Path to "/".
	Method string      `json:"method,omitempty"`
	Path   string      `json:"path,omitempty"`
	Header http.Header `json:"header,omitempty"`
	// Body is at most MaxInvocationBody bytes.
	Body string `json:"body,omitempty"`
}

// CronTrigger is a function's schedule as the API shows it.
type CronTrigger struct {
	Name string `json:"name"`
	// Function is the bare function name, in Namespace.
	Function  string `json:"function"`
	Namespace string `json:"namespace,omitempty"`
	CronTriggerSpec
	CreatedAt time.Time         `json:"createdAt"`
	UpdatedAt time.Time         `json:"updatedAt"`
	Status    CronTriggerStatus `json:"status"`
}

// CronTriggerStatus is what the trigger has done.
type CronTriggerStatus struct {
	// LastScheduleTime is the newest schedule time the control plane
	// handled (fired, skipped or counted missed); LastFireTime when the
	// schedule last enqueued a run (run-now runs show in Runs only).
	LastScheduleTime time.Time `json:"lastScheduleTime,omitzero"`
	LastFireTime     time.Time `json:"lastFireTime,omitzero"`
	// NextScheduleTime is the next run's time (zero while suspended).
	NextScheduleTime time.Time `json:"nextScheduleTime,omitzero"`
	// Missed counts runs that were due but found later than the starting
	// deadline.
	Missed int `json:"missed"`
	// Runs are the kept runs, newest first.
	Runs []CronRun `json:"runs"`
}

// CronRunOutcome is a run's state.
type CronRunOutcome string

const (
	// CronRunPending: fired (or about to be), its invocation not final.
	CronRunPending CronRunOutcome = "Pending"
	// The invocation's final statuses.
	CronRunSucceeded  CronRunOutcome = "Succeeded"
	CronRunFailed     CronRunOutcome = "Failed"
	CronRunDeadLetter CronRunOutcome = "DeadLetter"
	// CronRunSkipped: Forbid and the previous run was not final.
	CronRunSkipped CronRunOutcome = "Skipped"
	// CronRunLost: the invocation left the queue (retention) before its
	// outcome was seen.
	CronRunLost CronRunOutcome = "Lost"
)

// Final reports whether the outcome will not change.
func (o CronRunOutcome) Final() bool { return o != CronRunPending && o != "" }

// Succeeded reports whether a final run counts toward SuccessfulHistory.
func (o CronRunOutcome) Succeeded() bool { return o == CronRunSucceeded }

// CronRun is one run of a trigger.
type CronRun struct {
	// Scheduled is the schedule time the run is for (for run-now, the
	// second it was asked).
	Scheduled    time.Time `json:"scheduled"`
	FiredAt      time.Time `json:"firedAt,omitzero"`
	InvocationID string    `json:"invocationId,omitempty"`
	// Job names the job a CronJob's run created (CronTriggerSpec.Job).
	Job     string         `json:"job,omitempty"`
	Outcome CronRunOutcome `json:"outcome"`
	// Manual marks a run-now run.
	Manual bool `json:"manual,omitempty"`
	// Replaced marks a run a later one replaced (CronReplace).
	Replaced bool `json:"replaced,omitempty"`
}

// CronTriggerList is GET .../crontriggers, by name.
type CronTriggerList struct {
	Items []CronTrigger `json:"items"`
}

// cronParser reads the five standard fields and the descriptors (@every
// among them); seconds are not a field, as in crontab.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// CronSchedule is a parsed schedule in its zone.
type CronSchedule struct {
	sched cron.Schedule
	loc   *time.Location
}

// Next is the first schedule time after t; zero when there is none
// (a date that never comes, such as 30 February).
func (s CronSchedule) Next(t time.Time) time.Time {
	return s.sched.Next(t.In(s.loc)).UTC()
}

// ParseCronSchedule parses a spec's schedule in its zone (both defaulted).
func ParseCronSchedule(expr, zone string) (s CronSchedule, err error) {
	if zone == "" {
		zone = DefaultCronTimeZone
	}
	loc, err := loadZone(zone)
	if err != nil {
		return s, err
	}
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "":
		return s, invalid("schedule", "must not be empty")
	case len(expr) > MaxCronSchedule:
		return s, invalid("schedule", "is longer than %d characters", MaxCronSchedule)
	case strings.Contains(expr, "TZ="):
		// The parser's own CRON_TZ= prefix would override TimeZone.
		return s, invalid("schedule", "set the zone with timeZone, not TZ= in the expression")
	}
	if rest, ok := strings.CutPrefix(expr, "@every "); ok {
		d, perr := time.ParseDuration(strings.TrimSpace(rest))
		if perr != nil || d < time.Second || d%time.Second != 0 {
			return s, invalid("schedule", "%q: @every takes a whole number of seconds, at least 1s", truncate(expr))
		}
	}
	sched, err := parseCron(expr)
	if err != nil {
		return s, invalid("schedule", "%q is not a cron expression: %v", truncate(expr), err)
	}
	s = CronSchedule{sched: sched, loc: loc}
	if s.Next(time.Now()).IsZero() {
		return s, invalid("schedule", "%q never fires", truncate(expr))
	}
	return s, nil
}

// parseCron keeps a parser panic, should one of its corners have one, from
// taking the API down with hostile input.
func parseCron(expr string) (sched cron.Schedule, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return cronParser.Parse(expr)
}

func loadZone(zone string) (*time.Location, error) {
	// "Local" would read each host's own zone; time.LoadLocation refuses
	// paths (.. or a leading /) itself.
	if zone == "Local" || len(zone) > 64 {
		return nil, invalid("timeZone", "%q is not an IANA time zone", truncate(zone))
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, invalid("timeZone", "%q is not an IANA time zone", truncate(zone))
	}
	return loc, nil
}

// WithDefaults fills the documented defaults.
func (s CronTriggerSpec) WithDefaults() CronTriggerSpec {
	s.Schedule = strings.TrimSpace(s.Schedule)
	if s.TimeZone == "" {
		s.TimeZone = DefaultCronTimeZone
	}
	if s.Request.Method == "" {
		s.Request.Method = DefaultCronMethod
	}
	if s.Request.Path == "" {
		s.Request.Path = DefaultCronPath
	}
	if len(s.Request.Header) == 0 {
		s.Request.Header = nil
	}
	if s.ConcurrencyPolicy == "" {
		s.ConcurrencyPolicy = CronAllow
	}
	if s.StartingDeadline.Duration == 0 {
		s.StartingDeadline = D(DefaultCronStartingDeadline)
	}
	if s.SuccessfulHistory == nil {
		n := DefaultCronSuccessful
		s.SuccessfulHistory = &n
	}
	if s.FailedHistory == nil {
		n := DefaultCronFailed
		s.FailedHistory = &n
	}
	return s
}

// Validate checks a spec (defaulted or not); each error names its field.
func (s CronTriggerSpec) Validate() error {
	if _, err := ParseCronSchedule(s.Schedule, s.TimeZone); err != nil {
		return err
	}
	switch s.ConcurrencyPolicy {
	case "", CronAllow, CronForbid, CronReplace:
	default:
		return invalid("concurrencyPolicy", "%q is not Allow, Forbid or Replace", truncate(string(s.ConcurrencyPolicy)))
	}
	switch d := s.StartingDeadline.Duration; {
	case d < 0:
		return invalid("startingDeadline", "must not be negative")
	case d > 0 && d < MinCronStartingDeadline:
		// Shorter, a run woken a few milliseconds late would be missed.
		return invalid("startingDeadline", "%s is shorter than %s", d, MinCronStartingDeadline)
	}
	for _, h := range []struct {
		field string
		n     *int
	}{{"successfulHistory", s.SuccessfulHistory}, {"failedHistory", s.FailedHistory}} {
		if h.n != nil && (*h.n < 0 || *h.n > MaxCronHistory) {
			return invalid(h.field, "%d is outside 0-%d", *h.n, MaxCronHistory)
		}
	}
	if s.Job != nil {
		if !reflect.DeepEqual(s.Request, CronRequest{}) && !reflect.DeepEqual(s.Request, CronRequest{Method: DefaultCronMethod, Path: DefaultCronPath}) {
			return invalid("job", "a trigger either sends a request or creates a job, not both")
		}
		if err := s.Job.Validate(); err != nil {
			var v *ValidationError
			if errors.As(err, &v) {
				return invalid("job."+v.Field, "%s", v.Reason)
			}
			return err
		}
	}
	return s.Request.validate()
}

// CronJobName is the job a CronJob trigger's run creates:
// {trigger}-{scheduled unix}.
func CronJobName(trigger string, scheduled time.Time) string {
	return trigger + "-" + strconv.FormatInt(scheduled.Unix(), 10)
}

func (r CronRequest) validate() error {
	if r.Method != "" && !isToken(r.Method) {
		return invalid("request.method", "%q is not an HTTP method", truncate(r.Method))
	}
	if r.Path != "" {
		if !strings.HasPrefix(r.Path, "/") || strings.HasPrefix(r.Path, "//") {
			return invalid("request.path", "%q must start with a single /", truncate(r.Path))
		}
		if strings.IndexFunc(r.Path, func(c rune) bool { return c <= ' ' || c == 0x7f || !unicode.IsPrint(c) }) >= 0 {
			return invalid("request.path", "must not hold spaces or control characters")
		}
	}
	for name, values := range r.Header {
		if name == "" || !isToken(name) {
			return invalid("request.header", "%q is not a header name", truncate(name))
		}
		switch textproto.CanonicalMIMEHeaderKey(name) {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", HeaderInvoke:
			// The delivery sets these itself.
			return invalid("request.header", "%s is set by ebb, not by the trigger", textproto.CanonicalMIMEHeaderKey(name))
		}
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n\x00") {
				return invalid("request.header", "value of %s holds a line break or NUL", truncate(name))
			}
		}
	}
	if len(r.Body) > MaxInvocationBody {
		return invalid("request.body", "is %d bytes, more than %d", len(r.Body), MaxInvocationBody)
	}
	return nil
}
