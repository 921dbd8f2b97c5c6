package harness

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseWrk(t *testing.T) {
	b, err := os.ReadFile("testdata/wrk.txt")
	require.NoError(t, err)
	r, err := ParseWrk(string(b))
	require.NoError(t, err)
	assert.Equal(t, WrkResult{Requests: 8575, RPS: 2822.01, P50: 0.78, P75: 44.31, P90: 180.89, P99: 1530, Non2xx: 7, SocketErrs: 3}, r)

	_, err = ParseWrk("Running 1s test\nRequests/sec: 10\n")
	assert.ErrorContains(t, err, "--latency")
}

func TestPercentileAndSpread(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		p    float64
		want float64
	}{
		{"empty", nil, 50, 0},
		{"one", []float64{3}, 99, 3},
		{"even median", []float64{1, 2, 3, 4}, 50, 2.5},
		{"p90 interpolates", []float64{0, 10}, 90, 9},
		{"p100", []float64{1, 5, 9}, 100, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.InDelta(t, tt.want, Percentile(tt.in, tt.p), 1e-9)
		})
	}
	s := SpreadOf([]float64{3, 1, 2})
	assert.Equal(t, Spread{Median: 2, Min: 1, Max: 3, Runs: []float64{3, 1, 2}}, s)
	assert.Equal(t, "2.00× (1.00×–3.00×)", s.Format("%.2f×"))
	assert.Equal(t, "5", SpreadOf([]float64{5}).Format("%.0f"))
	assert.Equal(t, []float64{2, 0.5}, Ratios([]float64{4, 1, 7}, []float64{2, 2}))
	assert.Equal(t, []float64{1, -1}, Diffs([]float64{3, 1}, []float64{2, 2}))

	d := Summarize([]time.Duration{4 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond})
	assert.Equal(t, 3, d.N)
	assert.InDelta(t, 3.0, d.P50, 1e-9)
	assert.InDelta(t, 2.0, d.Min, 1e-9)
	assert.InDelta(t, 4.0, d.Max, 1e-9)
}

func TestBlockRatios(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	got := blockRatios(ms(10, 10, 30, 30), ms(5, 5, 10, 10), 2)
	assert.Equal(t, []float64{2, 3}, got)
	assert.Nil(t, blockRatios(nil, ms(1), 2))
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP ebb_router_routes Hosts.
# TYPE ebb_router_routes gauge
ebb_router_routes 3
ebb_nodeagent_start_seconds_sum{pool="hit"} 0.5
ebb_nodeagent_start_seconds_count{pool="hit"} 2
ebb_router_cold_start_seconds_sum{function="a",le="x"} 1.25
ebb_router_cold_start_seconds_count{function="cold00",namespace="default"} 4
ebb_router_cold_start_seconds_count{function="cold00.team-a",namespace="team-a"} 9
weird{b="q\"uote",a="comma, inside"} 7 1700000000
`
	m, err := ParseMetrics(strings.NewReader(text))
	require.NoError(t, err)
	assert.Equal(t, 3.0, m.Get("ebb_router_routes"))
	assert.Equal(t, 7.0, m.Get("weird", "a", "comma, inside", "b", `q"uote`))
	// A series with more labels than asked for still matches: the
	// namespace label came after the harness's queries.
	assert.Equal(t, 4.0, m.Get("ebb_router_cold_start_seconds_count", "function", "cold00"))
	assert.Equal(t, 13.0, m.Get("ebb_router_cold_start_seconds_count"), "every series of the metric, summed")
	assert.Equal(t, 0.0, m.Get("ebb_router_cold_start_seconds_count", "function", "cold0"))
	before := Metrics{`ebb_nodeagent_start_seconds_sum{pool="hit"}`: 0.25, `ebb_nodeagent_start_seconds_count{pool="hit"}`: 1}
	h := m.Hist(before, "ebb_nodeagent_start_seconds", "pool", "hit")
	assert.Equal(t, HistDelta{Sum: 0.25, Count: 1}, h)
	assert.Equal(t, 0.25, h.Mean())

	_, err = ParseMetrics(strings.NewReader("broken{a=\"x\" 1\n"))
	assert.Error(t, err)
	_, err = ParseMetrics(strings.NewReader("novalue\n"))
	assert.Error(t, err)
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
BenchmarkRouteLookup/sequential-2         	48372094	        24.61 ns/op	       0 B/op	       0 allocs/op
BenchmarkRouteLookup/parallel-2           	100000000	        12.0 ns/op
PASS
`
	assert.Equal(t, []GoBench{
		{Name: "BenchmarkRouteLookup/sequential-2", NsPerOp: 24.61},
		{Name: "BenchmarkRouteLookup/parallel-2", NsPerOp: 12},
	}, ParseGoBench(out))
}

func TestSpliceGenerated(t *testing.T) {
	gen := beginMarker + "\nNEW\n" + endMarker + "\n"
	tests := []struct {
		name, old, want string
	}{
		{"empty file", "", "# Benchmark results\n\n" + gen},
		{"before the first section", "# Results\n\nintro\n\n## Trace replay\nkept\n", "# Results\n\nintro\n\n" + gen + "\n## Trace replay\nkept\n"},
		{"replaces its own part only", "# R\n\n" + beginMarker + "\nOLD\n" + endMarker + "\n\n## eBPF\nkept\n", "# R\n\n" + gen + "\n## eBPF\nkept\n"},
		{"no sections", "# R\nintro", "# R\nintro\n\n" + gen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, spliceGenerated(tt.old, gen))
		})
	}
}

func TestPeerConfigs(t *testing.T) {
	ha := haproxyConfig("127.0.0.1:1000", "127.0.0.1:2000")
	assert.Contains(t, ha, "nbthread 1")
	assert.Contains(t, ha, "bind 127.0.0.1:1000")
	assert.Contains(t, ha, "server replica1 127.0.0.1:2000")
	ng := nginxConfig("/tmp/x", "127.0.0.1:1000", "127.0.0.1:2000")
	assert.Contains(t, ng, "worker_processes 1;")
	assert.Contains(t, ng, "listen 127.0.0.1:1000;")
	assert.Contains(t, ng, "server 127.0.0.1:2000;")
	assert.Contains(t, ng, "pid /tmp/x/nginx.pid;")
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		err  string
	}{
		{"all sections", Config{}, ""},
		{"known section", Config{Only: []string{"coldstart", "ebpf"}}, ""},
		{"unknown section", Config{Only: []string{"warp"}}, `-only "warp"`},
		{"negative gomaxprocs", Config{EbbdGOMAXPROCS: -1}, "GOMAXPROCS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if tt.err == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tt.err)
			}
		})
	}
	// EbbdGOMAXPROCS -1 survives WithDefaults so Validate sees it.
	assert.Equal(t, 1, Config{}.WithDefaults().EbbdGOMAXPROCS)
}

// The default trace is the subset shipped in bench/traces, so trace replay
// runs on a fresh clone (the test runs in bench/harness, two levels down).
func TestDefaultTraceIsShipped(t *testing.T) {
	c := Config{RepoDir: "../.."}.WithDefaults()
	for _, p := range []string{c.Trace, strings.Replace(c.Trace, "_inv", "_run", 1)} {
		_, err := os.Stat(p)
		assert.NoError(t, err)
	}
}

func TestRemoveTreeRefusesOutsideTemp(t *testing.T) {
	assert.Error(t, RemoveTree("/etc"))
	assert.Nil(t, KillUnder("/"))
}

func TestParseHey(t *testing.T) {
	out := `
Summary:
  Total:	30.1045 secs
  Slowest:	0.3521 secs
  Fastest:	0.1002 secs
  Average:	0.1101 secs
  Requests/sec:	905.2150

  Total data:	300 bytes
  Size/request:	11 bytes

Response time histogram:
  0.100 [1]	|
  0.125 [2]	|■■

Latency distribution:
  10% in 0.1005 secs
  50% in 0.1021 secs
  90% in 0.1300 secs
  99% in 0.2500 secs

Details (average, fastest, slowest):
  DNS+dialup:	0.0001 secs, 0.0000 secs, 0.0100 secs

Status code distribution:
  [200]	27245 responses
  [502]	3 responses

Error distribution:
  [2]	Get "http://127.0.0.1:1/": dial tcp 127.0.0.1:1: connect: connection refused
`
	r, err := ParseHey(out)
	require.NoError(t, err)
	assert.InDelta(t, 30.1045, r.TotalSeconds, 1e-9)
	assert.InDelta(t, 905.215, r.RPS, 1e-9)
	assert.InDelta(t, 102.1, r.P50, 1e-9)
	assert.InDelta(t, 130.0, r.P90, 1e-9)
	assert.InDelta(t, 250.0, r.P99, 1e-9)
	assert.InDelta(t, 352.1, r.Slowest, 1e-9)
	assert.Equal(t, map[int]int64{200: 27245, 502: 3}, r.Statuses)
	assert.Equal(t, int64(27250), r.Requests())
	assert.Equal(t, int64(5), r.Failed())

	_, err = ParseHey("nothing")
	assert.Error(t, err)
}

// fakeResult is a section result for the report tests.
type fakeResult struct{}

func (fakeResult) Rows() []Row {
	return []Row{{Figure: "x | y", Value: "1 ms", Baseline: "2 ms", Ratio: "0.50×", Method: "by hand"}}
}
func (fakeResult) Goals() []Goal {
	return []Goal{{Source: "issue 9", Goal: "x ≤ 1 ms", Value: "1 ms", Status: GoalMet}}
}
func (fakeResult) Markdown() string { return "Method: a fake." }

func TestRenderGenerated(t *testing.T) {
	rep := newReport(Config{Quick: true, Command: "make bench QUICK=1"}.WithDefaults(), time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	rep.add("coldstart", fakeResult{}, nil, time.Minute)
	rep.add("burst", nil, assert.AnError, time.Second)
	rep.Elapsed, rep.ElapsedSeconds = "1m1s", 61
	rep.finish()
	out := renderGenerated(rep.Sections, "ebbbench-x.json", rep)
	for _, want := range []string{
		beginMarker, endMarker, "`make bench QUICK=1`",
		`| Cold start | x \| y | 1 ms | 2 ms | 0.50× | by hand |`,
		"| x ≤ 1 ms | issue 9 | 1 ms | **met** |",
		"| Activator burst | **failed** |",
		"### Cold start", "Method: a fake.", "make bench BENCH=coldstart QUICK=1",
	} {
		assert.Contains(t, out, want)
	}
	// Only a run of every section checks the harness's time limit.
	assert.Len(t, rep.Goals, 1)
	assert.Equal(t, GoalMet, rep.Goals[0].Status)
}
