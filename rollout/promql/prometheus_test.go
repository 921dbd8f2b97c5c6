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

// TestRealPrometheus runs the checks against a real prometheus (the Debian
// package) scraping, every second, a server that exposes a canary's
// counter and gauge.
func TestRealPrometheus(t *testing.T) {
	var scrapes atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := scrapes.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE ebb_test_requests_total counter\nebb_test_requests_total{revision=\"x-00002\"} %d\n", 10*n)
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
	rateQuery, err := Expand(`sum(rate(ebb_test_requests_total{revision="{{canary}}",job="test"}[{{interval}}]))`, vars)
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
		{Query: `ebb_test_inflight{revision="{{canary}}"}`},                                        // 0: the gauge
		{Query: `sum(rate(ebb_test_requests_total{revision="{{ canary }}"}[{{interval}}]))`},       // 1: a rate
		{Query: `scalar(ebb_test_inflight{revision="{{canary}}"}) * 2`},                            // 2: a scalar
		{Query: `ebb_test_inflight{revision="{{stable}}"}`},                                        // 3: no such series
		{Query: `{revision="{{canary}}"}`},                                                         // 4: two series
		{Query: `ebb_test_inflight{revision="{{canary}}"}[{{interval}}]`},                          // 5: a matrix
		{Query: `"{{function}}"`},                                                                  // 6: a string
		{Query: `sum(ebb_test_inflight{namespace="{{namespace}}"`},                                 // 7: a syntax error
		{Query: `sum(ebb_test_inflight{revision="{{canary}}"}) / sum(up{job="{{function}}"}) > 0`}, // 8: empty by filter
	}
	values, err := Checker{Querier: client}.Check(t.Context(), time.Now(), checks, vars)
	require.Len(t, values, len(checks))

	assert.Equal(t, 7.5, values[0], "a gauge is read exactly")
	assert.Greater(t, values[1], 0.0, "the counter grows")
	assert.Equal(t, 15.0, values[2])
	for _, i := range []int{3, 4, 5, 6, 7, 8} {
		assert.True(t, math.IsNaN(values[i]), "check %d: %v", i, values[i])
	}

	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, `promql check 4: query "{revision=\"x-00002\"}": returned 2 series`)
	assert.Contains(t, msg, "promql check 5: ")
	assert.Contains(t, msg, "matrix")
	assert.Contains(t, msg, "promql check 6: ")
	assert.Contains(t, msg, `promql check 7: query "sum(ebb_test_inflight{namespace=\"default\"": bad_data`)
	for _, quiet := range []string{"check 0", "check 1", "check 2", "check 3", "check 8"} {
		assert.NotContains(t, msg, quiet, "no value is not an error")
	}
}
