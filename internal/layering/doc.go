// Package layering holds no code, only the test that keeps ebb's package
// graph in the shape docs/architecture.md draws: components (router,
// activator, autoscaler, nodeagent, controlplane) never import one another,
// and the shared packages below them (api, store, bpf, internal/...) import
// no component. Components meet through the store and through small
// interfaces each declares for what it calls; cmd/ebbd is the only place
// that holds them all.
package layering
