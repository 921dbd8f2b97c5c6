package nodeagent

import (
	"context"
	"net"
	"net/netip"
	"strconv"
)

// Network gives each replica a network namespace of its own, reachable at
// an address that its port fixes (nodeagent/replicanet is the real one).
// With no Network replicas share the host's network, as with
// ebbd --isolation off.
type Network interface {
	// Prepare makes replica id's network namespace, its link to the node
	// and its address Addr(port), and returns the namespace's path for the
	// container to join. An existing one for id is replaced.
	Prepare(ctx context.Context, id string, port int) (netnsPath string, err error)
	// Addr is where the replica that holds port serves.
	Addr(port int) netip.Addr
	// Release removes id's network; a missing one is not an error.
	Release(ctx context.Context, id string) error
	// Adopt keeps the networks of ids, which an earlier agent made, and
	// releases every other one.
	Adopt(ctx context.Context, ids []string) error
	// NetnsPath is id's network namespace file, "" if it has none.
	NetnsPath(id string) string
	// InNamespace runs fn on a thread inside id's network namespace, for
	// what sees only the namespace it runs in (sock_diag).
	InNamespace(id string, fn func() error) error
}

// Values of LabelNetwork: how a container's replica is networked. A
// container made in one mode is not adopted by an agent in the other: its
// address would be wrong.
const (
	networkHost     = "host"
	networkIsolated = "isolated"
)

// networkMode is the LabelNetwork value of the containers this agent makes.
func (a *Agent) networkMode() string {
	if a.deps.Network != nil {
		return networkIsolated
	}
	return networkHost
}

// containerNetworkMode is the mode a container was made in; containers
// from before the label existed used the host's network.
func containerNetworkMode(c Container) string {
	if m := c.Labels[LabelNetwork]; m != "" {
		return m
	}
	return networkHost
}

// endpointAddr is host:port where other hosts reach the replica holding
// port: HostIP, unless the replica is isolated on a single machine (HostIP
// loopback), where it is the replica's own address. An isolated replica
// is published at a non-loopback HostIP by the Network, which translates
// HostIP:port to its address (replicanet's published map; ebbd sets
// replicanet.Config.PublishIP by the same rule, publishes).
func (a *Agent) endpointAddr(port int) string {
	if publishes(a.cfg.HostIP) {
		return net.JoinHostPort(a.cfg.HostIP, strconv.Itoa(port))
	}
	return a.localAddr(port)
}

// localAddr is where the node itself reaches the replica holding port
// (the prober dials it): the replica's own address when it is isolated,
// with no translation on the way.
func (a *Agent) localAddr(port int) string {
	host := a.cfg.HostIP
	if a.deps.Network != nil {
		host = a.deps.Network.Addr(port).String()
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// publishes reports whether isolated replicas are published at hostIP:
// yes unless it is loopback (one machine, where routers reach the
// replicas' own addresses, as before).
func publishes(hostIP string) bool {
	ip, err := netip.ParseAddr(hostIP)
	return err == nil && !ip.Unmap().IsLoopback()
}

// PublishIP is the address isolated replicas are published at for a node
// whose host IP is hostIP, the zero Addr if they are not.
func PublishIP(hostIP string) netip.Addr {
	if !publishes(hostIP) {
		return netip.Addr{}
	}
	return netip.MustParseAddr(hostIP).Unmap()
}
