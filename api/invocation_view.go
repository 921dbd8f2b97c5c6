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
