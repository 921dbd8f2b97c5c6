package api

import (
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strings"
)

// Labels follow Kubernetes' syntax, so that selectors written for
// kubectl read the same here. A key is an optional DNS-subdomain prefix
// and a slash, then a name of at most 63 characters; a value is at most
// 63 characters, possibly empty.
const (
	maxLabelName   = 63
	maxLabelPrefix = 253
	// MaxLabels bounds a function's labels: they are copied into every
	// listing and watch event.
	MaxLabels = 64
)

var (
	labelName   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)
	labelPrefix = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
)

// ValidateLabelKey checks one label key: [prefix/]name.
func ValidateLabelKey(key string) error {
	name := key
	if i := strings.IndexByte(key, '/'); i >= 0 {
		prefix := key[:i]
		name = key[i+1:]
		if prefix == "" || len(prefix) > maxLabelPrefix || !labelPrefix.MatchString(prefix) {
			return invalid("labels", "key %q: the prefix must be a DNS subdomain of at most %d characters", truncate(key), maxLabelPrefix)
		}
	}
	if name == "" || len(name) > maxLabelName || !labelName.MatchString(name) {
		return invalid("labels", "key %q: the name must be 1-%d characters of [A-Za-z0-9._-], beginning and ending with a letter or digit", truncate(key), maxLabelName)
	}
	return nil
}

// ValidateLabelValue checks one label value (empty is allowed).
func ValidateLabelValue(key, value string) error {
	if value == "" {
		return nil
	}
	if len(value) > maxLabelName || !labelName.MatchString(value) {
		return invalid("labels", "value %q of %q: must be at most %d characters of [A-Za-z0-9._-], beginning and ending with a letter or digit", truncate(value), truncate(key), maxLabelName)
	}
	return nil
}

// ValidateLabels checks a label set.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return invalid("labels", "%d labels, at most %d", len(labels), MaxLabels)
	}
	for _, k := range sortedKeys(labels) {
		if err := ValidateLabelKey(k); err != nil {
			return err
		}
		if err := ValidateLabelValue(k, labels[k]); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Selector is a parsed label selector: equality requirements, all of which
// must hold. The zero Selector matches everything.
type Selector struct {
	reqs map[string]string
}

// ParseSelector parses "app=x,tier=web" (also "app==x"). Only equality is
// supported; anything else is a ValidationError naming the requirement.
func ParseSelector(s string) (Selector, error) {
	sel := Selector{}
	if strings.TrimSpace(s) == "" {
		return sel, nil
	}
	sel.reqs = map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		key, value, ok := strings.Cut(part, "=")
		if !ok {
			return Selector{}, invalid("labelSelector", "%q is not key=value (only equality is supported)", truncate(part))
		}
		value = strings.TrimPrefix(value, "=") // "==" is equality too
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if strings.HasSuffix(key, "!") {
			return Selector{}, invalid("labelSelector", "%q: only equality is supported", truncate(part))
		}
		if err := ValidateLabelKey(key); err != nil {
			return Selector{}, invalid("labelSelector", "%s", strings.TrimPrefix(err.Error(), "labels: "))
		}
		if err := ValidateLabelValue(key, value); err != nil {
			return Selector{}, invalid("labelSelector", "%s", strings.TrimPrefix(err.Error(), "labels: "))
		}
		if prev, dup := sel.reqs[key]; dup && prev != value {
			return Selector{}, invalid("labelSelector", "%q is required to be both %q and %q", truncate(key), truncate(prev), truncate(value))
		}
		sel.reqs[key] = value
	}
	return sel, nil
}

// Empty reports whether the selector matches everything.
func (s Selector) Empty() bool { return len(s.reqs) == 0 }

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for k, v := range s.reqs {
		have, ok := labels[k]
		if !ok || have != v {
			return false
		}
	}
	return true
}

// String renders the selector in its canonical form: keys sorted.
func (s Selector) String() string {
	parts := make([]string, 0, len(s.reqs))
	for _, k := range sortedKeys(s.reqs) {
		parts = append(parts, fmt.Sprintf("%s=%s", k, s.reqs[k]))
	}
	return strings.Join(parts, ",")
}

// SelectorFromLabels is the selector requiring every label of m.
func SelectorFromLabels(m map[string]string) Selector {
	if len(m) == 0 {
		return Selector{}
	}
	return Selector{reqs: maps.Clone(m)}
}

// RevisionSpec returns what a revision records of the spec, which is also
// what decides whether a change needs a new revision: everything but the
// function's metadata, its labels and its rollout policy (how the next
// revision earns its traffic is not part of what any revision runs).
func (s FunctionSpec) RevisionSpec() FunctionSpec {
	s.Labels = nil
	s.Rollout = nil
	return s
}
