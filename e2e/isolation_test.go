package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/nodeagent/replicanet"
)

// attempt is one escape attempt of testdata/escaper, as it reports it.
type attempt struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// TestReplicaCannotEscape deploys a function that tries every way out of
// its replica the isolation issue names, and checks that none works while
// what a function may do (egress through NAT, another function's VIP)
// still does, and that ports it takes inside its namespace take nothing
// from the router or other replicas.
func TestReplicaCannotEscape(t *testing.T) {
	d := startEbbd(t)
	outside := startOutsideHost(t, d.slot)
	d.pushBinary(binaries.escaper, "escaper:latest")
	d.pushHello()
	d.putSpec("escaper", `{"image":"escaper:latest","scale":{"min":1}}`)
	d.putSpec("hello", `{"image":"hello:latest","scale":{"min":1}}`)
	// cold is at zero with a pre-created task, whose port the escaper
	// will try to take.
	d.putSpec("cold", `{"image":"hello:latest","scale":{"initial":0}}`)
	hello := d.waitFor("hello", time.Minute, func(r api.RevisionStatus) bool { return len(r.Replicas) == 1 })
	escaper := d.waitFor("escaper", time.Minute, func(r api.RevisionStatus) bool { return len(r.Replicas) == 1 })
	d.waitFor("cold", time.Minute, func(r api.RevisionStatus) bool { return r.State == api.RevisionIdle })

	peer := hello.Replicas[0].Addr
	gateway := gatewayOf(t, d.slot)
	lo, hi := d.slot.portRange()
	bind := []string{portOfAddr(d.httpAddr)}
	_, own, err := net.SplitHostPort(escaper.Replicas[0].Addr)
	require.NoError(t, err)
	for p := lo; p <= hi; p++ {
		if strconv.Itoa(p) != own { // its own, which it listens on
			bind = append(bind, strconv.Itoa(p))
		}
	}
	vip := d.vip("hello")
	q := fmt.Sprintf("/escape?host=%s&hostports=%s,%s,%s&peer=%s&egress=%s&vip=%s&bind=%s",
		gateway, portOfAddr(d.apiAddr), portOfAddr(d.metricsAddr), portOfAddr(d.httpAddr), peer, outside.addr, vip, strings.Join(bind, ","))
	resp, body := d.get("escaper", q, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var got map[string]attempt
	require.NoError(t, json.Unmarshal([]byte(body), &got), body)
	t.Logf("escape attempts: %s", body)

	for name, a := range got {
		switch {
		// The router is offered to replicas on the node's address (this
		// test's listens on loopback only, so nothing answers there).
		case name == "egress", name == "vip", strings.HasPrefix(name, "bind:"), name == "identity", name == "node:"+portOfAddr(d.httpAddr):
		default:
			assert.False(t, a.OK, "escape %q worked: %s", name, a.Detail)
		}
	}
	for _, name := range []string{"loopback:" + portOfAddr(d.apiAddr), "node:" + portOfAddr(d.apiAddr), "peer",
		"write-rootfs", "host-environ", "load-module", "mount", "af-packet"} {
		assert.Contains(t, got, name, "attempt %s was made", name)
	}
	assert.True(t, got["egress"].OK, "egress through NAT: %s", got["egress"].Detail)
	assert.Equal(t, []string{gatewayToOutside(d.slot)}, outside.sources(), "the outside host saw the node's address, not the replica's")
	assert.True(t, got["vip"].OK, "a function VIP is offered to replicas: %s", got["vip"].Detail)
	assert.Contains(t, got["vip"].Detail, "revision=hello-00001")

	id := got["identity"].Detail
	assert.Contains(t, id, "uid=65532 gid=65532", "non-root by default")
	assert.NotContains(t, id, `uid_map="0 0 4294967295"`, "in a user namespace of its own")
	assert.Contains(t, id, "CapEff=0000000000000000", "a non-root user has no effective capabilities")
	assert.Regexp(t, `CapBnd=0000000000000[0-9a-f]{3}`, id)
	bnd := capBounding(t, id)
	for _, c := range []struct {
		name string
		bit  uint
	}{{"NET_RAW", 13}, {"MKNOD", 27}, {"DAC_OVERRIDE", 1}, {"SYS_CHROOT", 18}, {"SETFCAP", 31}, {"SYS_ADMIN", 21}, {"SYS_MODULE", 16}} {
		assert.Zero(t, bnd&(1<<c.bit), "capability %s is dropped", c.name)
	}

	// The escaper holds the router's port and every replica port of the
	// node, inside its namespace: the router, hello's replica and cold's
	// pre-created task never notice.
	for _, p := range bind {
		assert.True(t, got["bind:"+p].OK, "bind :%s inside its own namespace: %s", p, got["bind:"+p].Detail)
	}
	resp, body = d.get("hello", "/", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "revision=hello-00001")
	resp, body = d.get("cold", "/", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a cold start from the pool")
	assert.Contains(t, body, "revision=cold-00001")
}

// TestEscapeProbeSeesHostNetworking runs the same probe with isolation
// off, where a replica shares the host's network: the probe must see the
// host's loopback, or its silence above would prove nothing.
func TestEscapeProbeSeesHostNetworking(t *testing.T) {
	d := startEbbd(t, "--isolation", "off")
	d.pushBinary(binaries.escaper, "escaper:latest")
	d.putSpec("escaper", `{"image":"escaper:latest","scale":{"min":1}}`)
	d.waitFor("escaper", time.Minute, func(r api.RevisionStatus) bool { return len(r.Replicas) == 1 })
	resp, body := d.get("escaper", "/escape?hostports="+portOfAddr(d.apiAddr), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var got map[string]attempt
	require.NoError(t, json.Unmarshal([]byte(body), &got), body)
	assert.True(t, got["loopback:"+portOfAddr(d.apiAddr)].OK, "with host networking the API is in reach: %s", body)
	assert.Contains(t, d.log.String(), "isolation is off")
}

// capBounding is the CapBnd mask in an identity report.
func capBounding(t *testing.T, id string) uint64 {
	t.Helper()
	_, rest, ok := strings.Cut(id, "CapBnd=")
	require.True(t, ok, id)
	v, err := strconv.ParseUint(strings.Fields(rest)[0], 16, 64)
	require.NoError(t, err)
	return v
}

// gatewayOf is the node's address on the slot's bridge, as replicas see it.
func gatewayOf(t *testing.T, s netSlot) string {
	t.Helper()
	cidr, err := netip.ParsePrefix(s.cidr())
	require.NoError(t, err)
	return replicanet.Config{CIDR: cidr}.Gateway().String()
}

// outsideHost is a host outside the node: a network namespace the test
// makes, linked to the host by a veth pair in 10.216.{slot}.0/30, with an
// HTTP server that remembers who called it.
type outsideHost struct {
	addr string
	mu   sync.Mutex
	seen []string
}

func (o *outsideHost) sources() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.seen...)
}

func gatewayToOutside(s netSlot) string { return fmt.Sprintf("10.216.%d.1", s.index) }

func startOutsideHost(t *testing.T, s netSlot) *outsideHost {
	t.Helper()
	ns := fmt.Sprintf("ebbt%d-out", s.index)
	hostEnd := fmt.Sprintf("ebbto%d", s.index)
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}
	_ = exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run
	run("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostEnd).Run() })
	run("addr", "add", gatewayToOutside(s)+"/30", "dev", hostEnd)
	run("link", "set", hostEnd, "up")
	inside := fmt.Sprintf("10.216.%d.2", s.index)
	run("-n", ns, "addr", "add", inside+"/30", "dev", "eth0")
	run("-n", ns, "link", "set", "eth0", "up")
	run("-n", ns, "link", "set", "lo", "up")

	o := &outsideHost{addr: inside + ":8000"}
	var l net.Listener
	require.NoError(t, replicanet.Do("/run/netns/"+ns, func() error {
		var err error
		l, err = net.Listen("tcp", o.addr) // the socket stays in the namespace
		return err
	}))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		o.mu.Lock()
		o.seen = append(o.seen, host)
		o.mu.Unlock()
		fmt.Fprintln(w, "outside")
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return o
}
