// Package bpf loads and drives ebb's eBPF programs: sockmap redirection of
// ebb's own loopback TCP connections, function VIPs rewritten at connect(),
// and wake-on-connect events for functions at zero.
//
// The C source is ebb.c; bpf2go turns it into ebb_bpfel.go and ebb_bpfel.o,
// which are committed so that building needs no clang (see gen.go). The Go API
// is Load, which returns a *Loader, plus Probe to ask up front whether the
// machine allows it. The node agent owns the Loader: it allow-lists the
// router's and replicas' ports, publishes each function's VIP and backends,
// points cold VIPs at the activator, and reads wake events to start tasks.
//
// This package must not log, keep global state, or know about the store or
// any other ebb component: it takes options and returns errors, like
// cilium/ebpf does, so that its caller decides what to report and whether to
// fall back to the userspace path.
package bpf
