package api

import "strings"

// Public is inv as the API and callbacks show it: Function is the bare
// name and Namespace its namespace, where inside ebb Function is the
// qualified name.
func (inv Invocation) Public() Invocation {
	switch {
	case strings.Contains(inv.Function, "."):
		inv.Namespace, inv.Function = SplitQualifiedName(inv.Function)
	case inv.Namespace == "":
		inv.Namespace = DefaultNamespace
	}
	return inv
}

// Brief is Public without the request's and the result's bodies (up to
// 1 MiB each): what a list and a submission's answer show. GET of the one
// invocation shows them.
func (inv Invocation) Brief() Invocation {
	inv = inv.Public()
	inv.Request.Body = nil
	if inv.Result != nil {
		r := *inv.Result
		r.Body = nil
		inv.Result = &r
	}
	return inv
}
