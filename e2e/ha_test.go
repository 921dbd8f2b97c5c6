package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/leader"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	redisstore "github.com/ebbrun/ebb/store/redis"
)

// startRole starts ebbd in one role, as node on one machine of a cluster
// sharing redis, with its own data dir and slot. Roles without the API
// serve /readyz on their metrics address, which start polls as apiAddr.
func startRole(t *testing.T, role, node, redisURL string, extra ...string) *ebbd {
	t.Helper()
	requireE2E(t)
	slot := lockNetSlot(t)
	d := &ebbd{
		t:           t,
		slot:        slot,
		dataDir:     shortTempDir(t),
		apiAddr:     fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		httpAddr:    fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		metricsAddr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
	}
	d.args = []string{
		"--role", role, "--node-name", node, "--store", redisURL,
		"--data-dir", d.dataDir, "--api-addr", d.apiAddr, "--http-addr", d.httpAddr,
		"--metrics-addr", d.metricsAddr,
		"--replica-ports", slot.ports(), "--bridge", slot.bridge(), "--replica-cidr", slot.cidr(),
		"--vip-prefix", fmt.Sprintf("127.79.%d.0/24", 1+rand.IntN(250)),
		"--ebpf", "off", "--isolation", "off",
	}
	if !slices.Contains(extra, "--containerd-address") {
		d.args = append(d.args, "--containerd-address", filepath.Join(d.dataDir, "no-such.sock"))
	}
	d.args = append(d.args, extra...)
	if role != "controlplane" {
		d.apiAddr = d.metricsAddr
	}
	d.start()
	t.Cleanup(func() { d.stop(syscall.SIGTERM) })
	return d
}

// containerdSock is the private containerd an ebbd started under its data dir.
func (d *ebbd) containerdSock() string {
	return filepath.Join(d.dataDir, "containerd", "containerd.sock")
}

// killGroup SIGKILLs ebbd and every process of its group (its private
// containerd among them), as a machine dying does.
func (d *ebbd) killGroup() {
	d.t.Helper()
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.exited
	d.cmd = nil
}

// nodeTasks returns the containers of node in the containerd at sock.
func nodeContainers(t *testing.T, sock, node string) (context.Context, []containerd.Container, *containerd.Client) {
	t.Helper()
	client, err := containerd.New(sock, containerd.WithTimeout(10*time.Second))
	require.NoError(t, err)
	ctx := namespaces.WithNamespace(context.Background(), "ebb")
	cs, err := client.Containers(ctx, fmt.Sprintf(`labels."ebb.node"==%s`, node))
	require.NoError(t, err)
	return ctx, cs, client
}

// killReplicas SIGKILLs the processes of node's replicas and removes
// their containers, as the node's death and the containerd it took with
// it would.
func killReplicas(t *testing.T, sock, node string) int {
	t.Helper()
	ctx, cs, client := nodeContainers(t, sock, node)
	defer client.Close()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			if task, err := c.Task(ctx, nil); err == nil {
				_ = task.Kill(ctx, syscall.SIGKILL)
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		ctx, cs, client := nodeContainers(t, sock, node)
		defer client.Close()
		for _, c := range cs {
			if task, err := c.Task(ctx, nil); err == nil {
				_, _ = task.Delete(ctx, containerd.WithProcessKill)
			}
			_ = c.Delete(ctx, containerd.WithSnapshotCleanup)
		}
	})
	return len(cs)
}

// runningReplicas counts node's containers whose task runs.
func runningReplicas(t *testing.T, sock, node string) int {
	t.Helper()
	ctx, cs, client := nodeContainers(t, sock, node)
	defer client.Close()
	n := 0
	for _, c := range cs {
		task, err := c.Task(ctx, nil)
		if err != nil {
			continue
		}
		if st, err := task.Status(ctx); err == nil && st.Status == containerd.Running {
			n++
		}
	}
	return n
}

// call sends one GET through the router at addr to fn.
func call(addr, fn string) (int, error) {
	req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
	if err != nil {
		return 0, err
	}
	req.Host = fn + ".localhost"
	resp, err := routerClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// waitServing waits until fn answers 200 through the router at addr.
func waitServing(t *testing.T, addr, fn string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if code, err := call(addr, fn); err == nil && code == http.StatusOK {
			return
		}
		time.Sleep(50 * time.Millisecond) // polling a real cluster
	}
	t.Fatalf("%s does not answer 200 through %s within %s", fn, addr, within)
}

// heyResult is what hey counted.
type heyResult struct {
	codes  map[int]int
	errors int
	out    string
}

func (h heyResult) failed() int {
	n := h.errors
	for code, c := range h.codes {
		if code != http.StatusOK {
			n += c
		}
	}
	return n
}

var (
	heyCode  = regexp.MustCompile(`(?m)^\s*\[(\d{3})\]\s+(\d+) responses`)
	heyError = regexp.MustCompile(`(?m)^\s*\[(\d+)\]\s+Get .*$`)
)

// hey runs hey against fn through the router at addr for d with c
// workers, each at most qps requests a second (0: as fast as it can), and
// parses its summary.
func hey(t *testing.T, addr, fn string, d time.Duration, c, qps int) heyResult {
	t.Helper()
	bin := testenv.RequireBinary(t, "hey")
	out, err := exec.Command(bin, "-z", d.String(), "-c", strconv.Itoa(c), "-q", strconv.Itoa(qps),
		"-host", fn+".localhost", "-t", "30", "http://"+addr+"/").CombinedOutput()
	require.NoError(t, err, "%s", out)
	r := heyResult{codes: map[int]int{}, out: string(out)}
	for _, m := range heyCode.FindAllStringSubmatch(r.out, -1) {
		code, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[2])
		r.codes[code] += n
	}
	if i := strings.Index(r.out, "Error distribution:"); i >= 0 {
		for _, m := range heyError.FindAllStringSubmatch(r.out[i:], -1) {
			n, _ := strconv.Atoi(m[1])
			r.errors += n
		}
	}
	return r
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// TestNodeLossUnderLoad SIGKILLs a node (its ebbd, its containerd and
// its replicas) that serves 20 functions, whose replicas can be placed on
// a second node, under hey load through the second node's router. Every
// function must answer 200 again through that router within 10 s of the
// kill, half within 5 s; the only failures allowed are the requests in
// flight on the dead node.
func TestNodeLossUnderLoad(t *testing.T) {
	requireE2E(t)
	redis := testenv.Redis(t)
	cp := startRole(t, "controlplane", "cp", redis.URL())
	sock := cp.containerdSock()
	cpURL := "http://" + cp.apiAddr
	cp.pushHello()
	a := startRole(t, "nodeagent", "node-a", redis.URL(), "--containerd-address", sock, "--autoscaler-url", cpURL)
	routerB := startRole(t, "router", "node-b", redis.URL(), "--autoscaler-url", cpURL)

	const functions = 20
	fns := make([]string, functions)
	for i := range fns {
		fns[i] = fmt.Sprintf("loss-%02d", i)
		require.Less(t, cp.apiCall("PUT", "/v1/functions/"+fns[i], strings.NewReader(
			`{"image":"hello:latest","scale":{"min":1},"resources":{"cpu":0.05,"memory":"32Mi"}}`), nil), 300)
	}
	for _, fn := range fns {
		waitServing(t, routerB.httpAddr, fn, 2*time.Minute)
	}
	// Only now is there a second node: every replica is on node-a.
	b := startRole(t, "nodeagent", "node-b", redis.URL(), "--containerd-address", sock, "--autoscaler-url", cpURL)
	_ = b
	require.Equal(t, functions, runningReplicas(t, sock, "node-a"))

	loaded := fns[:4]
	// 400 requests a second in all: load, while leaving this machine's
	// two cores to the cold starts the test measures.
	const workers, qps = 4, 25
	loads := make([]heyResult, len(loaded))
	var wg sync.WaitGroup
	for i, fn := range loaded {
		wg.Go(func() { loads[i] = hey(t, routerB.httpAddr, fn, 20*time.Second, workers, qps) })
	}
	routerB.waitServed(t, 500) // the load runs on the healthy cluster first

	ctx := context.Background()
	st, err := redisstore.Open(ctx, redis.URL(), redisstore.Options{})
	require.NoError(t, err)
	defer st.Close()
	killed := time.Now()
	a.killGroup()
	replicas := killReplicas(t, sock, "node-a")
	t.Logf("killed node-a and its %d containers in %s", replicas, time.Since(killed).Round(time.Millisecond))
	lapsed := make(chan time.Duration, 1)
	go func() {
		for time.Since(killed) < 30*time.Second {
			if _, nodes, _, err := st.LiveNodes(ctx, -1, 3*time.Second); err == nil && !slices.Contains(nodes, "node-a") {
				lapsed <- time.Since(killed)
				return
			}
			time.Sleep(10 * time.Millisecond) // polling a real cluster
		}
		lapsed <- -1
	}()
	replaced := make(chan time.Duration, 1)
	go func() {
		for time.Since(killed) < 30*time.Second {
			as, _, err := store.ListJSON[store.Assignment](ctx, st, store.AssignmentsPrefix("node-b"))
			n := 0
			for _, a := range as {
				n += a.Value.Replicas
			}
			if err == nil && n >= functions {
				replaced <- time.Since(killed)
				return
			}
			time.Sleep(10 * time.Millisecond) // polling a real cluster
		}
		replaced <- -1
	}()

	back := make([]time.Duration, functions)
	var bwg sync.WaitGroup
	for i, fn := range fns {
		bwg.Go(func() {
			for time.Since(killed) < 30*time.Second {
				if code, err := call(routerB.httpAddr, fn); err == nil && code == http.StatusOK {
					back[i] = time.Since(killed)
					return
				}
				time.Sleep(20 * time.Millisecond) // polling a real cluster
			}
			back[i] = -1
		})
	}
	bwg.Wait()
	wg.Wait()
	t.Logf("after the kill: node-a's lease lapsed at %s, every replica was assigned to node-b at %s",
		(<-lapsed).Round(time.Millisecond), (<-replaced).Round(time.Millisecond))
	for i, d := range back {
		require.Positive(t, d, "%s never answered 200 again", fns[i])
	}
	p50, p100 := percentile(back, 0.5), percentile(back, 1)
	t.Logf("node loss: every function answers 200 again via the surviving router: p50 %s, p100 %s (goals 5s, 10s); each: %v",
		p50.Round(time.Millisecond), p100.Round(time.Millisecond), back)
	assert.LessOrEqual(t, p50, 5*time.Second)
	assert.LessOrEqual(t, p100, 10*time.Second)
	assert.Equal(t, functions, runningReplicas(t, sock, "node-b"), "every function placed again on node-b")

	failed, total := 0, 0
	for i, l := range loads {
		failed += l.failed()
		for _, n := range l.codes {
			total += n
		}
		t.Logf("hey on %s: %v, %d errors", loaded[i], l.codes, l.errors)
	}
	t.Logf("under load: %d of %d requests failed; %d were in flight at most", failed, total+failed, len(loaded)*workers)
	assert.LessOrEqual(t, failed, len(loaded)*workers, "only requests in flight on the dead node fail")
}

// TestLeaderLossUnderLoad SIGKILLs the leading control plane of two under
// load: the other leads within 5 s, no data-plane request fails, and the
// replicas are the same before and after (none duplicated).
func TestLeaderLossUnderLoad(t *testing.T) {
	requireE2E(t)
	redis := testenv.Redis(t)
	// The node owns the containerd both control planes use, so that the
	// leader's death takes no containerd with it.
	node := startRole(t, "nodeagent", "node-a", redis.URL())
	sock := node.containerdSock()
	cps := []*ebbd{
		startRole(t, "controlplane", "cp-1", redis.URL(), "--containerd-address", sock),
		startRole(t, "controlplane", "cp-2", redis.URL(), "--containerd-address", sock),
	}
	urls := "http://" + cps[0].apiAddr + ",http://" + cps[1].apiAddr
	router := startRole(t, "router", "node-a", redis.URL(), "--autoscaler-url", urls)
	cps[0].pushHello()

	ctx := context.Background()
	st, err := redisstore.Open(ctx, redis.URL(), redisstore.Options{})
	require.NoError(t, err)
	defer st.Close()
	holder := func() string {
		rec, _, err := store.GetJSON[leader.Record](ctx, st, leader.RecordKey(leader.DefaultName))
		if err != nil {
			return ""
		}
		return rec.Holder
	}
	require.Eventually(t, func() bool { return holder() != "" }, 10*time.Second, 50*time.Millisecond, "a leader")
	first := holder()
	var lead, standby *ebbd
	if first == "cp-1" {
		lead, standby = cps[0], cps[1]
	} else {
		lead, standby = cps[1], cps[0]
	}
	_ = standby

	fns := []string{"lead-0", "lead-1", "lead-2", "lead-3"}
	for _, fn := range fns {
		require.Less(t, lead.apiCall("PUT", "/v1/functions/"+fn, strings.NewReader(
			`{"image":"hello:latest","scale":{"min":2},"resources":{"cpu":0.05,"memory":"32Mi"}}`), nil), 300)
	}
	for _, fn := range fns {
		waitServing(t, router.httpAddr, fn, 2*time.Minute)
	}
	require.Eventually(t, func() bool { return runningReplicas(t, sock, "node-a") == 2*len(fns) }, time.Minute, 100*time.Millisecond)
	before := runningReplicas(t, sock, "node-a")

	loads := make([]heyResult, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() { loads[i] = hey(t, router.httpAddr, fn, 15*time.Second, 4, 0) })
	}
	router.waitServed(t, 500) // the load runs under the first leader first

	killed := time.Now()
	lead.stop(syscall.SIGKILL)
	var takeover time.Duration
	for time.Since(killed) < 30*time.Second {
		if h := holder(); h != "" && h != first {
			takeover = time.Since(killed)
			break
		}
		time.Sleep(10 * time.Millisecond) // polling a real cluster
	}
	require.Positive(t, takeover, "nobody took over")
	t.Logf("leader %s killed; %s leads after %s", first, holder(), takeover.Round(time.Millisecond))
	assert.LessOrEqual(t, takeover, 5*time.Second)
	wg.Wait()

	total, failed := 0, 0
	for i, l := range loads {
		failed += l.failed()
		for _, n := range l.codes {
			total += n
		}
		t.Logf("hey on %s: %v, %d errors", fns[i], l.codes, l.errors)
	}
	t.Logf("under load through the leader's loss: %d of %d requests failed", failed, total+failed)
	assert.Zero(t, failed, "no data-plane request fails")
	// Two of the new leader's ticks later, the replicas are what they were.
	time.Sleep(5 * time.Second) // let the new leader decide twice
	after := runningReplicas(t, sock, "node-a")
	t.Logf("replicas before %d, after %d", before, after)
	assert.Equal(t, before, after, "no duplicate replicas")
}

// waitServed polls the router's metrics until it has answered n requests:
// the load reaches it before the test disturbs the cluster.
func (d *ebbd) waitServed(t *testing.T, n float64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); d.metricSeriesSum("ebb_router_request_duration_seconds_count", "") < n; {
		require.True(t, time.Now().Before(deadline), "the router did not answer %v requests in 30s", n)
		time.Sleep(50 * time.Millisecond) // polling a real router's metrics
	}
}
