//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// ebb's eBPF programs. Two independent features share one object so that they
// load and unload together:
//
//  * Socket redirection (sockops + sk_msg): established TCP sockets whose local
//    or remote port is allow-listed go into a SOCKHASH keyed by their 4-tuple,
//    and every send on them is redirected straight into the peer socket's
//    receive queue, skipping the loopback TCP stack.
//
//  * Function VIPs (cgroup/connect4 + cgroup/getpeername4): connect() to a
//    function's virtual address is rewritten to one of its ready backends, or,
//    when the function has none, to the activator's listener together with a
//    ring-buffer "wake" event. A replica's connect (from a registered
//    replica network namespace) always goes to the replica fallback listener
//    instead, since replicas cannot reach one another. getpeername() shows
//    the VIP back.
//
//  * Request accounting (sockops + sk_msg): connections to a tracked port (a
//    replica's) are followed as flows. A client's send on an idle flow opens
//    a request; the replica's first send back closes it. Per port this
//    counts open requests from any client, which is what draining waits for,
//    and the requests and request-time that came through a VIP, which is the
//    load the autoscaler cannot see in any router.
//
// The Go loader in this directory fills the maps; see loader.go.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

// Slots per VIP. The loader fills every slot, each with one backend, in
// proportion to the backends' weights; connect picks a slot at random.
#define VIP_SLOTS 100

char __license[] SEC("license") = "Dual MIT/GPL";

// Set by the loader before loading: the VIP range, both in network byte order.
// vip_mask == 0 would match every address, so the loader never leaves it 0.
volatile const __u32 vip_net = 0;
volatile const __u32 vip_mask = 0xffffffff;
// The network namespace the loader runs in (its SO_NETNS_COOKIE). Only
// sockets in it, and in the replica namespaces registered in replica_netns,
// are touched: the same 4-tuple or VIP means something else in another
// namespace. 0 turns the check off.
volatile const __u64 netns_cookie = 0;

enum stat {
	STAT_SOCK_INSERTED,
	STAT_SOCK_INSERT_FAILED,
	STAT_MSG_REDIRECTED,
	STAT_MSG_REDIRECTED_BYTES,
	STAT_MSG_PASSED,
	STAT_MSG_LATCHED_PLAIN,
	STAT_CONNECT_BACKEND,
	STAT_CONNECT_FALLBACK,
	STAT_CONNECT_NO_FALLBACK,
	STAT_CONNECT_UNKNOWN_VIP,
	STAT_WAKE_EMITTED,
	STAT_WAKE_DROPPED,
	STAT_PEERNAME_REWRITTEN,
	STAT_FLOW_TRACKED,
	STAT_FLOW_TRACK_FAILED,
	STAT_CONNECT_REPLICA_FALLBACK,
	STAT_MAX,
};

// IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d) so that an AF_INET
// client and an AF_INET6 dual-stack server produce matching keys.
struct sock_key {
	__u32 local_ip[4];  // network byte order
	__u32 remote_ip[4]; // network byte order
	__u32 local_port;   // host byte order
	__u32 remote_port;  // host byte order
};

// addr in network byte order, port in host byte order.
struct addr4 {
	__u32 addr;
	__u16 port;
	__u16 _pad;
};

struct vip_info {
	__u32 function_id;
	__u32 _pad;
};

enum sock_flag {
	SOCK_VIA_BACKEND = 1,
	SOCK_VIA_FALLBACK = 2,
	// Set once a send on this socket went through plain TCP; see ebb_sk_msg.
	SOCK_PLAIN = 4,
	// The client end of a tracked flow: its sends open requests.
	SOCK_FLOW_CLIENT = 8,
	// The replica end of a tracked flow: its sends answer them.
	SOCK_FLOW_SERVER = 16,
};

// Per-socket state, freed by the kernel together with the socket.
struct sock_info {
	struct addr4 vip;    // what the application connected to
	struct addr4 target; // what it was rewritten to
	__u32 function_id;
	__u32 flags; // enum sock_flag
};

// The connection from a client to the activator's listener, keyed by the
// client's address as the activator sees it.
struct fallback_conn {
	struct addr4 vip;
	__u32 function_id;
	__u32 _pad;
};

struct wake_event {
	__u64 ktime_ns; // bpf_ktime_get_ns, CLOCK_MONOTONIC
	__u64 cookie;   // socket cookie of the connecting socket
	__u32 function_id;
	__u32 pid; // thread group id of the connecting process
	struct addr4 vip;
};

// A connection to a tracked port, named so that both ends can find it: the
// client's address (network byte order) and port, and the tracked port.
struct flow_key {
	__u32 client_addr;
	__u16 client_port;
	__u16 port;
};

enum flow_flag {
	FLOW_VIA_VIP = 1, // the client dialed a VIP and connect4 chose the replica
};

struct flow {
	__u64 start_ns; // when the open request's first byte was sent; 0 when idle
	__u64 epoch;    // the port_load epoch start_ns was counted in
	__u32 flags;    // enum flow_flag
	__u32 _pad;
};

// Load on one tracked port since the loader started tracking it. The open
// request-time of VIP requests at time t is vip_open * t - vip_open_start_ns,
// so a reader gets request-time up to the moment it reads without the
// programs ever walking the open flows.
struct port_load {
	__u64 epoch;             // set by the loader each time it tracks the port
	__u64 tracked_ns;        // when it did, in bpf_ktime_get_ns time
	__u64 open;              // requests sent and not yet answered, any client
	__u64 vip_requests;      // requests that came through a VIP
	__u64 vip_busy_ns;       // request-time of answered VIP requests
	__u64 vip_open;          // VIP requests not yet answered
	__u64 vip_open_start_ns; // sum of their start times
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_key);
	__type(value, __u64);
} sock_map SEC(".maps");

// Ports (host byte order) whose connections are redirected.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} allowed_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// Every VIP the loader knows, hot or cold.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct addr4);
	__type(value, struct vip_info);
} vips SEC(".maps");

struct backend_slots {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIP_SLOTS);
	__type(key, __u32);
	__type(value, struct addr4);
};

// Backends of hot VIPs. The loader replaces a VIP's whole slot array with one
// map update, so connect never sees a half-written set; an absent entry means
// the function has no ready backend.
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 16384);
	__type(key, struct addr4);
	__array(values, struct backend_slots);
} vip_backends SEC(".maps");

enum fallback_slot {
	// The fallback listener host processes' cold connects go to: a
	// loopback address.
	FALLBACK_HOST,
	// The one replicas' VIP connects go to, warm or cold: an address on
	// the node bridge that replicas can reach (the gateway).
	FALLBACK_REPLICA,
	FALLBACK_SLOTS,
};

// The fallback listeners, by enum fallback_slot; addr 0 means none.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FALLBACK_SLOTS);
	__type(key, __u32);
	__type(value, struct addr4);
} fallback SEC(".maps");

// Network namespaces of the node's replicas (netns cookie → 1), filled by
// the loader: their sockets count as the loader's own, so that connections
// between the host and a replica's address are redirected and accounted,
// and their VIP connects are sent to the replica fallback.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u8);
} replica_netns SEC(".maps");

// Set by the loader while it closes: sends stop being redirected, so that
// the receivers can drain what was before the sockets leave the map.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} draining SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_info);
} sock_infos SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct addr4);
	__type(value, struct fallback_conn);
} fallback_conns SEC(".maps");

// Ports whose requests are accounted: the replicas'. The loader adds and
// removes entries; the programs only update them.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct port_load);
} port_loads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key);
	__type(value, struct flow);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} wake_events SEC(".maps");

// Referenced only so that their types reach BTF and bpf2go generates the Go
// counterparts the loader uses.
const enum stat *unused_stat __attribute__((unused));
const struct wake_event *unused_wake_event __attribute__((unused));
const struct fallback_conn *unused_fallback_conn __attribute__((unused));
const struct port_load *unused_port_load __attribute__((unused));
const enum fallback_slot *unused_fallback_slot __attribute__((unused));

static __always_inline void count(__u32 stat, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &stat);
	// Atomic because a program can be preempted on its CPU by another run.
	if (v)
		__sync_fetch_and_add(v, n);
}

enum netns_kind {
	NETNS_FOREIGN, // someone else's: left alone
	NETNS_HOST,    // the loader's
	NETNS_REPLICA, // a registered replica's
};

// which_netns tells whose network namespace the socket of ctx lives in.
static __always_inline int which_netns(void *ctx)
{
	if (!netns_cookie)
		return NETNS_HOST;
	__u64 cookie = bpf_get_netns_cookie(ctx);
	if (cookie == netns_cookie)
		return NETNS_HOST;
	if (bpf_map_lookup_elem(&replica_netns, &cookie))
		return NETNS_REPLICA;
	return NETNS_FOREIGN;
}

static __always_inline int is_loopback4(__u32 ip4)
{
	return (bpf_ntohl(ip4) >> 24) == 127;
}

static __always_inline int port_allowed(__u32 port)
{
	return bpf_map_lookup_elem(&allowed_ports, &port) != NULL;
}

static __always_inline void mapped4(__u32 ip[4], __u32 ip4)
{
	ip[0] = 0;
	ip[1] = 0;
	ip[2] = bpf_htonl(0x0000ffff);
	ip[3] = ip4;
}

// ipv4_mapped is the IPv4 address inside an IPv4-mapped IPv6 address (all
// words in network byte order), or 0 if it is not one.
static __always_inline __u32 ipv4_mapped(__u32 w0, __u32 w1, __u32 w2, __u32 w3)
{
	if (w0 || w1 || w2 != bpf_htonl(0x0000ffff))
		return 0;
	return w3;
}

// open_request starts a request on an idle flow; a send on a flow already
// carrying one (a body sent in parts) changes nothing.
static __always_inline void open_request(struct flow *f, __u32 port)
{
	if (f->start_ns)
		return;
	struct port_load *pl = bpf_map_lookup_elem(&port_loads, &port);
	if (!pl)
		return;
	__u64 now = bpf_ktime_get_ns();
	f->start_ns = now;
	f->epoch = pl->epoch;
	__sync_fetch_and_add(&pl->open, 1);
	if (f->flags & FLOW_VIA_VIP) {
		__sync_fetch_and_add(&pl->vip_requests, 1);
		__sync_fetch_and_add(&pl->vip_open, 1);
		__sync_fetch_and_add(&pl->vip_open_start_ns, now);
	}
}

// close_request ends the flow's open request, if any: the replica answered,
// or the connection closed.
static __always_inline void close_request(struct flow *f, __u32 port)
{
	__u64 start = f->start_ns;
	if (!start)
		return;
	f->start_ns = 0;
	struct port_load *pl = bpf_map_lookup_elem(&port_loads, &port);
	// A port tracked again since the request opened has fresh counters
	// that never counted it.
	if (!pl || pl->epoch != f->epoch)
		return;
	__sync_fetch_and_add(&pl->open, -1);
	if (f->flags & FLOW_VIA_VIP) {
		__sync_fetch_and_add(&pl->vip_busy_ns, bpf_ktime_get_ns() - start);
		__sync_fetch_and_add(&pl->vip_open, -1);
		__sync_fetch_and_add(&pl->vip_open_start_ns, -start);
	}
}

// track_client starts following a new client connection to a tracked port.
static __always_inline void track_client(struct bpf_sock_ops *skops, __u32 local4, __u32 lport, __u32 rport)
{
	if (!bpf_map_lookup_elem(&port_loads, &rport))
		return;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return;
	struct sock_info *si = bpf_sk_storage_get(&sock_infos, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!si) {
		count(STAT_FLOW_TRACK_FAILED, 1);
		return;
	}
	struct flow_key key = {.client_addr = local4, .client_port = (__u16)lport, .port = (__u16)rport};
	struct flow f = {};
	if (si->flags & SOCK_VIA_BACKEND)
		f.flags = FLOW_VIA_VIP;
	if (bpf_map_update_elem(&flows, &key, &f, BPF_ANY)) {
		count(STAT_FLOW_TRACK_FAILED, 1);
		return;
	}
	si->flags |= SOCK_FLOW_CLIENT;
	// The close of the connection ends a request left open.
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	count(STAT_FLOW_TRACKED, 1);
}

// track_server marks the replica's end of a flow its client started, so
// that the replica's sends answer the flow's requests. The client's
// ACTIVE_ESTABLISHED runs before the replica's PASSIVE_ESTABLISHED: the
// client sends the handshake's last ACK only after its own callback.
static __always_inline void track_server(struct bpf_sock_ops *skops, __u32 peer4, __u32 lport, __u32 rport)
{
	if (!peer4 || !bpf_map_lookup_elem(&port_loads, &lport))
		return;
	struct flow_key key = {.client_addr = peer4, .client_port = (__u16)rport, .port = (__u16)lport};
	if (!bpf_map_lookup_elem(&flows, &key))
		return;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return;
	struct sock_info *si = bpf_sk_storage_get(&sock_infos, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (si)
		si->flags |= SOCK_FLOW_SERVER;
}

// untrack_client ends a client connection's flow when it closes (or the
// replica closed its end): a request still open will get no answer.
static __always_inline void untrack_client(struct bpf_sock_ops *skops)
{
	__u32 newstate = skops->args[1];
	if (newstate != BPF_TCP_CLOSE && newstate != BPF_TCP_CLOSE_WAIT)
		return;
	if (skops->family != AF_INET)
		return;
	struct flow_key key = {
		.client_addr = skops->local_ip4,
		.client_port = (__u16)skops->local_port,
		.port = (__u16)bpf_ntohl(skops->remote_port),
	};
	struct flow *f = bpf_map_lookup_elem(&flows, &key);
	if (!f)
		return;
	close_request(f, key.port);
	if (newstate == BPF_TCP_CLOSE)
		bpf_map_delete_elem(&flows, &key);
}

SEC("sockops")
int ebb_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	if (op == BPF_SOCK_OPS_STATE_CB) {
		untrack_client(skops);
		return 1;
	}
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	int netns = which_netns(skops);
	if (netns == NETNS_FOREIGN)
		return 1;

	__u32 family = skops->family;
	if (family != AF_INET && family != AF_INET6)
		return 1;

	// Read the IPv4 fields up front: left inside a branch, clang merges
	// them with the IPv6 reads into one load through a computed context
	// pointer, which the verifier rejects.
	__u32 local4 = skops->local_ip4;
	__u32 remote4 = skops->remote_ip4;
	barrier_var(local4);
	barrier_var(remote4);

	struct sock_key key = {};
	if (family == AF_INET) {
		mapped4(key.local_ip, local4);
		mapped4(key.remote_ip, remote4);
	} else {
		key.local_ip[0] = skops->local_ip6[0];
		key.local_ip[1] = skops->local_ip6[1];
		key.local_ip[2] = skops->local_ip6[2];
		key.local_ip[3] = skops->local_ip6[3];
		key.remote_ip[0] = skops->remote_ip6[0];
		key.remote_ip[1] = skops->remote_ip6[1];
		key.remote_ip[2] = skops->remote_ip6[2];
		key.remote_ip[3] = skops->remote_ip6[3];
	}

	// Inside a replica's namespace only its own address is unique on the
	// node: its loopback 4-tuples (the replica calling itself) can equal
	// the host's or another replica's, and must never share their map
	// entries. IPv6 is off there but for a dual-stack listener's
	// IPv4-mapped addresses.
	if (netns == NETNS_REPLICA) {
		__u32 l4 = ipv4_mapped(key.local_ip[0], key.local_ip[1], key.local_ip[2], key.local_ip[3]);
		if (!l4 || is_loopback4(l4))
			return 1;
	}

	// Remember which client connection a fallback listener is about to
	// accept, so it can ask which VIP (and so which function) the client
	// dialed. A client in a replica's namespace is keyed by the replica's
	// address, which is how the listener on the bridge sees it.
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && family == AF_INET) {
		struct bpf_sock *sk = skops->sk;
		if (sk) {
			struct sock_info *si = bpf_sk_storage_get(&sock_infos, sk, 0, 0);
			if (si && (si->flags & SOCK_VIA_FALLBACK)) {
				struct addr4 client = {
					.addr = local4,
					.port = (__u16)skops->local_port,
				};
				struct fallback_conn fc = {
					.vip = si->vip,
					.function_id = si->function_id,
				};
				bpf_map_update_elem(&fallback_conns, &client, &fc, BPF_ANY);
			}
		}
	}

	__u32 lport = skops->local_port;
	__u32 rport = bpf_ntohl(skops->remote_port);
	if (!port_allowed(lport) && !port_allowed(rport))
		return 1;
	key.local_port = lport;
	key.remote_port = rport;

	if (bpf_sock_hash_update(skops, &sock_map, &key, BPF_ANY) == 0)
		count(STAT_SOCK_INSERTED, 1);
	else
		count(STAT_SOCK_INSERT_FAILED, 1);

	// Flows are IPv4 on the client's side, as VIPs and replica endpoints
	// are; a dual-stack replica sees its clients IPv4-mapped.
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		if (family == AF_INET)
			track_client(skops, local4, lport, rport);
	} else if (family == AF_INET) {
		track_server(skops, remote4, lport, rport);
	} else {
		track_server(skops, ipv4_mapped(key.remote_ip[0], key.remote_ip[1], key.remote_ip[2], key.remote_ip[3]), lport, rport);
	}
	return 1;
}

// account_send opens or answers a request on a tracked flow.
static __always_inline void account_send(struct sk_msg_md *msg, __u32 flags)
{
	// See ebb_sockops for why the IPv4 fields are read first.
	__u32 local4 = msg->local_ip4;
	__u32 remote4 = msg->remote_ip4;
	barrier_var(local4);
	barrier_var(remote4);
	__u32 lport = msg->local_port;
	__u32 rport = bpf_ntohl(msg->remote_port);

	struct flow_key key = {};
	if (flags & SOCK_FLOW_CLIENT) {
		key.client_addr = local4;
		key.client_port = (__u16)lport;
		key.port = (__u16)rport;
	} else if (msg->family == AF_INET) {
		key.client_addr = remote4;
		key.client_port = (__u16)rport;
		key.port = (__u16)lport;
	} else {
		key.client_addr = ipv4_mapped(msg->remote_ip6[0], msg->remote_ip6[1], msg->remote_ip6[2], msg->remote_ip6[3]);
		key.client_port = (__u16)rport;
		key.port = (__u16)lport;
	}
	struct flow *f = bpf_map_lookup_elem(&flows, &key);
	if (!f)
		return;
	if (flags & SOCK_FLOW_CLIENT)
		open_request(f, key.port);
	else
		close_request(f, key.port);
}

SEC("sk_msg")
int ebb_sk_msg(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;

	// Once a socket has sent anything through plain TCP it must keep doing
	// so: the peer reads redirected data before data still queued in TCP,
	// so mixing the two paths could reorder the stream.
	if (sk) {
		struct sock_info *si = bpf_sk_storage_get(&sock_infos, sk, 0, 0);
		if (si && (si->flags & (SOCK_FLOW_CLIENT | SOCK_FLOW_SERVER)))
			account_send(msg, si->flags);
		if (si && (si->flags & SOCK_PLAIN)) {
			count(STAT_MSG_PASSED, 1);
			return SK_PASS;
		}
	}

	// Plain TCP data is read after the redirected data already queued, so
	// switching every socket to TCP at once keeps each stream in order.
	__u32 zero = 0;
	__u32 *drain = bpf_map_lookup_elem(&draining, &zero);
	if (drain && *drain) {
		count(STAT_MSG_PASSED, 1);
		return SK_PASS;
	}

	// The peer's key is ours with local and remote swapped.
	// See ebb_sockops for why the IPv4 fields are read first.
	__u32 family = msg->family;
	__u32 local4 = msg->local_ip4;
	__u32 remote4 = msg->remote_ip4;
	barrier_var(local4);
	barrier_var(remote4);

	struct sock_key peer = {};
	if (family == AF_INET) {
		mapped4(peer.local_ip, remote4);
		mapped4(peer.remote_ip, local4);
	} else if (family == AF_INET6) {
		peer.local_ip[0] = msg->remote_ip6[0];
		peer.local_ip[1] = msg->remote_ip6[1];
		peer.local_ip[2] = msg->remote_ip6[2];
		peer.local_ip[3] = msg->remote_ip6[3];
		peer.remote_ip[0] = msg->local_ip6[0];
		peer.remote_ip[1] = msg->local_ip6[1];
		peer.remote_ip[2] = msg->local_ip6[2];
		peer.remote_ip[3] = msg->local_ip6[3];
	} else {
		count(STAT_MSG_PASSED, 1);
		return SK_PASS;
	}
	peer.local_port = bpf_ntohl(msg->remote_port);
	peer.remote_port = msg->local_port;

	__u32 size = msg->size;
	if (bpf_msg_redirect_hash(msg, &sock_map, &peer, BPF_F_INGRESS) == SK_PASS) {
		count(STAT_MSG_REDIRECTED, 1);
		count(STAT_MSG_REDIRECTED_BYTES, size);
		return SK_PASS;
	}

	// The peer is not in the map (outside the cgroup, or not inserted yet):
	// send through TCP, and from now on always.
	if (sk) {
		struct sock_info *si = bpf_sk_storage_get(&sock_infos, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (si)
			si->flags |= SOCK_PLAIN;
	}
	count(STAT_MSG_LATCHED_PLAIN, 1);
	count(STAT_MSG_PASSED, 1);
	return SK_PASS;
}

static __always_inline void emit_wake(struct bpf_sock_addr *ctx, struct addr4 *vip, __u32 function_id)
{
	struct wake_event *e = bpf_ringbuf_reserve(&wake_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_WAKE_DROPPED, 1);
		return;
	}
	e->ktime_ns = bpf_ktime_get_ns();
	e->cookie = bpf_get_socket_cookie(ctx);
	e->function_id = function_id;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->vip = *vip;
	bpf_ringbuf_submit(e, 0);
	count(STAT_WAKE_EMITTED, 1);
}

// vip_hot tells whether the VIP has ready backends: the loader fills every
// slot of a hot VIP's table.
static __always_inline int vip_hot(struct addr4 *vip)
{
	void *slots = bpf_map_lookup_elem(&vip_backends, vip);
	if (!slots)
		return 0;
	__u32 zero = 0;
	struct addr4 *b = bpf_map_lookup_elem(slots, &zero);
	return b && b->addr;
}

SEC("cgroup/connect4")
int ebb_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	int netns = which_netns(ctx);
	if (netns == NETNS_FOREIGN)
		return 1;
	__u32 dst = ctx->user_ip4;
	if ((dst & vip_mask) != vip_net)
		return 1;

	struct addr4 vip = {
		.addr = dst,
		.port = bpf_ntohs((__u16)ctx->user_port),
	};
	struct vip_info *info = bpf_map_lookup_elem(&vips, &vip);
	if (!info) {
		count(STAT_CONNECT_UNKNOWN_VIP, 1);
		return 1;
	}
	__u32 function_id = info->function_id;

	struct addr4 target = {};
	__u32 flags = 0;
	__u32 stat = STAT_CONNECT_FALLBACK;
	if (netns == NETNS_REPLICA) {
		// A replica reaches no other replica (the bridge isolates them),
		// only the host: its VIP connects all go to the replica fallback
		// listener, which serves them through the router. A cold VIP
		// still wakes the function at once.
		if (!vip_hot(&vip))
			emit_wake(ctx, &vip, function_id);
		__u32 slot = FALLBACK_REPLICA;
		struct addr4 *fb = bpf_map_lookup_elem(&fallback, &slot);
		if (!fb || !fb->addr) {
			count(STAT_CONNECT_NO_FALLBACK, 1);
			return 1;
		}
		target = *fb;
		flags = SOCK_VIA_FALLBACK;
		stat = STAT_CONNECT_REPLICA_FALLBACK;
	} else {
		void *slots = bpf_map_lookup_elem(&vip_backends, &vip);
		if (slots) {
			__u32 slot = bpf_get_prandom_u32() % VIP_SLOTS;
			struct addr4 *b = bpf_map_lookup_elem(slots, &slot);
			if (b && b->addr) {
				target = *b;
				flags = SOCK_VIA_BACKEND;
				stat = STAT_CONNECT_BACKEND;
			}
		}
		if (!flags) {
			emit_wake(ctx, &vip, function_id);
			__u32 slot = FALLBACK_HOST;
			struct addr4 *fb = bpf_map_lookup_elem(&fallback, &slot);
			if (!fb || !fb->addr) {
				// Nowhere to send it: leave the connect alone, it
				// will be refused, which is what a dead VIP should
				// do.
				count(STAT_CONNECT_NO_FALLBACK, 1);
				return 1;
			}
			target = *fb;
			flags = SOCK_VIA_FALLBACK;
		}
	}

	struct bpf_sock *sk = ctx->sk;
	if (sk) {
		struct sock_info *si = bpf_sk_storage_get(&sock_infos, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (si) {
			si->vip = vip;
			si->target = target;
			si->function_id = function_id;
			si->flags = flags;
		}
	}

	ctx->user_ip4 = target.addr;
	ctx->user_port = bpf_htons(target.port);
	count(stat, 1);
	return 1;
}

SEC("cgroup/getpeername4")
int ebb_peername4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	struct sock_info *si = bpf_sk_storage_get(&sock_infos, sk, 0, 0);
	if (!si || !(si->flags & (SOCK_VIA_BACKEND | SOCK_VIA_FALLBACK)))
		return 1;
	// Only undo our own rewrite.
	if (ctx->user_ip4 != si->target.addr || bpf_ntohs((__u16)ctx->user_port) != si->target.port)
		return 1;
	ctx->user_ip4 = si->vip.addr;
	ctx->user_port = bpf_htons(si->vip.port);
	count(STAT_PEERNAME_REWRITTEN, 1);
	return 1;
}
