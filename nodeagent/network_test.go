package nodeagent_test

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/nodeagent"
	"github.com/ebbrun/ebb/nodeagent/fake"
	"github.com/ebbrun/ebb/store"
)

// Every container, pre-created ones included, joins a namespace the agent
// prepared before creating it; the endpoint is the namespace's address; a
// removed replica's namespace goes with it.
func TestReplicasRunInNamespacesOfTheirOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := fake.NewNetwork()
		e := newEnvWith(t, nil, net)
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		e.assign("hello", rev, 2, 0)

		eps := e.waitEndpoints(rev, 2)
		cs := e.waitContainers(3)
		for id, spec := range cs {
			assert.Equal(t, "/fake/netns/"+id, spec.NetnsPath, "pre-created or running, every replica is in its namespace")
			assert.Equal(t, "isolated", spec.Labels[nodeagent.LabelNetwork])
			assert.Less(t, slices.Index(net.Calls(), "prepare "+id), len(net.Calls()))
		}
		for _, ep := range eps {
			host, portStr, err := splitHostPort(ep.Addr)
			require.NoError(t, err)
			port, err := strconv.Atoi(portStr)
			require.NoError(t, err)
			assert.Equal(t, net.Addr(port).String(), host, "the endpoint is the namespace's address")
			assert.Equal(t, "hello from "+ep.Replica+"\n", e.get(ep.Addr, "/"))
			assert.Contains(t, cs[ep.Replica].Env, "PORT="+portStr)
		}
		assert.ElementsMatch(t, slices.Collect(maps.Keys(cs)), net.Namespaces())

		// Scaling down to one removes a replica and its namespace.
		e.assign("hello", rev, 1, 0)
		e.waitEndpoints(rev, 1)
		e.waitFor(func() bool { return len(e.rt.Containers()) == 2 && len(net.Namespaces()) == 2 },
			"2 containers and their namespaces, have %v", net.Namespaces())
		assert.ElementsMatch(t, slices.Collect(maps.Keys(e.rt.Containers())), net.Namespaces())
	})
}

// A replica whose network cannot be made never gets a container, and the
// revision says why.
func TestANetworkFailureFailsTheReplicaCleanly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := fake.NewNetwork()
		net.FailNextPrepare(errors.New("no veth for you"))
		e := newEnvWith(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 }, net)
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		e.assign("hello", rev, 1, 0)

		// The next attempt, after the failure's backoff, succeeds.
		eps := e.waitEndpoints(rev, 1)
		e.waitStatus(rev, "ready", func(s store.RevisionNodeStatus) bool { return s.Ready == 1 })
		cs := e.waitContainers(1)
		assert.ElementsMatch(t, slices.Collect(maps.Keys(cs)), net.Namespaces(), "the failed replica left no namespace")
		assert.Equal(t, "hello from "+eps[0].Replica+"\n", e.get(eps[0].Addr, "/"))
		for _, c := range e.rt.Calls() {
			assert.NotEqual(t, "create "+net.Calls()[0][len("prepare "):], c, "no container for the replica whose network failed")
		}
	})
}

// A restarted agent keeps the namespaces of the replicas it adopts and
// releases the rest; an agent in the other mode replaces the replicas,
// whose addresses would be wrong.
func TestRestartedAgentAdoptsNamespaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := fake.NewNetwork()
		e := newEnvWith(t, nil, net)
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		e.assign("hello", rev, 2, 0)
		before := e.waitEndpoints(rev, 2)
		containers := e.waitContainers(3)

		e.stop()
		calls := len(e.rt.Calls())
		e.start()
		after := e.waitEndpoints(rev, 2)
		assert.ElementsMatch(t, addrs(before), addrs(after), "the same replicas at the same addresses")
		assert.Equal(t, containers, e.waitContainers(3))
		ids := slices.Sorted(maps.Keys(containers))
		assert.Contains(t, net.Calls(), "adopt "+fmtIDs(ids))
		for _, c := range e.rt.Calls()[calls:] {
			assert.NotContains(t, c, "create ", "adoption created a container")
		}

		// The same replicas under an agent with host networking: replaced.
		e.stop()
		e.net = nil
		e.start()
		e.waitFor(func() bool {
			eps := e.endpoints(rev)
			return len(eps) == 2 && !slices.Contains(ids, eps[0].Replica) && !slices.Contains(ids, eps[1].Replica)
		}, "two new replicas on the host network")
		for _, ep := range e.endpoints(rev) {
			host, _, err := splitHostPort(ep.Addr)
			require.NoError(t, err)
			assert.Equal(t, "127.0.0.1", host)
		}
		_, err := e.store.Get(t.Context(), store.ReplicaKey(node, ids[0]))
		assert.ErrorIs(t, err, store.ErrNotFound)
	})
}

func addrs(eps []store.Endpoint) []string {
	out := make([]string, len(eps))
	for i, ep := range eps {
		out[i] = ep.Replica + "@" + ep.Addr
	}
	return out
}

// A port freed by a replica is handed out again only after every other:
// with isolation it is the replica's address too, which the kernel and
// clients remember for a while.
func TestPortsGoRoundTheRange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnvWith(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 }, fake.NewNetwork())
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		var seen []string
		for range 3 {
			e.assign("hello", rev, 1, 0)
			ep := e.waitEndpoints(rev, 1)[0]
			seen = append(seen, ep.Addr)
			e.assign("hello", rev, 0, 0)
			e.waitFor(func() bool { return len(e.rt.Containers()) == 0 }, "replica %s gone", ep.Replica)
		}
		assert.Equal(t, []string{"10.99.89.216:23000", "10.99.89.217:23001", "10.99.89.218:23002"}, seen)
	})
}

// usersByNamespace gives each tenancy namespace a fixed range.
type usersByNamespace map[string]uint32

func (u usersByNamespace) For(ns string) (nodeagent.IDMap, error) {
	base, ok := u[ns]
	if !ok {
		return nodeagent.IDMap{}, fmt.Errorf("no range for %s", ns)
	}
	return nodeagent.IDMap{HostID: base, Size: 65536}, nil
}

// Replicas run in the user namespace of their tenancy namespace, as a
// non-root user unless their image names one.
func TestReplicasRunInTheirTeamsUserNamespace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnvWith(t, func(c *nodeagent.Config) { c.PoolPerRevision = -1 }, nil)
		e.stop()
		e.users = usersByNamespace{api.DefaultNamespace: 1 << 31, "team-a": 1<<31 + 65536}
		e.start()
		revA := e.deploy("hello.team-a", 1, api.FunctionSpec{Image: image})
		revD := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		e.assign("hello.team-a", revA, 1, 0)
		e.assign("hello", revD, 1, 0)
		e.waitEndpoints(revA, 1)
		e.waitEndpoints(revD, 1)
		for _, spec := range e.waitContainers(2) {
			want := uint32(1 << 31)
			if spec.Labels[nodeagent.LabelFunction] == "hello.team-a" {
				want = 1<<31 + 65536
			}
			require.NotNil(t, spec.UserNS)
			assert.Equal(t, nodeagent.IDMap{HostID: want, Size: 65536}, *spec.UserNS, spec.ID)
			assert.Equal(t, "65532:65532", spec.DefaultUser)
		}
	})
}

func splitHostPort(addr string) (string, string, error) { return net.SplitHostPort(addr) }

func fmtIDs(ids []string) string {
	out := "["
	for i, id := range ids {
		if i > 0 {
			out += " "
		}
		out += id
	}
	return out + "]"
}

// With a host IP other hosts reach, an isolated replica is published at
// HostIP:port (the Network translates it to the replica's own address), and
// the agent still probes the replica at its own address, untranslated.
func TestIsolatedReplicasArePublishedAtTheHostIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := fake.NewNetwork()
		e := newEnvWith(t, func(c *nodeagent.Config) { c.HostIP = "192.0.2.7" }, net)
		rev := e.deploy("hello", 1, api.FunctionSpec{Image: image})
		e.assign("hello", rev, 1, 0)

		eps := e.waitEndpoints(rev, 1) // ready: the probe passed
		host, portStr, err := splitHostPort(eps[0].Addr)
		require.NoError(t, err)
		port, err := strconv.Atoi(portStr)
		require.NoError(t, err)
		assert.Equal(t, "192.0.2.7", host, "published at the host IP")
		addr := net.Addr(port).String() + ":" + portStr
		assert.Equal(t, "hello from "+eps[0].Replica+"\n", e.get(addr, "/"), "served at its own address")
	})
}

func TestPublishIP(t *testing.T) {
	for _, tc := range []struct{ hostIP, want string }{
		{"127.0.0.1", ""},
		{"127.0.0.2", ""},
		{"::1", ""},
		{"10.216.0.11", "10.216.0.11"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"not an ip", ""},
	} {
		got := nodeagent.PublishIP(tc.hostIP)
		if tc.want == "" {
			assert.False(t, got.IsValid(), "%s", tc.hostIP)
			continue
		}
		assert.Equal(t, tc.want, got.String(), "%s", tc.hostIP)
	}
}
