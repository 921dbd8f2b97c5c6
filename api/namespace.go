package api

import (
	"strings"
	"time"
)

// DefaultNamespace is the namespace that exists from the start. Its
// functions keep their bare names inside ebb and at {fn}.{domain}, so the
// URLs and stored state from before namespaces still work.
const DefaultNamespace = "default"

// maxQualifiedName bounds a function's qualified name: replica ids are
// {qualified}-{NNNNN}-{xxxxx} and containerd refuses ids over 76
// characters, which leaves 63, a DNS label's length.
const maxQualifiedName = 63

// QualifiedName is how every component below the API knows a function:
// its bare name in the default namespace, else {fn}.{ns}. Function and
// namespace names are DNS labels, so the dot cannot occur in either, the
// two forms never collide, and the router's host for a function,
// {qualified}.{domain}, is the {fn}.{ns}.{domain} users are given. Store
// keys, revision names ({qualified}-NNNNN), replica ids and metrics all
// carry it unchanged.
func QualifiedName(namespace, function string) string {
	if namespace == "" || namespace == DefaultNamespace {
		return function
	}
	return function + "." + namespace
}

// SplitQualifiedName is QualifiedName's inverse: "hello" is hello in
// default, "hello.team-a" is hello in team-a.
func SplitQualifiedName(qualified string) (namespace, function string) {
	if fn, ns, ok := strings.Cut(qualified, "."); ok {
		return ns, fn
	}
	return DefaultNamespace, qualified
}

// ValidateQualified checks a namespace and function name pair: each a DNS
// label, and the qualified name short enough for the replica ids made
// from it.
func ValidateQualified(namespace, function string) error {
	if err := ValidateName("namespace", namespace); err != nil {
		return err
	}
	if err := ValidateName("name", function); err != nil {
		return err
	}
	if q := QualifiedName(namespace, function); len(q) > maxQualifiedName {
		return invalid("name", "%q in namespace %q is too long: the function's and the namespace's names together may have at most %d characters",
			function, namespace, maxQualifiedName-1)
	}
	return nil
}

// maxDerivedName bounds a name made from a qualified name, such as a
// revision ({qualified}-NNNNN): the qualified name's bound plus the
// suffix.
const maxDerivedName = maxQualifiedName + len("-00000")

// ValidateQualifiedName checks a name as components below the API see it:
// a function's qualified name, or a name derived from one such as a
// revision's. It is one DNS label, or two joined by one dot (the
// function's, then the namespace's), so it can never hold '/' or "..".
func ValidateQualifiedName(field, name string) error {
	if len(name) > maxDerivedName {
		return invalid(field, "%q is longer than %d characters", truncate(name), maxDerivedName)
	}
	fn, ns, namespaced := strings.Cut(name, ".")
	if err := ValidateName(field, fn); err != nil {
		return err
	}
	if namespaced {
		if err := ValidateName(field, ns); err != nil {
			return invalid(field, "%q must be a DNS label, or two joined by one dot", truncate(name))
		}
	}
	return nil
}

// Namespace is the API's view of a namespace.
type Namespace struct {
	Name string `json:"name"`
	// Functions counts the functions that live in the namespace.
	Functions int `json:"functions"`
	// Deleting is set once a delete has begun: no function may be created
	// in the namespace any more, and a repeated delete finishes the job.
	Deleting bool `json:"deleting,omitempty"`
	// Quota caps what the namespace may hold; zero caps nothing.
	Quota     Quota     `json:"quota,omitzero"`
	CreatedAt time.Time `json:"createdAt,omitzero"`
	// ResourceVersion is the store revision of the namespace record's last
	// write; empty for default while it has no record. Send it back as
	// If-Match.
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// NamespaceSpec is the body of PUT /v1/namespaces/{ns}: what a namespace
// is created with. Creating one that exists changes nothing; its quota is
// changed at PUT /v1/namespaces/{ns}/quota.
type NamespaceSpec struct {
	Quota Quota `json:"quota,omitzero"`
}

// NamespaceList is the body of GET /v1/namespaces.
type NamespaceList struct {
	Namespaces []Namespace `json:"namespaces"`
	// Continue is set when more remain: pass it as ?continue= for the next page.
	Continue string `json:"continue,omitempty"`
}
