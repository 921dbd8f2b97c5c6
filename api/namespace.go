package api

import "strings"

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

