package fake

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/ebbrun/ebb/nodeagent"
)

var _ nodeagent.Network = (*Network)(nil)

// Network is an in-memory nodeagent.Network: every replica gets a
// "namespace" whose address is 10.99.0.0/16 plus its port, where the
// Runtime it is given to (Runtime.SetNetwork) serves the replica's task.
type Network struct {
	mu    sync.Mutex
	netns map[string]string // replica id → netns path
	hosts map[string]string // netns path → address the task serves on
	fail  error             // the next Prepare's error
	calls []string
}

// NewNetwork returns a network with no namespaces.
func NewNetwork() *Network {
	return &Network{netns: map[string]string{}, hosts: map[string]string{}}
}

// Addr implements nodeagent.Network.
func (n *Network) Addr(port int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 99, byte(port >> 8), byte(port)})
}

// Prepare implements nodeagent.Network.
func (n *Network) Prepare(_ context.Context, id string, port int) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, "prepare "+id)
	if err := n.fail; err != nil {
		n.fail = nil
		return "", err
	}
	path := "/fake/netns/" + id
	n.netns[id] = path
	n.hosts[path] = n.Addr(port).String()
	return path, nil
}

// Release implements nodeagent.Network.
func (n *Network) Release(_ context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, "release "+id)
	delete(n.hosts, n.netns[id])
	delete(n.netns, id)
	return nil
}

// Adopt implements nodeagent.Network.
func (n *Network) Adopt(_ context.Context, ids []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, fmt.Sprintf("adopt %v", ids))
	for id, path := range n.netns {
		if !slices.Contains(ids, id) {
			delete(n.hosts, path)
			delete(n.netns, id)
		}
	}
	return nil
}

// NetnsPath implements nodeagent.Network.
func (n *Network) NetnsPath(id string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.netns[id]
}

// InNamespace implements nodeagent.Network: the fake has no namespaces
// to enter, so fn runs as it is, if id has one.
func (n *Network) InNamespace(id string, fn func() error) error {
	if n.NetnsPath(id) == "" {
		return fmt.Errorf("replica %s has no network namespace", id)
	}
	return fn()
}

// FailNextPrepare makes the next Prepare fail with err.
func (n *Network) FailNextPrepare(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fail = err
}

// Namespaces returns the replica ids that have a namespace, sorted.
func (n *Network) Namespaces() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	ids := make([]string, 0, len(n.netns))
	for id := range n.netns {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Calls returns the calls made so far ("prepare ID", "release ID",
// "adopt [IDS]"), in order.
func (n *Network) Calls() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.calls)
}

// host is the address a task in netnsPath serves on: "127.0.0.1" for the
// host's network.
func (n *Network) host(netnsPath string) (string, error) {
	if netnsPath == "" {
		return "127.0.0.1", nil
	}
	if n == nil {
		return "", fmt.Errorf("network namespace %s, and the runtime has no network", netnsPath)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.hosts[netnsPath]
	if !ok {
		return "", fmt.Errorf("network namespace %s does not exist", netnsPath)
	}
	return h, nil
}
