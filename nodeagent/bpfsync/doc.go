// Package bpfsync drives a node's eBPF programs (package bpf) from the
// store, so that ebb's own loopback traffic skips the TCP stack and
// processes on the node reach functions through stable virtual addresses.
//
// The Syncer follows the store caches of functions/, endpoints/, vips/ and
// ports/{node}/ (shared with the rest of the process when ebbd hands them
// over) and keeps the loader's maps equal to them:
//   - the router's port and every replica port of this node are
//     allow-listed for socket redirection, and leave the list with the
//     replica;
//   - every function gets a VIP, allocated once (the lowest free index of
//     the range, claimed with a compare-and-swap so that nodes racing for
//     it agree) and freed when the function is deleted;
//   - each VIP's backends are the ready replicas of the function's routed
//     revisions, weighted by the revision's traffic percent shared among
//     its replicas; none when the function is at zero, so connects go to
//     the fallback listener and raise a wake event.
//
// Replica ports are also tracked for request accounting. Every
// Config.StatsInterval the Syncer reads the programs' per-port load, maps
// ports to revisions through this node's endpoints, and reports the VIP
// requests and request-time as RevisionStats to Deps.Stats (the
// autoscaler), which no router could: those requests skip every router.
//
// Wake events become activations of the function's routed revision (picked
// by weight), at once and off the ring-buffer reader's goroutine; several
// events for one revision in flight fold into one call.
//
// The Fallback is the listener cold VIP connects land on: it learns from
// the loader which function the client dialed (once per connection, when
// it accepts it) and serves the request with that function's traffic split
// through the router, which hands it to the activator until a replica is
// ready. It closes each such connection after its response, so the
// client's next connect goes straight to the replica. With
// FallbackConfig.ReplicaAddr it also listens where replicas in network
// namespaces of their own reach the host (the node bridge's gateway): the
// programs send every VIP connect of a replica there, warm or cold, since
// replicas never reach one another directly. Those connections are kept
// alive, and go through the router's limits and tenancy like any other.
// Run tells the loader both addresses.
//
// Endpoint addresses are used as they are: 127.0.0.1 without isolation, a
// replica's own address in the node's replica CIDR with it. Another node's
// endpoint in this node's Config.ReplicaCIDR is no backend here.
//
// This package must not import the router, activator, autoscaler or
// control plane: it reaches them through the small interfaces declared
// here. It must not decide scale or start replicas itself, only ask.
package bpfsync
