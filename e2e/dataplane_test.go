package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

// routerClient is a plain HTTP client with keep-alive, as end users have.
var routerClient = &http.Client{
	Timeout:   2 * time.Minute,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
}

// putSpec creates or updates a function through the API.
func (d *ebbd) putSpec(name, spec string) api.Function {
	d.t.Helper()
	var fn api.Function
	code := d.apiCall("PUT", "/v1/functions/"+name, strings.NewReader(spec), &fn)
	require.Contains(d.t, []int{200, 201}, code, "put %s: %+v", name, fn)
	return fn
}

// waitFor polls a function's status until ok holds for its latest revision.
func (d *ebbd) waitFor(name string, timeout time.Duration, ok func(api.RevisionStatus) bool) api.RevisionStatus {
	d.t.Helper()
	return d.pollStatus(name, timeout, 50*time.Millisecond, ok)
}

// pollStatus is waitFor with pause between polls.
func (d *ebbd) pollStatus(name string, timeout, pause time.Duration, ok func(api.RevisionStatus) bool) api.RevisionStatus {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	var last api.RevisionStatus
	for time.Now().Before(deadline) {
		var fn api.Function
		if d.apiCall("GET", "/v1/functions/"+name, nil, &fn) == http.StatusOK {
			for _, rev := range fn.Revisions {
				if rev.Name == fn.LatestRevision {
					last = rev
				}
			}
			if ok(last) {
				return last
			}
		}
		time.Sleep(pause) // polling the status of a real system
	}
	d.t.Fatalf("%s: condition not met within %s; last status %+v\n%s", name, timeout, last, d.log)
	return last
}

// get sends one request through the router to host.
func (d *ebbd) get(host, path string, header http.Header) (*http.Response, string) {
	d.t.Helper()
	req, err := http.NewRequest("GET", "http://"+d.httpAddr+path, nil)
	require.NoError(d.t, err)
	req.Host = host + "." + "localhost"
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := routerClient.Do(req)
	require.NoError(d.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(d.t, err)
	return resp, string(body)
}

var revisionLine = regexp.MustCompile(`revision=(\S+)`)

// TestDataPlane checks issue 4's acceptance end to end through ebbd with
// real containers and real clients.
func TestDataPlane(t *testing.T) {
	d := startEbbd(t)
	d.pushHello()

	t.Run("first request from zero", func(t *testing.T) {
		d.putSpec("cold", `{"image":"hello:latest","scale":{"initial":0}}`)
		d.waitFor("cold", 10*time.Second, func(r api.RevisionStatus) bool { return r.State == api.RevisionIdle })
		resp, body := d.get("cold", "/", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, body, "revision=cold-00001")
	})

	t.Run("burst of 1000 at zero under a hard limit of 10", func(t *testing.T) {
		hey := testenv.RequireBinary(t, "hey")
		d.putSpec("burst", `{"image":"hello:latest","concurrency":{"target":10,"hardLimit":10},"scale":{"initial":0,"scaleToZeroGrace":"5s"},"resources":{"memory":"64Mi"}}`)
		d.waitFor("burst", 10*time.Second, func(r api.RevisionStatus) bool { return r.State == api.RevisionIdle })
		out := runHey(t, hey, "-n", "1000", "-c", "1000", "-t", "120", "-host", "burst.localhost",
			"http://"+d.httpAddr+"/sleep?d=20ms")
		assert.Equal(t, 1000, heyStatus(out, 200), "every request gets 200:\n%s", out)
		rev := d.waitFor("burst", 10*time.Second, func(r api.RevisionStatus) bool { return r.Ready > 0 })
		total := 0
		for _, rep := range rev.Replicas {
			stats := fetch(t, "http://"+rep.Addr+"/stats")
			peak := statValue(t, stats, "max_inflight")
			total += statValue(t, stats, "requests")
			assert.LessOrEqual(t, peak, 10, "replica %s saw %d concurrent requests", rep.Name, peak)
		}
		assert.GreaterOrEqual(t, total, 1000, "the replicas served every request")
	})

	// The burst filled the node; once it drains to zero (5s grace) the node
	// has room for the warm revisions below.
	d.waitFor("burst", time.Minute, func(r api.RevisionStatus) bool { return r.Ready == 0 })

	// Two warm revisions for the split, tag, header, timeout and upload checks.
	d.putSpec("split", `{"image":"hello:latest","scale":{"min":1},"timeout":"1s"}`)
	d.putSpec("split", `{"image":"hello:latest","scale":{"min":1},"timeout":"1s","env":{"GREETING":"v2"}}`)
	d.waitFor("split", 30*time.Second, func(r api.RevisionStatus) bool { return r.Name == "split-00002" && r.Ready >= 1 })
	traffic := `{"traffic":[{"revision":"split-00001","percent":90,"tag":"stable"},{"revision":"split-00002","percent":10,"tag":"canary"}]}`
	require.Equal(t, http.StatusOK, d.apiCall("PUT", "/v1/functions/split/traffic", strings.NewReader(traffic), nil))
	d.waitFor("split", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready >= 1 })

	t.Run("90/10 split over 10000 requests", func(t *testing.T) {
		counts := d.countRevisions(t, "split", 10000, 16)
		share := float64(counts["split-00001"]) / 10000
		assert.InDelta(t, 0.90, share, 0.02, "counts %v", counts)
		assert.Equal(t, 10000, counts["split-00001"]+counts["split-00002"], "counts %v", counts)
	})

	t.Run("tag URL hits only its revision", func(t *testing.T) {
		counts := d.countRevisions(t, "canary-split", 300, 8)
		assert.Equal(t, map[string]int{"split-00002": 300}, counts)
	})

	t.Run("hop-by-hop headers stripped, forwarding headers set", func(t *testing.T) {
		h := http.Header{}
		h.Set("Connection", "X-Drop-Me")
		h.Set("X-Drop-Me", "secret")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
		h.Set("Te", "trailers")
		h.Set("Ebb-Replica", "forged")
		h.Set("X-Keep-Me", "yes")
		resp, _ := d.get("split", "/echo", h)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		for _, gone := range []string{"X-Echo-X-Drop-Me", "X-Echo-Keep-Alive", "X-Echo-Proxy-Authorization", "X-Echo-Te", "X-Echo-Ebb-Replica"} {
			assert.Empty(t, resp.Header.Get(gone), "%s must not reach the function", gone)
		}
		assert.Equal(t, "yes", resp.Header.Get("X-Echo-X-Keep-Me"))
		assert.Equal(t, "127.0.0.1", resp.Header.Get("X-Echo-X-Forwarded-For"))
		assert.Equal(t, "http", resp.Header.Get("X-Echo-X-Forwarded-Proto"))
		assert.Equal(t, "split.localhost", resp.Header.Get("X-Echo-X-Forwarded-Host"))
		assert.Contains(t, resp.Header.Get("X-Echo-Forwarded"), "for=127.0.0.1")
	})

	t.Run("timeout gives 504, fast requests untouched", func(t *testing.T) {
		start := time.Now()
		resp, _ := d.get("split", "/sleep?d=5s", nil)
		assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
		assert.Less(t, time.Since(start), 4*time.Second, "the 504 comes at the 1s timeout")
		resp, _ = d.get("split", "/sleep?d=10ms", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	})

	t.Run("1 GiB upload streams with bounded memory", func(t *testing.T) {
		before := vmHWM(t, d.cmd.Process.Pid)
		const size = 1 << 30
		req, err := http.NewRequest("POST", "http://"+d.httpAddr+"/discard", io.LimitReader(zeros{}, size))
		require.NoError(t, err)
		req.Host = "cold.localhost" // default 300s timeout; split's is 1s
		req.ContentLength = size
		resp, err := routerClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		assert.Equal(t, fmt.Sprintf("bytes=%d\n", size), string(body))
		growth := vmHWM(t, d.cmd.Process.Pid) - before
		assert.Less(t, growth, int64(128<<20), "ebbd's peak RSS grew by %d MiB for a 1 GiB upload", growth>>20)
	})
}

// countRevisions sends n requests with the given concurrency to host and
// counts which revision answered each.
func (d *ebbd) countRevisions(t *testing.T, host string, n, workers int) map[string]int {
	t.Helper()
	return d.countRevisionsWith(t, host, nil, n, workers)
}

// countRevisionsWith is countRevisions with header on every request.
func (d *ebbd) countRevisionsWith(t *testing.T, host string, header http.Header, n, workers int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				req, _ := http.NewRequest("GET", "http://"+d.httpAddr+"/", nil)
				req.Host = host + ".localhost"
				for k, vs := range header {
					req.Header[k] = vs
				}
				resp, err := routerClient.Do(req)
				if err != nil {
					t.Errorf("request: %v", err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				rev := "status-" + strconv.Itoa(resp.StatusCode)
				if m := revisionLine.FindStringSubmatch(string(body)); m != nil && resp.StatusCode == 200 {
					rev = m[1]
				}
				mu.Lock()
				counts[rev]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return counts
}

func runHey(t *testing.T, hey string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, hey, args...).CombinedOutput()
	require.NoError(t, err, "hey: %s", out)
	return string(out)
}

// heyStatus returns how many responses hey saw with the status code.
func heyStatus(out string, code int) int {
	m := regexp.MustCompile(fmt.Sprintf(`\[%d\]\s+(\d+) responses`, code)).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	resp, err := routerClient.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func statValue(t *testing.T, stats, key string) int {
	t.Helper()
	m := regexp.MustCompile(key + `=(\d+)`).FindStringSubmatch(stats)
	require.NotNil(t, m, "%s in %q", key, stats)
	n, _ := strconv.Atoi(m[1])
	return n
}

// vmHWM is a process's peak resident set size in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if kb, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
			require.NoError(t, err)
			return n << 10
		}
	}
	t.Fatalf("no VmHWM for pid %d", pid)
	return 0
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
