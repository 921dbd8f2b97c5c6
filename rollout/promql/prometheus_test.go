package promql

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

// errorRatio is doc.go's example: the canary's 5xx ratio.
const errorRatio = `sum(rate(ebb_router_requests_total{revision="{{canary}}",code=~"5.."}[{{interval}}]))
  / sum(rate(ebb_router_requests_total{revision="{{canary}}"}[{{interval}}]))`

// TestRealPrometheus runs the checks against a real prometheus (the Debian
// package) scraping, every second, a server that exposes a canary's
// request counter, as ebb's router names it, and a gauge.
func TestRealPrometheus(t *testing.T) {
	var scrapes atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := scrapes.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE ebb_router_requests_total counter\n"+
			"ebb_router_requests_total{revision=\"x-00002\",code=\"200\"} %d\n"+
			"ebb_router_requests_total{revision=\"x-00002\",code=\"500\"} %d\n", 30*n, 10*n)
		fmt.Fprint(w, "# TYPE ebb_test_inflight gauge\nebb_test_inflight{revision=\"x-00002\"} 7.5\n")
	}))
	t.Cleanup(target.Close)
	start := time.Now()
	prom := testenv.StartPrometheus(t, strings.TrimPrefix(target.URL, "http://"))

	client, err := New(Config{URL: prom.URL, Timeout: 2500 * time.Millisecond}) // not whole seconds, as Prometheus takes them
	require.NoError(t, err)
	vars := Vars{Canary: "x-00002", Stable: "x-00001", Function: "x", Namespace: "default", Interval: 5 * time.Second}

	// A rate needs two scrapes in its window, and the first comes about 5s
	// after prometheus starts: wait for them.
	rateQuery, err := Expand(`sum(rate(ebb_router_requests_total{revision="{{canary}}",job="test"}[{{interval}}]))`, vars)
	require.NoError(t, err)
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		v, err := client.Query(t.Context(), rateQuery, time.Now())
		require.NoError(t, err)
		if !math.IsNaN(v) {
			t.Logf("rate after %s, %d scrapes", time.Since(start), scrapes.Load())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rate after %d scrapes; prometheus logged:\n%s", scrapes.Load(), prom.Log())
		}
		<-tick.C
	}

	checks := []api.PromCheck{
		0:  {Query: `ebb_test_inflight{revision="{{canary}}"}`},                                    // the gauge
		1:  {Query: `sum(rate(ebb_router_requests_total{revision="{{ canary }}"}[{{interval}}]))`}, // a rate
		2:  {Query: errorRatio},
		3:  {Query: `scalar(ebb_test_inflight{revision="{{canary}}"}) * 2`},   // a scalar
		4:  {Query: `ebb_test_inflight{revision="{{stable}}"}`},               // no such series
		5:  {Query: `sum(ebb_test_inflight{revision="{{canary}}"}) > 100`},    // filtered out
		6:  {Query: `sum(ebb_test_inflight{revision="{{canary}}"}) * 0 / 0`},  // a NaN sample
		7:  {Query: `ebb_router_requests_total{revision="{{canary}}"}`},       // two series
		8:  {Query: `ebb_test_inflight{revision="{{canary}}"}[{{interval}}]`}, // a matrix
		9:  {Query: `"{{function}}"`},                                         // a string
		10: {Query: `sum(ebb_test_inflight{namespace="{{namespace}}"`},        // a syntax error
	}
	values, err := Checker{Querier: client}.Check(t.Context(), time.Now(), checks, vars)
	require.Len(t, values, len(checks))

	assert.Equal(t, 7.5, values[0], "a gauge is read exactly")
	assert.Greater(t, values[1], 0.0, "the counter grows")
	assert.InDelta(t, 0.25, values[2], 1e-9, "10 of every 40 requests are 5xx")
	assert.Equal(t, 15.0, values[3])
	for i := 4; i < len(checks); i++ {
		assert.True(t, math.IsNaN(values[i]), "check %d: %v", i, values[i])
	}

	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, `promql check 7: query "ebb_router_requests_total{revision=\"x-00002\"}": returned 2 series`)
	assert.Contains(t, msg, "promql check 8: ")
	assert.Contains(t, msg, "matrix")
	assert.Contains(t, msg, "promql check 9: ")
	assert.Contains(t, msg, `promql check 10: query "sum(ebb_test_inflight{namespace=\"default\"": bad_data`)
	for i := range 7 {
		assert.NotContains(t, msg, fmt.Sprintf("check %d:", i), "no value is not an error")
	}
}
