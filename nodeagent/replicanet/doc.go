// Package replicanet gives each replica of a node its own network namespace,
// reachable at an address of its own on a node bridge, behind a default-deny
// nftables policy. The node agent prepares a replica's network in the pool,
// right after allocating its port, so that a cold start from the pool does no
// network setup.
//
// # Shape
//
// One Linux bridge per node (ebb0 by default) holds the gateway address
// (CIDR base + 1). A replica's netns is a file under Config.NetnsDir (a
// bind mount of the namespace, as `ip netns` makes them) with a veth pair:
// eth0 inside, at Addr(port) = CIDR base + 2 + (port - PortMin), and the
// host end ebXXXXXXXXXXXX (12 hex digits of a hash of the replica id) on the
// bridge. The replica's port record is its address lease: there is no IPAM.
//
// # Why a veth and an address per replica
//
// The other way, dialling each replica's loopback from a thread that setns'd
// into its namespace and pooling those connections, needs no address but
// cannot be expressed as an address: the router, activator and prober would
// each need a setns dialler, the eBPF connect4 hook that rewrites a VIP to a
// backend can only rewrite to an address:port that a socket in the host netns
// reaches, and a router on another node could never reach the replica. A
// routable address per replica keeps every dialler unchanged (they dial
// Addr(port):port) and keeps sockmap redirection keyed by 4-tuple working.
// Egress needs a path anyway, and the veth gives it one (masqueraded).
//
// # Why bridge port isolation and nftables
//
// Replica to replica traffic never touches the host's IP layer when both are
// on the same L2 segment, so the bridge ports are isolated
// (IFLA_BRPORT_ISOLATED): an isolated port talks only to the bridge itself,
// for every protocol (IPv4, ARP, IPv6 link-local). The host side is filtered
// by one nftables table, inet "ebb-<bridge>": from the bridge only
// established traffic and TCP to the gateway on the offered ports (router,
// replica fallback) may enter the host; nothing from outside may open a
// connection into the bridge; egress is masqueraded. eBPF cgroup hooks could
// filter too, but only for sockets in cgroups we attach to, and not ARP or
// forwarded packets; nftables sees every packet at the host's hooks.
//
// The table is written with github.com/google/nftables (pure Go netlink, no
// nft binary needed) in one batch that deletes the old table and adds the new,
// so the policy is replaced atomically and never half there. Links, addresses
// and routes go through github.com/vishvananda/netlink, the library that
// Docker's libnetwork, the CNI plugins and containerd use.
//
// # Publishing at the node's address
//
// A replica's address is private to its node: every node may use the same
// CIDR, and nothing from outside may open a connection into the bridge. So
// when Config.PublishIP is set (the node's --host-ip, if not loopback) each
// replica is also published at PublishIP:port, its port being its address
// lease: a map "published" in the table (TCP port -> replica address) holds
// one element per prepared replica, added by Prepare, removed by Release.
// A restarting agent's Setup keeps the elements the kernel holds, so other
// hosts keep reaching the replicas it will adopt; Adopt then publishes each
// kept replica from its namespace's eth0 address and drops the rest. Prerouting
// (from anywhere but the bridge) and output (the node's own router and
// prober) DNAT PublishIP:port through the map; the forward chain admits
// connections from outside the bridge that were DNATed, and nothing else
// new. A replica's own packets to PublishIP are not translated and meet
// the input chain's drop, and the forward chain drops a replica's new
// connections to replica ports (PortMin-PortMax) on other hosts, so
// publishing opens no path between replicas, on one node or across nodes
// (replicas call functions through a router or the VIP fallback). The cost:
// a replica cannot call an outside service that listens in that range.
// A port without an element is not translated, so a dial to it is refused
// at once rather than timing out. On one machine (PublishIP unset) nothing
// of this exists and routers dial replica addresses directly.
//
// # Costs
//
// Prepare takes about 2 ms on a 2-core VM (BenchmarkPrepare, 1.7-2.2): 0.5 ms for
// the namespace, 0.9 ms for the veth on the bridge, 0.6 ms inside (sysctls,
// address, route, cookie) and 0.4 ms waiting for the kernel to bring the
// carrier up, which it does asynchronously: returning earlier would lose the
// first ARP request or SYN and cost a one-second retransmission. It runs in
// the pool, so only a pool miss pays it. Release costs about 30 ms, nearly
// all of it the kernel waiting for RCU grace periods while unregistering the
// veth; it is off the request path, and Teardown and Adopt release
// concurrently.
//
// # What it must not do
//
// It never touches an interface, address or route other than its bridge,
// its veths and what is inside the namespaces it created; Setup refuses a
// CIDR that overlaps a route of another interface. It owns Config.NetnsDir:
// two Nets must not share one. It does not start anything inside a
// namespace: the container runtime joins the netns path Prepare returns.
package replicanet
