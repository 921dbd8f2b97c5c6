package promql

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Vars are the values of a check's template variables: the names of the
// rollout's revisions, function and namespace, and its analysis interval.
// Each name is the value of the label of the same name on ebb's own
// metrics (ebb_router_requests_total and the others), so a query can
// select the canary's series with revision="{{canary}}".
type Vars struct {
	// Canary and Stable are the revisions' names, {qualified}-NNNNN.
	Canary, Stable string
	// Function is the function's qualified name: bare in the default
	// namespace, {fn}.{ns} elsewhere, as ebb's metrics label it.
	Function string
	// Namespace is the function's namespace.
	Namespace string
	// Interval is the analysis interval, written as a Prometheus duration.
	Interval time.Duration
}

// maxShown bounds how much of a hostile query or variable name an error
// message repeats.
const maxShown = 64

// Expand returns query with each template variable ({{canary}},
// {{stable}}, {{function}}, {{namespace}}, {{interval}}, spaces allowed
// inside the braces as in {{ canary }}) replaced by its value.
//
// The names are inserted verbatim, not quote-escaped: they are revision,
// function and namespace names, which ebb validates as DNS labels (two
// joined by a dot outside the default namespace), so they cannot hold a
// quote or a backslash and read the same inside a PromQL string ("...")
// as outside. Expand refuses a value that holds one anyway, rather than
// let it end a string early. Match them with =, not =~, where a name's dot
// would match any character. {{interval}} is the interval
// rounded up to whole seconds, at least 1s, in Prometheus's duration
// syntax (10s, 1m30s), so it fits a range selector such as [{{interval}}].
//
// An unknown variable, a "{{" with no "}}" after it, or a variable with no
// value is an error naming it. Text outside "{{ }}" is kept as it is; a
// literal "{{" cannot be written.
func Expand(query string, vars Vars) (string, error) {
	var b strings.Builder
	rest := query
	for {
		open := strings.Index(rest, "{{")
		if open < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		b.WriteString(rest[:open])
		end := strings.Index(rest[open+2:], "}}")
		if end < 0 {
			return "", fmt.Errorf("expand query: %s has no closing }}", shorten(rest[open:]))
		}
		name := strings.Trim(rest[open+2:open+2+end], " \t")
		value, err := vars.value(name)
		if err != nil {
			return "", fmt.Errorf("expand query: %w", err)
		}
		b.WriteString(value)
		rest = rest[open+2+end+2:]
	}
}

// value is the text that replaces {{name}}.
func (v Vars) value(name string) (string, error) {
	var s string
	switch name {
	case "canary":
		s = v.Canary
	case "stable":
		s = v.Stable
	case "function":
		s = v.Function
	case "namespace":
		s = v.Namespace
	case "interval":
		return promDuration(v.Interval), nil
	default:
		return "", fmt.Errorf("unknown template variable %s (known: canary, stable, function, namespace, interval)", shorten(name))
	}
	if s == "" {
		return "", fmt.Errorf("template variable {{%s}} has no value", name)
	}
	if strings.ContainsAny(s, "\"'`\\\x00\n") {
		return "", fmt.Errorf("template variable {{%s}} is %s, which a name cannot be: it holds a quote, backslash, NUL or newline", name, shorten(s))
	}
	return s, nil
}

// promDuration is d rounded up to whole seconds, at least 1s, as
// Prometheus writes a duration: 10s, 1m30s, 1h. A range selector takes no
// fraction, and rounding up keeps the window at least the interval.
func promDuration(d time.Duration) string {
	return model.Duration(ceilSeconds(d)).String()
}

// ceilSeconds is d rounded up to whole seconds, at least 1s: Prometheus
// reads durations (ranges, a query's timeout) only in whole units.
func ceilSeconds(d time.Duration) time.Duration {
	d = max(d, time.Second)
	if r := d % time.Second; r != 0 {
		if d > math.MaxInt64-time.Second { // no overflow; the interval is at most 1h
			d -= r
		} else {
			d += time.Second - r
		}
	}
	return d
}

// shorten quotes s for an error message, cut to maxShown bytes.
func shorten(s string) string {
	if len(s) > maxShown {
		return fmt.Sprintf("%q…", s[:maxShown])
	}
	return fmt.Sprintf("%q", s)
}
