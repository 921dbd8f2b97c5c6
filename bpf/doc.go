// Package bpf loads and drives ebb's eBPF programs: sockmap redirection of
// ebb's own loopback TCP connections, function VIPs rewritten at connect(),
// wake-on-connect events for functions at zero, and per-port accounting of
// the requests that redirection and VIPs hide from everything else.
//
// The C source is ebb.c; bpf2go turns it into ebb_bpfel.go and ebb_bpfel.o,
// which are committed so that building needs no clang (see gen.go, and
// TestGeneratedObjectsMatchSources, which checks them whenever clang is
// present).
//
// # Use
//
// The node agent owns one Loader:
//
//	l, err := bpf.Load(bpf.Options{}) // attaches at the cgroup2 root
//	if err != nil {
//		log.Info("eBPF off, using the userspace path", "reason", err)
//		status = bpf.OffStatus(err)
//	} else {
//		defer l.Close()
//		status = l.Status()
//	}
//
// and then, as state changes:
//   - AllowPort for the router's listener and each replica's port,
//     DisallowPort when a replica goes away;
//   - TrackPort for each replica's port, so that its requests are accounted
//     (PortLoads, OpenRequests), UntrackPort when it goes away;
//   - SetVIP for each function with its ready replicas and weights (none when
//     it is at zero), DeleteVIP when the function is deleted;
//   - SetFallback to the activator's local listener, and
//     SetReplicaFallback to the listener replicas reach on the node bridge;
//   - AddReplicaNetns for each replica's network namespace (by its
//     SO_NETNS_COOKIE), RemoveReplicaNetns when the replica goes away;
//   - RunWakeEvents in its own goroutine, starting a pre-created task for
//     WakeEvent.FunctionID.
//
// The fallback listeners call FallbackOrigin with an accepted connection's
// remote address to learn which VIP, and so which function, the client
// dialed.
//
// # Limits
//
// Redirected data goes straight into the peer socket's queue, which
// read(2) and recvmsg(2) see but splice(2) does not: a process that splices
// from a redirected socket waits forever. Go does that for io.Copy between
// two *net.TCPConn (TCPConn.ReadFrom); fasthttp, net/http and the usual HTTP
// servers and clients do not. Only allow-list ports whose readers do not
// splice. sendfile(2) on a redirected socket is fine.
//
// A socket leaving the socket map loses redirected data it has not read yet
// (the kernel frees that queue). Sockets leave when they close, which is
// harmless, and when the Loader closes: Close first switches every send back
// to TCP and waits Options.CloseGrace so that receivers catch up. The same
// holds if ebbd dies, without the grace.
//
// Only sockets in the loader's network namespace and in registered replica
// namespaces are touched: a container with a network of its own keeps plain
// TCP and its own VIP-range addresses. In a replica's namespace only sockets
// on its own (non-loopback) address are: loopback 4-tuples repeat across
// namespaces, and one namespace's socket must never find another's as its
// peer. The socket map is keyed by 4-tuple, so a connection from the host to
// a replica's address is redirected across the two namespaces. A replica's
// VIP connect always goes to the replica fallback: replicas do not reach one
// another directly.
//
// VIPs are IPv4 and TCP only; connect() from an AF_INET6 socket to a
// v4-mapped VIP is not rewritten.
//
// This package must not log, keep global state, or know about the store or
// any other ebb component: it takes options and returns errors, like
// cilium/ebpf does, so that its caller decides what to report and whether to
// fall back to the userspace path.
package bpf
