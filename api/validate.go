package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Spec defaults, applied by WithDefaults. They are documented on the fields of
// FunctionSpec and in docs/architecture.md.
const (
	DefaultPort                  = 8080
	DefaultConcurrencyTarget     = 100
	DefaultTargetUtilization     = 0.7
	DefaultRPSTarget             = 200
	DefaultInitialScale          = 1
	DefaultActivationScale       = 1
	DefaultScaleToZeroGrace      = 30 * time.Second
	DefaultStableWindow          = 60 * time.Second
	DefaultPanicWindowPercent    = 10.0
	DefaultPanicThresholdPercent = 200.0
	DefaultMaxScaleUpRate        = 1000.0
	DefaultMaxScaleDownRate      = 2.0
	DefaultTimeout               = 300 * time.Second
	DefaultCPU                   = 1.0
	DefaultMemory                = "256Mi"
	DefaultPids                  = 256
)

// ValidationError says which field is wrong and why. The API answers it with 400.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// IsValidation reports whether err is (or wraps) a ValidationError.
func IsValidation(err error) bool {
	var v *ValidationError
	return errors.As(err, &v)
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateName checks that name is a DNS-1123 label of at most 63 characters,
// as function names, tags and hosts need.
func ValidateName(field, name string) error {
	switch {
	case name == "":
		return invalid(field, "must not be empty")
	case len(name) > 63:
		return invalid(field, "%q is longer than 63 characters", truncate(name))
	case !dnsLabel.MatchString(name):
		return invalid(field, "%q must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit", truncate(name))
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// RevisionName is the name of a function's n-th revision, e.g. hello-00002.
func RevisionName(function string, generation int) string {
	return fmt.Sprintf("%s-%05d", function, generation)
}

// DecodeStrict decodes one JSON value from r into v, rejecting unknown fields
// and trailing data. Errors are ValidationErrors with a readable reason.
func DecodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return err // the caller answers 413, not 400
		case errors.Is(err, io.EOF):
			return invalid("", "request body is empty")
		}
		return invalid("", "malformed JSON: %v", err)
	}
	if dec.More() {
		return invalid("", "malformed JSON: unexpected data after the object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("", "malformed JSON: unexpected data after the object")
	}
	return nil
}

// DecodeSpec decodes and validates a FunctionSpec and returns it with every
// default filled in.
func DecodeSpec(b []byte) (FunctionSpec, error) {
	var spec FunctionSpec
	if err := DecodeStrict(bytes.NewReader(b), &spec); err != nil {
		return FunctionSpec{}, err
	}
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return FunctionSpec{}, err
	}
	return spec, nil
}

// WithDefaults returns a copy of s with every zero field set to its default.
func (s FunctionSpec) WithDefaults() FunctionSpec {
	if s.Port == 0 {
		s.Port = DefaultPort
	}
	c := &s.Concurrency
	if c.Metric == "" {
		c.Metric = MetricConcurrency
	}
	if c.Target == 0 {
		c.Target = DefaultConcurrencyTarget
	}
	if c.TargetUtilization == 0 {
		c.TargetUtilization = DefaultTargetUtilization
	}
	if c.RPSTarget == 0 {
		c.RPSTarget = DefaultRPSTarget
	}
	sc := &s.Scale
	if sc.Initial == nil {
		v := DefaultInitialScale
		sc.Initial = &v
	} else {
		v := *sc.Initial // never alias the caller's pointer
		sc.Initial = &v
	}
	if sc.ActivationScale == 0 {
		sc.ActivationScale = DefaultActivationScale
	}
	if sc.ScaleToZeroGrace.Duration == 0 {
		sc.ScaleToZeroGrace = D(DefaultScaleToZeroGrace)
	}
	if sc.StableWindow.Duration == 0 {
		sc.StableWindow = D(DefaultStableWindow)
	}
	if sc.PanicWindowPercent == 0 {
		sc.PanicWindowPercent = DefaultPanicWindowPercent
	}
	if sc.PanicThresholdPercent == 0 {
		sc.PanicThresholdPercent = DefaultPanicThresholdPercent
	}
	if sc.MaxScaleUpRate == 0 {
		sc.MaxScaleUpRate = DefaultMaxScaleUpRate
	}
	if sc.MaxScaleDownRate == 0 {
		sc.MaxScaleDownRate = DefaultMaxScaleDownRate
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
	if s.Timeout.Duration == 0 {
		s.Timeout = D(DefaultTimeout)
	}
	if s.Rollout != nil {
		p := s.Rollout.WithDefaults() // never alias the caller's policy
		s.Rollout = &p
	}
	return s
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks a defaulted spec. Call WithDefaults first.
func (s FunctionSpec) Validate() error {
	if err := s.validateRunnable(); err != nil {
		return err
	}
	if s.Port < 1 || s.Port > 65535 {
		return invalid("port", "%d is outside 1-65535", s.Port)
	}
	if err := ValidateProtocol(s.Protocol); err != nil {
		return err
	}
	if s.RevisionName != "" {
		if err := ValidateName("revisionName", s.RevisionName); err != nil {
			return err
		}
	}
	if err := ValidateLabels(s.Labels); err != nil {
		return err
	}
	if err := s.Concurrency.validate(); err != nil {
		return err
	}
	if err := s.Scale.validate(); err != nil {
		return err
	}
	if err := s.Resources.validate(); err != nil {
		return err
	}
	if s.Timeout.Duration < time.Millisecond || s.Timeout.Duration > time.Hour {
		return invalid("timeout", "%s is outside 1ms-1h", s.Timeout.Duration)
	}
	if s.Async != nil && (s.Async.MaxConcurrency < 0 || s.Async.MaxConcurrency > MaxAsyncConcurrency) {
		return invalid("async.maxConcurrency", "%d is outside 0-%d", s.Async.MaxConcurrency, MaxAsyncConcurrency)
	}
	if s.Async != nil && (s.Async.Target < 0 || s.Async.Target > MaxAsyncTarget) {
		return invalid("async.target", "%d is outside 0-%d", s.Async.Target, MaxAsyncTarget)
	}
	if s.Rollout != nil {
		return s.Rollout.Validate()
	}
	return nil
}

// validateRunnable checks what a function and a job share: the image,
// args, env and secrets.
func (s FunctionSpec) validateRunnable() error {
	if strings.TrimSpace(s.Image) == "" {
		return invalid("image", "is required")
	}
	if len(s.Image) > 512 || strings.ContainsAny(s.Image, " \t\n") {
		return invalid("image", "%q is not an image reference", truncate(s.Image))
	}
	for k, v := range s.Env {
		if !envName.MatchString(k) {
			return invalid("env", "%q is not a valid variable name", truncate(k))
		}
		if k == "PORT" {
			return invalid("env", "PORT is set by ebb from the port field")
		}
		if strings.ContainsRune(v, 0) {
			return invalid("env", "%s contains a NUL byte", k)
		}
	}
	for _, a := range s.Args {
		if strings.ContainsRune(a, 0) {
			return invalid("args", "an argument contains a NUL byte")
		}
	}
	if err := validateSecrets(s.Secrets); err != nil {
		return err
	}
	return nil
}

func validateSecrets(secrets []Secret) error {
	seen := map[string]bool{}
	for i, sec := range secrets {
		field := fmt.Sprintf("secrets[%d]", i)
		if sec.Value != "" {
			return invalid(field+".value", "inline secret values are not accepted: create a secret object "+
				"(`ebb secrets create NAME --from-literal KEY=VALUE`, or PUT /v1/namespaces/{ns}/secrets/NAME) "+
				`and refer to it as {"secret":"NAME","key":"KEY","env":"VAR"} (or "file":"FILE"), e.g. `+
				"`ebb deploy FN --secret NAME:KEY=VAR`")
		}
		if sec.Secret == "" && sec.Name != "" {
			return invalid(field+".secret", "name the secret object the value comes from (secret and key), not an inline secret (name)")
		}
		if err := ValidateName(field+".secret", sec.Secret); err != nil {
			return err
		}
		if err := ValidateSecretKey(field+".key", sec.Key); err != nil {
			return err
		}
		if (sec.Env == "") == (sec.File == "") {
			return invalid(field, "set exactly one of env and file")
		}
		target := "env " + sec.Env
		if sec.Env != "" && !envName.MatchString(sec.Env) {
			return invalid(field+".env", "%q is not a valid variable name", truncate(sec.Env))
		}
		if sec.Env == "PORT" || strings.HasPrefix(sec.Env, "EBB_") {
			return invalid(field+".env", "%s is set by ebb", sec.Env)
		}
		if sec.File != "" {
			target = "file " + sec.File
			if strings.ContainsAny(sec.File, "/\x00") || sec.File == "." || sec.File == ".." || len(sec.File) > 255 {
				return invalid(field+".file", "%q must be a plain file name", truncate(sec.File))
			}
		}
		if seen[target] {
			return invalid(field, "%s is set twice", target)
		}
		seen[target] = true
	}
	return nil
}

// secretKeyPattern is what a key of a secret object may be: a file name or
// a variable name, as Kubernetes allows.
var secretKeyPattern = regexp.MustCompile(`^[-._a-zA-Z0-9]{1,253}$`)

// ValidateSecretKey checks one key of a secret object.
func ValidateSecretKey(field, key string) error {
	if !secretKeyPattern.MatchString(key) || key == "." || key == ".." {
		return invalid(field, "%q must be 1-253 letters, digits, '-', '_' or '.'", truncate(key))
	}
	return nil
}

// ValidateSecretData checks a secret object's keys; the control plane
// checks its size (MaxSecretBytes), which has a status of its own.
func ValidateSecretData(data map[string][]byte) error {
	if len(data) == 0 {
		return invalid("data", "a secret needs at least one key")
	}
	for k := range data {
		if err := ValidateSecretKey("data", k); err != nil {
			return err
		}
	}
	return nil
}

// SecretDataBytes is the size of a secret's data as MaxSecretBytes counts
// it: keys and values.
func SecretDataBytes(data map[string][]byte) int {
	total := 0
	for k, v := range data {
		total += len(k) + len(v)
	}
	return total
}

func (c Concurrency) validate() error {
	if c.Metric != MetricConcurrency && c.Metric != MetricRPS {
		return invalid("concurrency.metric", "%q must be %q or %q", truncate(c.Metric), MetricConcurrency, MetricRPS)
	}
	if c.Target < 1 || c.Target > 100000 {
		return invalid("concurrency.target", "%d is outside 1-100000", c.Target)
	}
	if c.TargetUtilization <= 0 || c.TargetUtilization > 1 {
		return invalid("concurrency.targetUtilization", "%g is outside (0, 1]", c.TargetUtilization)
	}
	if c.HardLimit < 0 {
		return invalid("concurrency.hardLimit", "must not be negative")
	}
	if c.RPSTarget < 1 {
		return invalid("concurrency.rpsTarget", "must be at least 1")
	}
	return nil
}

func (s Scale) validate() error {
	switch {
	case s.Min < 0:
		return invalid("scale.min", "must not be negative")
	case s.Max < 0:
		return invalid("scale.max", "must not be negative")
	case s.Max > 0 && s.Min > s.Max:
		return invalid("scale.min", "%d is above scale.max %d", s.Min, s.Max)
	case s.Initial != nil && *s.Initial < 0:
		return invalid("scale.initial", "must not be negative")
	case s.Initial != nil && s.Max > 0 && *s.Initial > s.Max:
		return invalid("scale.initial", "%d is above scale.max %d", *s.Initial, s.Max)
	case s.ActivationScale < 1:
		return invalid("scale.activationScale", "must be at least 1")
	case s.Max > 0 && s.ActivationScale > s.Max:
		return invalid("scale.activationScale", "%d is above scale.max %d", s.ActivationScale, s.Max)
	case s.ScaleToZeroGrace.Duration < 0, s.ScaleToZeroRetention.Duration < 0, s.ScaleDownDelay.Duration < 0:
		return invalid("scale", "durations must not be negative")
	case s.StableWindow.Duration < 6*time.Second || s.StableWindow.Duration > time.Hour:
		return invalid("scale.stableWindow", "%s is outside 6s-1h", s.StableWindow.Duration)
	case s.PanicWindowPercent < 1 || s.PanicWindowPercent > 100:
		return invalid("scale.panicWindowPercent", "%g is outside 1-100", s.PanicWindowPercent)
	case s.PanicThresholdPercent < 110 || s.PanicThresholdPercent > 1000:
		return invalid("scale.panicThresholdPercent", "%g is outside 110-1000", s.PanicThresholdPercent)
	case s.MaxScaleUpRate <= 1:
		return invalid("scale.maxScaleUpRate", "must be above 1")
	case s.MaxScaleDownRate <= 1:
		return invalid("scale.maxScaleDownRate", "must be above 1")
	}
	return nil
}

func (r Resources) validate() error {
	if r.CPU <= 0 || r.CPU > 1024 {
		return invalid("resources.cpu", "%g is outside (0, 1024] cores", r.CPU)
	}
	mem, err := ParseBytes(r.Memory)
	if err != nil {
		return invalid("resources.memory", "%v", err)
	}
	if mem < 4<<20 {
		return invalid("resources.memory", "%s is below the 4Mi minimum", r.Memory)
	}
	if r.Pids < 1 {
		return invalid("resources.pids", "must be at least 1")
	}
	return nil
}

// ParseBytes parses a memory quantity: a plain byte count or a number with one
// of the suffixes K, M, G (powers of 1000) or Ki, Mi, Gi (powers of 1024).
func ParseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}}
	num, mult := s, int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a quantity such as 256Mi or 1Gi", truncate(s))
	}
	if n > (1<<50)/mult {
		return 0, fmt.Errorf("%q is too large", truncate(s))
	}
	return n * mult, nil
}

// ValidateTraffic checks a traffic split against the function's revisions.
// exists reports whether a revision name belongs to the function.
func ValidateTraffic(targets []TrafficTarget, exists func(revision string) bool) error {
	if len(targets) == 0 {
		return invalid("traffic", "must name at least one target")
	}
	sum, matches := 0, 0
	tags := map[string]bool{}
	for i, t := range targets {
		field := fmt.Sprintf("traffic[%d]", i)
		if t.LatestRevision == (t.Revision != "") {
			return invalid(field, "set exactly one of revision and latestRevision")
		}
		if t.Revision != "" && !exists(t.Revision) {
			return invalid(field+".revision", "revision %q does not exist", truncate(t.Revision))
		}
		if t.Percent < 0 || t.Percent > 100 {
			return invalid(field+".percent", "%d is outside 0-100", t.Percent)
		}
		sum += t.Percent
		if t.Tag != "" {
			if err := ValidateName(field+".tag", t.Tag); err != nil {
				return err
			}
			if tags[t.Tag] {
				return invalid(field+".tag", "%q is used twice", t.Tag)
			}
			tags[t.Tag] = true
		}
		if t.URL != "" {
			return invalid(field+".url", "is output only")
		}
		if t.Headers != nil {
			if matches++; matches > MaxHeaderMatchTargets {
				return invalid(field+".headers", "at most %d targets may match headers", MaxHeaderMatchTargets)
			}
			if err := validateHeaderMatch(field+".headers", t.Headers); err != nil {
				return err
			}
		}
	}
	if sum != 100 {
		return invalid("traffic", "percents sum to %d, not 100", sum)
	}
	return nil
}

// Bounds on header matches, which the router checks on every request to
// the function: they keep that work small and the route table's size
// bounded whatever a client of the API sends.
const (
	MaxHeaderMatchTargets = 16
	MaxMatchHeaders       = 8
	MaxHeaderNameLen      = 128
	MaxHeaderValueLen     = 1024
)

// validateHeaderMatch checks one target's header match: valid HTTP header
// names (RFC 9110 tokens), distinct whatever their case, and non-empty
// values of visible ASCII, spaces and tabs (no CR, LF or NUL, which could
// never arrive in a request), without surrounding white space, which HTTP
// strips.
func validateHeaderMatch(field string, headers map[string]string) error {
	if len(headers) == 0 {
		return invalid(field, "must name at least one header, or be left out")
	}
	if len(headers) > MaxMatchHeaders {
		return invalid(field, "at most %d headers may be matched", MaxMatchHeaders)
	}
	names := make([]string, 0, len(headers))
	for name := range headers {
		names = append(names, name)
	}
	sort.Strings(names) // the same input always gives the same error
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		value := headers[name]
		if name == "" || len(name) > MaxHeaderNameLen || !isToken(name) {
			return invalid(field, "%q is not an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~, at most %d)", truncate(name), MaxHeaderNameLen)
		}
		lower := strings.ToLower(name)
		if why, ok := unmatchable[lower]; ok {
			return invalid(field, "header %q cannot be matched: %s", name, why)
		}
		if seen[lower] {
			return invalid(field, "header %q is named twice (names ignore case)", truncate(name))
		}
		seen[lower] = true
		switch {
		case value == "":
			return invalid(field+"."+name, "must not be empty")
		case len(value) > MaxHeaderValueLen:
			return invalid(field+"."+name, "is longer than %d bytes", MaxHeaderValueLen)
		case strings.TrimSpace(value) != value:
			return invalid(field+"."+name, "must not start or end with white space")
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; (c < 0x20 && c != '\t') || c >= 0x7f {
				return invalid(field+"."+name, "holds byte 0x%02x: only visible ASCII, spaces and tabs", c)
			}
		}
	}
	return nil
}

// unmatchable are the headers a match may not name, with why.
var unmatchable = map[string]string{
	"host":    "the host picks the function; tags give revisions their own hosts",
	"cookie":  "cookies are parsed apart; pin clients to a revision with ebbd's --sticky-cookie",
	"trailer": "it declares trailers, which arrive after routing",
}

// isToken reports whether s is an RFC 9110 token, as header names are.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ValidateRevisionName checks a spec's revisionName against its function:
// it must start with "{function}-" (so that it reads as the function's, as
// Knative requires) and must not look like a name ebb gives, which could
// be another revision's.
func ValidateRevisionName(function, name string) error {
	if name == "" {
		return nil
	}
	if !strings.HasPrefix(name, function+"-") {
		return invalid("revisionName", "%q must start with %q", truncate(name), function+"-")
	}
	if generatedRevision.MatchString(strings.TrimPrefix(name, function+"-")) {
		return invalid("revisionName", "%q has the form of the names ebb gives revisions ({function}-NNNNN); choose another", truncate(name))
	}
	return nil
}

var generatedRevision = regexp.MustCompile(`^[0-9]{5,}$`)
