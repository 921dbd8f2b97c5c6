// Package dataplanetest holds the in-process tests of the data plane as
// ebbd's "all" role wires it: one router and one activator sharing a replica
// registry and transport over a real store. It has no code of its own; it
// exists because router and activator must not import each other, so their
// joint behaviour (hard limits across the direct and the release path, cold
// starts through both) is tested here.
package dataplanetest
