package api

// Public is inv as the API and callbacks show it: Function is the bare
// name and Namespace its namespace, where inside ebb Function is the
// qualified name.
func (inv Invocation) Public() Invocation {
	if inv.Namespace == "" {
		inv.Namespace, inv.Function = SplitQualifiedName(inv.Function)
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
