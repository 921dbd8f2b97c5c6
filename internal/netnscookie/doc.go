// Package netnscookie reads the cookie of a network namespace: the number
// by which eBPF programs (bpf_get_netns_cookie) tell namespaces apart. The
// eBPF loader records the host's, and the replica network registers each
// replica's, so that the programs touch only sockets of namespaces ebb
// knows.
package netnscookie
