package e2e

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

var (
	ebpfFigures = flag.Bool("ebpf-figures", false, "measure issue 7's eBPF figures with TestEBPFFigures (about two minutes)")
	ebpfRounds  = flag.Int("ebpf-rounds", 5, "alternating rounds of TestEBPFFigures")
)

// TestEBPFFigures measures what issue 7 asks of the eBPF paths, side by side
// in one run, on real ebbds: router req/s and p99 with --ebpf off and on
// (two ebbds side by side, wrk runs alternating), function-to-function latency via
// the VIP against via the router, and the first response from zero via VIP
// wake-on-connect against via the router. It only logs figures, for
// bench/RESULTS.md; it is opt-in because it takes minutes:
//
//	go test ./e2e -run TestEBPFFigures -ebpf-figures -v
func TestEBPFFigures(t *testing.T) {
	if !*ebpfFigures {
		t.Skip("opt-in measurement: go test ./e2e -run TestEBPFFigures -ebpf-figures -v")
	}
	wrk := testenv.RequireBinary(t, "wrk")
	script := filepath.Join(t.TempDir(), "echo64k.lua")
	require.NoError(t, os.WriteFile(script, []byte("wrk.method = \"POST\"\nwrk.path = \"/echo\"\nwrk.body = string.rep(\"x\", 65536)\n"), 0o644))
	rounds := *ebpfRounds
	wrkRuns := map[string][]wrkResult{}
	f2f := map[string][]time.Duration{}

	// Both daemons run side by side so that the runs alternate closely;
	// the idle one costs next to nothing, and eBPF leaves the "off"
	// daemon's ports alone.
	daemons := map[string]*ebbd{}
	for _, mode := range []string{"off", "on"} {
		d := startEbbd(t, "--ebpf", mode, "--vip-prefix", fmt.Sprintf("127.78.%d.0/24", 1+rand.IntN(250)))
		d.pushHello()
		d.putSpec("dp", `{"image":"hello:latest","scale":{"min":1}}`)
		daemons[mode] = d
	}
	for _, d := range daemons {
		d.waitFor("dp", 30*time.Second, func(rs api.RevisionStatus) bool { return rs.Ready >= 1 })
		d.get("dp", "/", nil) // the router's first connection to the replica
	}
	vip := daemons["on"].vip("dp")

	for r := range rounds {
		for _, body := range []struct{ name, script string }{{"10 B", ""}, {"64 KiB", script}} {
			for _, mode := range []string{"off", "on"} {
				args := []string{"-t2", "-c32", "-d5s", "--latency", "-H", "Host: dp.localhost"}
				if body.script != "" {
					args = append(args, "-s", body.script)
				}
				w := runWrk(t, wrk, append(args, "http://"+daemons[mode].httpAddr+"/")...)
				key := "router, eBPF " + mode + ", " + body.name
				wrkRuns[key] = append(wrkRuns[key], w)
				t.Logf("round %d %s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, errors %d", r+1, key, w.rps, w.p50, w.p99, w.errors)
			}
		}
		// Function to function: a process on the node calling dp
		// sequentially with keep-alive, alternating paths in chunks.
		for range 4 {
			f2f["VIP"] = append(f2f["VIP"], sequential(t, 300, "http://"+vip+"/", "")...)
			for _, mode := range []string{"on", "off"} {
				f2f["router, eBPF "+mode] = append(f2f["router, eBPF "+mode], sequential(t, 300, "http://"+daemons[mode].httpAddr+"/", "dp.localhost")...)
			}
		}
	}
	daemons["off"].stop(syscall.SIGTERM)
	cold := coldStarts(t, daemons["on"], 6, 3)
	daemons["on"].stop(syscall.SIGTERM)

	t.Logf("data plane (wrk -t2 -c32 -d5s, %d alternating rounds; req/s median [min–max], p99 median):", rounds)
	for _, body := range []string{"10 B", "64 KiB"} {
		off, on := wrkRuns["router, eBPF off, "+body], wrkRuns["router, eBPF on, "+body]
		var ratios []float64
		for i := range off {
			ratios = append(ratios, on[i].rps/off[i].rps)
		}
		t.Logf("  %s: off %s req/s p99 %.2f ms; on %s req/s p99 %.2f ms; on/off per round %s",
			body, spread(field(off, func(w wrkResult) float64 { return w.rps }), "%.0f"), median(field(off, func(w wrkResult) float64 { return w.p99 })),
			spread(field(on, func(w wrkResult) float64 { return w.rps }), "%.0f"), median(field(on, func(w wrkResult) float64 { return w.p99 })),
			spread(ratios, "%.2f×"))
	}
	t.Logf("function to function (sequential GET /, keep-alive, %d requests per path, alternating in chunks of 300):", len(f2f["VIP"]))
	for _, k := range []string{"VIP", "router, eBPF on", "router, eBPF off"} {
		t.Logf("  %-17s p50 %s  p90 %s  p99 %s", k, pct(f2f[k], 50), pct(f2f[k], 90), pct(f2f[k], 99))
	}
	t.Logf("  VIP p50 / router p50 (eBPF on): %.2f", float64(pct(f2f["VIP"], 50))/float64(pct(f2f["router, eBPF on"], 50)))
	t.Log("first response from zero (6 functions × 3 rounds, alternating VIP/router, pre-created task):")
	for _, k := range []string{"VIP wake-on-connect", "router"} {
		t.Logf("  %-20s n=%d p50 %s  min %s  max %s", k, len(cold[k]), pct(cold[k], 50), pct(cold[k], 0), pct(cold[k], 100))
	}
}

// sequential sends n GETs one after another on one keep-alive connection
// and returns each one's latency.
func sequential(t *testing.T, n int, url, host string) []time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	out := make([]time.Duration, 0, n)
	for i := -20; i < n; i++ { // the first 20 warm the connection
		start := time.Now()
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		if i >= 0 {
			out = append(out, time.Since(start))
		}
	}
	return out
}

// coldStarts measures first responses from zero: k functions, each called
// once to learn its keep-alive (so that at zero it keeps a pre-created task,
// as the bench harness's cold starts do), then rounds of one request per
// function when it is back at zero, alternating per function and round
// between its VIP and the router, each after the previous start's pool
// refill. Each sample is the whole exchange on a new connection.
func coldStarts(t *testing.T, d *ebbd, k, rounds int) map[string][]time.Duration {
	t.Helper()
	const spec = `{"image":"hello:latest","scale":{"initial":0,"stableWindow":"6s","scaleToZeroGrace":"1s"},"resources":{"memory":"64Mi"}}`
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	names := make([]string, k)
	for i := range names {
		names[i] = fmt.Sprintf("cold%d", i)
		d.putSpec(names[i], spec)
	}
	for _, name := range names {
		r, _ := d.get(name, "/", nil)
		require.Equal(t, http.StatusOK, r.StatusCode)
	}
	out := map[string][]time.Duration{}
	for r := range rounds {
		for _, name := range names {
			d.waitFor(name, time.Minute, func(rs api.RevisionStatus) bool {
				return rs.Ready == 0 && rs.Desired == 0 && rs.PreCreated >= 1
			})
		}
		for i, name := range names {
			req, err := http.NewRequest("GET", "http://"+d.vip(name)+"/", nil)
			path := "VIP wake-on-connect"
			if (i+r)%2 == 1 {
				req, err = http.NewRequest("GET", "http://"+d.httpAddr+"/", nil)
				req.Host = name + ".localhost"
				path = "router"
			}
			require.NoError(t, err)
			start := time.Now()
			resp, err := client.Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			out[path] = append(out[path], took)
			// The agent refills the pool right after a start (runc create,
			// a few hundred ms of CPU); let it finish before the next sample.
			d.waitFor(name, time.Minute, func(rs api.RevisionStatus) bool { return rs.PreCreated >= 1 })
		}
	}
	return out
}

type wrkResult struct {
	rps, p50, p99 float64 // p50 and p99 in ms
	errors        int
}

var (
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	wrkErrors  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx3 = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func runWrk(t *testing.T, wrk string, args ...string) wrkResult {
	t.Helper()
	out, err := exec.Command(wrk, args...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var w wrkResult
	m := wrkRPS.FindSubmatch(out)
	require.NotNil(t, m, "%s", out)
	w.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, m := range wrkPct.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		switch string(m[3]) {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if string(m[1]) == "50" {
			w.p50 = v
		} else {
			w.p99 = v
		}
	}
	if m := wrkErrors.FindSubmatch(out); m != nil {
		for _, g := range m[1:] {
			n, _ := strconv.Atoi(string(g))
			w.errors += n
		}
	}
	if m := wrkNon2xx3.FindSubmatch(out); m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		w.errors += n
	}
	return w
}

func field(ws []wrkResult, f func(wrkResult) float64) []float64 {
	out := make([]float64, len(ws))
	for i, w := range ws {
		out[i] = f(w)
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func spread(xs []float64, format string) string {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return "-"
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", median(s), s[0], s[len(s)-1])
}

// pct is the p-th percentile (nearest rank), rounded for reading.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := p * (len(s) - 1) / 100
	return s[i].Round(100 * time.Nanosecond)
}
