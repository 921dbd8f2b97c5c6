package e2e

// The cluster harness: N nodes, each its own host on one kernel.
//
// Layout (every test gets its own copy; see newCluster):
//
//	netns <prefix>-hub    bridge br0, 10.216.0.254/24: the wire between the
//	                      hosts, and the client machine the test's curl, hey
//	                      and ebb CLI run on
//	netns <prefix>-cp     eth0 10.216.0.1: redis-server :6379 and
//	                      ebbd --role controlplane (API :8090)
//	netns <prefix>-nodeI  eth0 10.216.0.(10+I): ebbd --role nodeagent
//	                      (--host-ip, metrics/logs :9092, its own private
//	                      containerd) and ebbd --role router (:8080)
//
// The bridge lives in its own namespace, not the root one: the root
// namespace gets no link, address or route, so no traffic of the test can
// leave through the machine's real interfaces or meet another test's
// replica bridges (ebbtN, 10.214.N.0/24); deleting the hub removes the
// bridge and every veth with it. Since each test's hosts share a wire with
// nobody else, every test can use the same 10.216.0.0/24 without clashing,
// and tests run in parallel. The test process itself stays in the root
// namespace and reaches the hosts by dialling from a thread it moved into
// the hub (hubDial).
//
// What one kernel still shares between the hosts, and how it is kept apart:
//   - cgroups: each node's containerd puts its containers at
//     /sys/fs/cgroup/ebb/<id>, and runc's state at /run/containerd/runc/ebb/<id>,
//     both shared, but replica ids are random, so they never collide.
//     ebbd itself makes no cgroup.
//   - eBPF: each node agent attaches its programs at the cgroup2 root,
//     which every process on the kernel is under; but the programs act
//     only on sockets of the loader's own network namespace (and of its
//     replicas'), so the nodes run with --ebpf on and the same default VIP
//     range, as real machines do, without meeting each other or the ebbds
//     of other tests in the root namespace.
//   - nftables and sysctls are per network namespace.
//   - replicas run isolated (--isolation on, the default), each at its
//     address on its node's private bridge (10.213.0.0/18 by default, the
//     same range on every node, as on real machines), published at
//     --host-ip:port: the node's nftables translate that to the replica's
//     bridge address (replicanet's published map), so a router on another
//     node reaches it at the node's address, never the bridge's.
//   - a node agent runs in a mount namespace of its own (startNodeAgent):
//     replicanet reads /sys/class/net, which only a sysfs mounted from
//     inside the node's network namespace shows, so the node gets its own
//     sysfs, with the machine's /sys/fs/cgroup moved back over it for
//     containerd and runc, and a tmpfs of its own on /run/ebb, where the
//     replica namespaces' files are (every node names its bridge ebb0).
//     Its containerd, shims and replicas share that mount namespace, so
//     their mounts go with it when the node's last process exits.
//   - every other process enters a host with nsenter --net, which switches
//     only the network namespace.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/procstat"
	"github.com/ebbrun/ebb/internal/proctree"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	redisstore "github.com/ebbrun/ebb/store/redis"
)

// The hosts' addresses, the same in every test (each test has its own wire).
const (
	clusterNet    = "10.216.0"
	clusterHubIP  = clusterNet + ".254"
	clusterCPIP   = clusterNet + ".1"
	clusterPrefix = "ebbc"
)

// clusterNodeIP is node i's (from 1) address.
func clusterNodeIP(i int) string { return fmt.Sprintf("%s.%d", clusterNet, 10+i) }

// cluster is a running multi-host ebb: a control plane and Redis on one
// host, and nodes on others.
type cluster struct {
	t      *testing.T
	prefix string
	hub    string // the hub namespace's name
	cp     *clusterProc
	cpDir  string
	redis  *clusterProc
	nodes  []*clusterNode
	client *http.Client // dials from the hub
	st     *redisstore.Store
}

// clusterNode is one host running a node agent and a router.
type clusterNode struct {
	name, netns, ip  string
	agent, router    *clusterProc
	agentDir, rtrDir string
}

// routerURL is the node's router.
func (n *clusterNode) routerURL() string { return "http://" + n.ip + ":8080" }

// containerdAddr is the socket of the node agent's private containerd.
func (n *clusterNode) containerdAddr() string {
	return filepath.Join(n.agentDir, "containerd", "containerd.sock")
}

// clusterProc is a process running inside one of the test's namespaces.
type clusterProc struct {
	name   string
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan error
}

// newCluster starts a cluster of n nodes and returns once the control
// plane is ready and every node is registered. Everything is removed when
// the test ends, failed or not.
func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	requireE2E(t)
	for _, b := range []string{"ip", "nsenter", "redis-server", "curl"} {
		testenv.RequireBinary(t, b)
	}
	sweepStaleClusters(t)
	began := time.Now()
	c := &cluster{
		t:      t,
		prefix: fmt.Sprintf("%s-%d-%04x", clusterPrefix, os.Getpid(), rand.IntN(1<<16)),
	}
	c.hub = c.prefix + "-hub"
	c.addNetns(c.hub)
	c.ip(c.hub, "link", "add", "br0", "type", "bridge")
	c.ip(c.hub, "addr", "add", clusterHubIP+"/24", "dev", "br0")
	c.ip(c.hub, "link", "set", "br0", "up")
	c.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: c.hubDial}}

	cpNS := c.prefix + "-cp"
	c.addHost(cpNS, "cp", clusterCPIP)
	for i := 1; i <= n; i++ {
		node := &clusterNode{name: fmt.Sprintf("node%d", i), netns: fmt.Sprintf("%s-node%d", c.prefix, i), ip: clusterNodeIP(i)}
		c.addHost(node.netns, fmt.Sprintf("v%d", i), node.ip)
		c.nodes = append(c.nodes, node)
	}

	redisDir := t.TempDir()
	c.redis = c.start(cpNS, "redis", "redis-server", "--bind", clusterCPIP, "--port", "6379",
		"--dir", redisDir, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--protected-mode", "no", "--daemonize", "no")
	c.waitFor("redis to answer", c.redis, func() bool { return c.redisPing() })

	storeURL := "redis://" + clusterCPIP + ":6379/0"
	cpURL := "http://" + clusterCPIP + ":8090"
	c.cpDir = shortTempDir(t)
	c.cp = c.startEbbd(cpNS, "controlplane", "--role", "controlplane", "--store", storeURL,
		"--node-name", "cp", "--data-dir", c.cpDir, "--api-addr", clusterCPIP+":8090",
		"--metrics-addr", clusterCPIP+":9090",
		"--containerd-address", filepath.Join(c.cpDir, "no-such.sock"))
	// The nodes start together; each waits on its own below.
	for _, node := range c.nodes {
		node.agentDir, node.rtrDir = shortTempDir(t), shortTempDir(t)
		node.agent = c.startNodeAgent(node, "--role", "nodeagent", "--store", storeURL,
			"--node-name", node.name, "--data-dir", node.agentDir, "--host-ip", node.ip,
			"--metrics-addr", node.ip+":9092", "--autoscaler-url", cpURL,
			"--containerd-address", filepath.Join(node.agentDir, "no-such.sock"),
			"--isolation", "on", "--ebpf", "on")
		node.router = c.startEbbd(node.netns, node.name+"/router", "--role", "router", "--store", storeURL,
			"--node-name", node.name, "--data-dir", node.rtrDir, "--http-addr", node.ip+":8080",
			"--metrics-addr", node.ip+":9091", "--autoscaler-url", cpURL)
	}
	c.waitReady(c.cp, cpURL+"/readyz")
	for _, node := range c.nodes {
		c.waitReady(node.agent, "http://"+node.ip+":9092/readyz")
		c.waitReady(node.router, "http://"+node.ip+":9091/readyz")
	}
	c.waitFor("every node to register", c.cp, func() bool {
		var nodes api.NodeList
		if c.api("GET", "/v1/nodes", nil, &nodes) != http.StatusOK {
			return false
		}
		names := map[string]bool{}
		for _, nd := range nodes.Nodes {
			names[nd.Name] = true
		}
		for _, node := range c.nodes {
			if !names[node.name] {
				return false
			}
		}
		return true
	})
	t.Logf("cluster %s: %d nodes up in %s", c.prefix, n, time.Since(began).Round(time.Millisecond))
	return c
}

// addNetns makes a network namespace with its loopback up, deleted when
// the test ends (after the processes in it have stopped: cleanups run in
// reverse order).
func (c *cluster) addNetns(name string) {
	c.t.Helper()
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	require.NoError(c.t, err, "ip netns add %s: %s", name, out)
	c.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			c.t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	c.ip(name, "link", "set", "lo", "up")
}

// addHost makes a host: a namespace joined to the hub's bridge by a veth
// (hub end hubLink, host end eth0) with address ip.
func (c *cluster) addHost(netns, hubLink, ip string) {
	c.t.Helper()
	c.addNetns(netns)
	c.ip(c.hub, "link", "add", hubLink, "type", "veth", "peer", "name", "eth0", "netns", netns)
	c.ip(c.hub, "link", "set", hubLink, "master", "br0", "up")
	c.ip(netns, "addr", "add", ip+"/24", "dev", "eth0")
	c.ip(netns, "link", "set", "eth0", "up")
}

// ip runs ip -n netns args.
func (c *cluster) ip(netns string, args ...string) {
	c.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", netns}, args...)...).CombinedOutput()
	require.NoError(c.t, err, "ip -n %s %s: %s", netns, strings.Join(args, " "), out)
}

// start runs a program inside netns; it is SIGTERMed (then SIGKILLed) when
// the test ends.
func (c *cluster) start(netns, name string, argv ...string) *clusterProc {
	c.t.Helper()
	p := &clusterProc{name: name, log: &syncBuffer{}, exited: make(chan error, 1)}
	// nsenter execs the program, so signals to the child reach it.
	args := append([]string{"--net=/run/netns/" + netns, "--"}, argv...)
	p.cmd = exec.Command("nsenter", args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(c.t, p.cmd.Start(), "start %s", name)
	go func() { p.exited <- p.cmd.Wait() }()
	c.t.Cleanup(func() { c.stop(p) })
	return p
}

func (c *cluster) startEbbd(netns, name string, args ...string) *clusterProc {
	c.t.Helper()
	return c.start(netns, name, append([]string{binaries.ebbd}, args...)...)
}

// nodeMounts is the script that makes a node agent's mount namespace (see
// the file's comment) before it execs the agent: $1 is an empty directory
// to hold /sys/fs/cgroup while sysfs is replaced, the rest the command.
// unshare --mount makes every mount private, so nothing of it reaches the
// machine's namespace.
const nodeMounts = `set -e
mount --rbind /sys/fs/cgroup "$1"
mount -t sysfs sysfs /sys
mount --move "$1" /sys/fs/cgroup
mkdir -p /run/ebb
mount -t tmpfs -o mode=0755 tmpfs /run/ebb
shift
exec "$@"`

// startNodeAgent runs ebbd args on node's host, in a mount namespace of
// its own.
func (c *cluster) startNodeAgent(node *clusterNode, args ...string) *clusterProc {
	c.t.Helper()
	hold := shortTempDir(c.t)
	argv := append([]string{"unshare", "--mount", "--", "sh", "-c", nodeMounts, "sh", hold, binaries.ebbd}, args...)
	return c.start(node.netns, node.name+"/nodeagent", argv...)
}

// stop ends p: SIGTERM, and SIGKILL to its group after 30 s.
func (c *cluster) stop(p *clusterProc) {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		c.t.Errorf("%s did not stop within 30s of SIGTERM\n%s", p.name, p.log)
	}
	if c.t.Failed() {
		c.t.Logf("log of %s:\n%s", p.name, p.log)
	}
	p.cmd = nil
}

// waitReady polls url until it answers 200.
func (c *cluster) waitReady(p *clusterProc, url string) {
	c.t.Helper()
	c.waitFor(p.name+" to be ready", p, func() bool {
		resp, err := c.client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// waitFor polls cond for up to a minute, failing early if p exits.
func (c *cluster) waitFor(what string, p *clusterProc, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		select {
		case err := <-p.exited:
			p.exited <- err
			c.t.Fatalf("%s exited while waiting for %s: %v\n%s", p.name, what, err, p.log)
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s\n%s", what, p.log)
		}
		time.Sleep(20 * time.Millisecond) // polling processes in other namespaces
	}
}

// hubDial dials addr from the hub namespace: the socket is made on a
// thread moved into the hub and keeps that namespace for its life.
func (c *cluster) hubDial(ctx context.Context, network, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + c.hub)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %w", c.hub, err)
	}
	conn, dialErr := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so the runtime ends it with the
		// goroutine instead of reusing it in the wrong namespace.
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}

// redisPing reports whether the cluster's Redis answers PING.
func (c *cluster) redisPing() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := c.hubDial(ctx, "tcp", clusterCPIP+":6379")
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 5)
	_, err = io.ReadFull(conn, buf)
	return err == nil && string(buf) == "+PONG"
}

// token is the control plane's admin token.
func (c *cluster) token() string {
	b, err := os.ReadFile(filepath.Join(c.cpDir, "token"))
	require.NoError(c.t, err)
	return strings.TrimSpace(string(b))
}

// api calls the control plane's API at its address, from the hub.
func (c *cluster) api(method, path string, body io.Reader, out any) int {
	c.t.Helper()
	req, err := http.NewRequest(method, "http://"+clusterCPIP+":8090"+path, body)
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+c.token())
	resp, err := c.client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	if out != nil && len(raw) > 0 && resp.StatusCode < 300 {
		require.NoError(c.t, json.Unmarshal(raw, out), "decode %s", raw)
	}
	return resp.StatusCode
}

// inHub runs a program (curl, hey, the ebb CLI) on the client host, the
// hub namespace, and returns its stdout; it fails the test on an error.
func (c *cluster) inHub(env []string, argv ...string) string {
	c.t.Helper()
	return c.inNetns(c.hub, env, argv...)
}

// inNetns runs a program on the host of namespace netns.
func (c *cluster) inNetns(netns string, env []string, argv ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + netns, "--"}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(c.t, cmd.Run(), "%s: %s\n%s", strings.Join(argv, " "), stderr.String(), stdout.String())
	return stdout.String()
}

// ebb runs the CLI on the client host against the control plane's address.
func (c *cluster) ebb(args ...string) string {
	c.t.Helper()
	return c.inHub([]string{"EBB_API=http://" + clusterCPIP + ":8090", "EBB_TOKEN=" + c.token(), "XDG_CONFIG_HOME=" + c.cpDir},
		append([]string{binaries.ebb}, args...)...)
}

// curl is a GET of host's / through the router at routerURL, with curl on
// the client host; it returns the status and body.
func (c *cluster) curl(routerURL, host string) (int, string) {
	c.t.Helper()
	out := c.inHub(nil, "curl", "-sS", "--max-time", "30", "-H", "Host: "+host, "-w", "\n%{http_code}", routerURL+"/")
	i := strings.LastIndex(out, "\n")
	code, err := strconv.Atoi(strings.TrimSpace(out[i+1:]))
	require.NoError(c.t, err, "curl output %q", out)
	return code, out[:i]
}

// pushImage packages a static binary as an OCI image named name and
// uploads it to the control plane with the CLI, as a user would: nothing
// is imported into any node, which pulls it from the control plane's /v2/
// when it first starts a replica of it.
func (c *cluster) pushImage(bin, name string) {
	c.t.Helper()
	archive := filepath.Join(c.t.TempDir(), filepath.Base(bin)+".oci.tar")
	c.ebb("images", "build", bin, "--name", name, "-o", archive)
	c.ebb("images", "push", archive)
}

// endpoints lists revision rev's endpoints as the routers see them, read
// from the cluster's Redis through a loopback forwarder into the hub.
func (c *cluster) endpoints(rev string) []store.Endpoint {
	c.t.Helper()
	eps, _, err := store.ListJSON[store.Endpoint](context.Background(), c.store(), store.EndpointsPrefix(rev))
	require.NoError(c.t, err)
	var out []store.Endpoint
	for _, ep := range eps {
		out = append(out, ep.Value)
	}
	return out
}

// store opens (once per cluster) the cluster's Redis from the test process.
func (c *cluster) store() *redisstore.Store {
	c.t.Helper()
	if c.st != nil {
		return c.st
	}
	addr := c.forward(clusterCPIP + ":6379")
	st, err := redisstore.Open(context.Background(), "redis://"+addr+"/0", redisstore.Options{})
	require.NoError(c.t, err)
	c.st = st
	c.t.Cleanup(func() { st.Close() })
	return st
}

// forward listens on a free loopback port and relays each connection to
// addr, dialled from the hub: for clients, such as go-redis, that take no
// dialler.
func (c *cluster) forward(addr string) string {
	c.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(c.t, err)
	c.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := c.hubDial(context.Background(), "tcp", addr)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in); out.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
	return l.Addr().String()
}

// sweepStaleClusters deletes the namespaces of test binaries that died
// without cleaning up (their pid is in the name).
func sweepStaleClusters(t *testing.T) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), clusterPrefix+"-")
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if st, err := procstat.Read(pid); err == nil && !st.Exited() {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			t.Logf("remove stale namespace %s: %v: %s", e.Name(), err, out)
		}
	}
}

// killNode SIGKILLs everything of node n, as a power cut would: its two
// ebbds, its containerd, the shims and the replicas.
func (c *cluster) killNode(n *clusterNode) {
	c.t.Helper()
	for _, p := range []*clusterProc{n.agent, n.router} {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	// containerd and the shims name the agent's data dir in their command
	// lines; the replicas are the shims' children.
	proctree.KillMentioning(n.agentDir)
	for _, p := range []*clusterProc{n.agent, n.router} {
		<-p.exited
		p.cmd = nil
	}
}
