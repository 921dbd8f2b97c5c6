package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

// vipClient is a plain HTTP client, as a process on the node (another
// function, say) would use to call a function by its VIP.
var vipClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableCompression: true}}

// TestEBPF checks issue 7's acceptance through ebbd --ebpf on: a VIP from the
// status reaches a warm replica without the router, a connect to a cold VIP
// wakes the function and its request succeeds, the router's traffic is
// redirected, and bpftool shows ebbd's programs while it runs and none after.
func TestEBPF(t *testing.T) {
	bpftool := testenv.RequireBinary(t, "bpftool")
	// A VIP range of its own, so that ebbds others run on this machine at
	// the same time never publish the same addresses.
	prefix := fmt.Sprintf("127.78.%d.0/24", 1+rand.IntN(250))
	d := startEbbd(t, "--ebpf", "on", "--vip-prefix", prefix)
	pid := d.cmd.Process.Pid
	progs := ebbdPrograms(t, pid)
	require.Len(t, progs, 4, "sockops, sk_msg, connect4 and getpeername4")

	t.Run("bpftool shows the programs while ebbd runs", func(t *testing.T) {
		loaded := bpftoolProgs(t, bpftool)
		for id := range progs {
			assert.Contains(t, loaded, id, "bpftool prog show lists program %d", id)
		}
		attached := bpftoolCgroupProgs(t, bpftool)
		var names []string
		for id, name := range progs {
			if attached[id] {
				names = append(names, name)
			}
		}
		assert.ElementsMatch(t, []string{"ebb_sockops", "ebb_connect4", "ebb_peername4"}, names,
			"bpftool cgroup tree shows the cgroup programs")
	})

	t.Run("node reports eBPF on", func(t *testing.T) {
		var nodes struct{ Nodes []api.Node }
		require.Eventually(t, func() bool {
			return d.apiCall("GET", "/v1/nodes", nil, &nodes) == http.StatusOK && len(nodes.Nodes) == 1 && nodes.Nodes[0].EBPF != ""
		}, 10*time.Second, 20*time.Millisecond)
		assert.True(t, strings.HasPrefix(nodes.Nodes[0].EBPF, "on: "), nodes.Nodes[0].EBPF)
		assert.Contains(t, nodes.Nodes[0].EBPF, prefix)
	})

	d.pushHello()
	d.putSpec("warm", `{"image":"hello:latest","scale":{"min":1}}`)
	d.putSpec("cold", `{"image":"hello:latest","scale":{"initial":0}}`)
	d.waitFor("warm", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready >= 1 })
	d.waitFor("cold", 10*time.Second, func(r api.RevisionStatus) bool { return r.State == api.RevisionIdle })
	warmVIP, coldVIP := d.vip("warm"), d.vip("cold")
	assert.NotEqual(t, warmVIP, coldVIP)
	assert.Equal(t, "80", portOfAddr(warmVIP), "VIPs listen on port 80")

	t.Run("a connect to the VIP reaches a warm replica, not the router", func(t *testing.T) {
		resp, body := vipGet(t, "http://"+strings.TrimSuffix(warmVIP, ":80")+"/")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, body, "function=warm")
		resp, _ = vipGet(t, "http://"+warmVIP+"/echo")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Empty(t, resp.Header.Get("X-Echo-X-Forwarded-For"), "no proxy on the way")
		conn, err := net.Dial("tcp4", warmVIP)
		require.NoError(t, err)
		defer conn.Close()
		assert.Equal(t, warmVIP, conn.RemoteAddr().String(), "getpeername shows the VIP")
		assert.GreaterOrEqual(t, d.metric("ebb_ebpf_vip_connects_total", `target="backend"`), 2.0)
	})

	t.Run("a connect to a cold VIP wakes it and the request succeeds", func(t *testing.T) {
		resp, body := vipGet(t, "http://"+coldVIP+"/")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, body, "function=cold")
		assert.Equal(t, 1.0, d.metric("ebb_ebpf_vip_connects_total", `target="fallback"`))
		assert.GreaterOrEqual(t, d.metric("ebb_ebpf_wake_activations_total", `result="ok"`), 1.0)
		assert.Equal(t, 1.0, d.metric("ebb_ebpf_fallback_requests_total", `outcome="served"`))
		// Warm now: the next connect goes straight to the replica.
		d.waitFor("cold", 10*time.Second, func(r api.RevisionStatus) bool { return r.Ready >= 1 })
		require.Eventually(t, func() bool {
			resp, _ := vipGet(t, "http://"+coldVIP+"/echo")
			return resp.StatusCode == http.StatusOK && resp.Header.Get("X-Echo-X-Forwarded-For") == ""
		}, 10*time.Second, 20*time.Millisecond)
		assert.Equal(t, 1.0, d.metric("ebb_ebpf_vip_connects_total", `target="fallback"`))
	})

	t.Run("router traffic is redirected and intact", func(t *testing.T) {
		before := d.metric("ebb_ebpf_messages_redirected_total", "")
		payload := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
		req, err := http.NewRequest("POST", "http://"+d.httpAddr+"/echo", strings.NewReader(payload))
		require.NoError(t, err)
		req.Host = "warm.localhost"
		resp, err := routerClient.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.True(t, payload == string(body), "1 MiB echoed intact through two redirected hops (got %d bytes)", len(body))
		for range 20 {
			r, b := d.get("warm", "/", nil)
			require.Equal(t, http.StatusOK, r.StatusCode)
			require.Contains(t, b, "function=warm")
		}
		assert.Greater(t, d.metric("ebb_ebpf_messages_redirected_total", ""), before)
	})

	t.Run("load that only comes through the VIP scales the function", func(t *testing.T) {
		// No router sees this load: only the programs' request accounting,
		// reported by the node, tells the autoscaler about it. 8 clients
		// on a 200 ms handler at target 2 want 4 replicas.
		hey := testenv.RequireBinary(t, "hey")
		d.putSpec("viponly", `{"image":"hello:latest","concurrency":{"target":2},"scale":{"min":1,"max":4}}`)
		d.waitFor("viponly", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready >= 1 })
		vip := d.vip("viponly")
		routed := d.metricSeriesSum("ebb_router_requests_total", `function="viponly"`)
		out := make(chan string, 1)
		go func() {
			o, _ := exec.Command(hey, "-z", "10s", "-c", "8", "-t", "30", "http://"+vip+"/sleep?d=200ms").CombinedOutput()
			out <- string(o)
		}()
		rev := d.waitFor("viponly", 20*time.Second, func(r api.RevisionStatus) bool { return r.Desired >= 3 })
		t.Logf("VIP-only load: %d desired, %d ready", rev.Desired, rev.Ready)
		o := <-out
		assert.Greater(t, heyStatus(o, 200), 200, "hey output:\n%s", o)
		assert.NotContains(t, o, "Error distribution", "no request may fail:\n%s", o)
		assert.Equal(t, routed, d.metricSeriesSum("ebb_router_requests_total", `function="viponly"`), "the load skipped the router")
	})

	d.stop(syscall.SIGTERM)
	t.Run("no programs left after ebbd stops", func(t *testing.T) {
		attached := bpftoolCgroupProgs(t, bpftool)
		for id, name := range progs {
			assert.False(t, attached[id], "%s (%d) still attached", name, id)
		}
		// The kernel frees sk_msg after the sockets that used it, in an RCU
		// callback, so it may outlive ebbd by a moment.
		var left map[int]string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			loaded := bpftoolProgs(t, bpftool)
			left = map[int]string{}
			for id, name := range progs {
				if _, ok := loaded[id]; ok {
					left[id] = name
				}
			}
			if len(left) == 0 {
				break
			}
		}
		assert.Empty(t, left, "programs still loaded 5s after ebbd stopped")
	})
}

// vip polls a function's status until it shows a VIP.
func (d *ebbd) vip(name string) string {
	d.t.Helper()
	var fn api.Function
	require.Eventually(d.t, func() bool {
		return d.apiCall("GET", "/v1/functions/"+name, nil, &fn) == http.StatusOK && fn.VIP != ""
	}, 10*time.Second, 20*time.Millisecond, "%s has no VIP", name)
	return fn.VIP
}

func vipGet(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := vipClient.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// metric reads one sample from ebbd's /metrics (labels as in the text
// format, "" for none); 0 when absent.
func (d *ebbd) metric(name, labels string) float64 {
	d.t.Helper()
	want := name + " "
	if labels != "" {
		want = name + "{" + labels + "} "
	}
	return d.metricSum(func(line string) (string, bool) { return strings.CutPrefix(line, want) })
}

// metricSeriesSum sums the series of a metric whose labels contain label,
// e.g. every code and revision of one function.
func (d *ebbd) metricSeriesSum(name, label string) float64 {
	d.t.Helper()
	return d.metricSum(func(line string) (string, bool) {
		series, value, ok := strings.Cut(line, " ")
		return value, ok && strings.HasPrefix(series, name+"{") && strings.Contains(series, label)
	})
}

// metricSum sums the values match picks from the lines of ebbd's /metrics.
func (d *ebbd) metricSum(match func(line string) (value string, ok bool)) float64 {
	d.t.Helper()
	req, err := http.NewRequest("GET", "http://"+d.apiAddr+"/metrics", nil)
	require.NoError(d.t, err)
	// Roles without the API (a router, a node agent) have no token, and
	// serve /metrics on their metrics address without one.
	if _, err := os.Stat(filepath.Join(d.dataDir, "token")); err == nil {
		req.Header.Set("Authorization", "Bearer "+d.token())
	}
	resp, err := httpClient.Do(req)
	require.NoError(d.t, err)
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := match(sc.Text()); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(d.t, err)
			sum += f
		}
	}
	require.NoError(d.t, sc.Err())
	return sum
}

// ebbdPrograms reads the eBPF programs a process holds from its file
// descriptors: program id → name (from bpftool's view of that id).
func ebbdPrograms(t *testing.T, pid int) map[int]string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	ids := map[int]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || link != "anon_inode:bpf-prog" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		require.NoError(t, err)
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "prog_id:"); ok {
				id, err := strconv.Atoi(strings.TrimSpace(v))
				require.NoError(t, err)
				ids[id] = true
			}
		}
	}
	names := map[int]string{}
	all := bpftoolProgs(t, testenv.RequireBinary(t, "bpftool"))
	for id := range ids {
		names[id] = all[id]
	}
	return names
}

// bpftoolProgs is `bpftool prog show`: loaded program id → name.
func bpftoolProgs(t *testing.T, bpftool string) map[int]string {
	t.Helper()
	var progs []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	runJSON(t, &progs, bpftool, "-j", "prog", "show")
	out := map[int]string{}
	for _, p := range progs {
		out[p.ID] = p.Name
	}
	return out
}

// bpftoolCgroupProgs is `bpftool cgroup tree` at the cgroup2 root: the ids
// of every attached program.
func bpftoolCgroupProgs(t *testing.T, bpftool string) map[int]bool {
	t.Helper()
	var tree []map[string]json.RawMessage
	runJSON(t, &tree, bpftool, "-j", "cgroup", "tree")
	out := map[int]bool{}
	for _, cg := range tree {
		var progs []struct {
			ID int `json:"id"`
		}
		if raw, ok := cg["programs"]; ok {
			require.NoError(t, json.Unmarshal(raw, &progs))
		}
		for _, p := range progs {
			out[p.ID] = true
		}
	}
	return out
}

func runJSON(t *testing.T, out any, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = filepath.Dir(name)
	raw, err := cmd.Output()
	require.NoError(t, err, "%s %s", name, strings.Join(args, " "))
	if len(strings.TrimSpace(string(raw))) == 0 {
		return
	}
	require.NoError(t, json.Unmarshal(raw, out), "decode %s", raw)
}
