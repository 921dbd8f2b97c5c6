package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

// TestAutoscaleFromZeroAndBack checks issue 5's end-to-end acceptance: 50
// concurrent clients for 30 s drive a target-10 function from zero to at
// least 5 replicas with no failed request; after the load it is back at
// zero within grace + 15 s; and the next request is served from zero.
func TestAutoscaleFromZeroAndBack(t *testing.T) {
	hey := testenv.RequireBinary(t, "hey")
	d := startEbbd(t)
	d.pushHello()
	const grace = 10 * time.Second
	d.putSpec("scale", `{"image":"hello:latest","concurrency":{"target":10},"scale":{"initial":0,"scaleToZeroGrace":"10s"}}`)
	d.waitFor("scale", 10*time.Second, func(r api.RevisionStatus) bool { return r.State == api.RevisionIdle })

	// Watch the ready count while hey drives the load.
	var mu sync.Mutex
	maxReady := 0
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond): // sampling a live system's status
			}
			var fn api.Function
			if d.apiCall("GET", "/v1/functions/scale", nil, &fn) == http.StatusOK && len(fn.Revisions) > 0 {
				mu.Lock()
				maxReady = max(maxReady, fn.Revisions[0].Ready)
				mu.Unlock()
			}
		}
	}()
	out := runHey(t, hey, "-z", "30s", "-c", "50", "-t", "60", "-host", "scale.localhost",
		"http://"+d.httpAddr+"/sleep?d=100ms")
	loadEnded := time.Now()
	close(stop)
	<-watched

	ok := heyStatus(out, 200)
	assert.Greater(t, ok, 1000, "hey output:\n%s", out)
	assert.NotContains(t, out, "Error distribution", "no request may fail:\n%s", out)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "responses") && !strings.Contains(line, "[200]") {
			t.Errorf("non-200 responses: %s", line)
		}
	}
	mu.Lock()
	assert.GreaterOrEqual(t, maxReady, 5, "50 clients at target 10 need at least 5 replicas")
	mu.Unlock()

	rev := d.waitFor("scale", grace+15*time.Second-time.Since(loadEnded), func(r api.RevisionStatus) bool {
		return r.Ready == 0 && r.Desired == 0
	})
	t.Logf("back to zero %s after the load ended (peak %d replicas)", time.Since(loadEnded).Round(100*time.Millisecond), maxReady)
	assert.Equal(t, api.RevisionIdle, rev.State)

	resp, body := d.get("scale", "/", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, "revision=scale-00001")
}

// TestNeverCalledFunctionStartsFromAPreCreatedTask: a function deployed warm
// whose replica scales down before anyone calls it keeps a pre-created
// task, so its first call is a task start, not a full container create.
func TestNeverCalledFunctionStartsFromAPreCreatedTask(t *testing.T) {
	d := startEbbd(t)
	d.pushHello()
	d.putSpec("unused", `{"image":"hello:latest","scale":{"scaleToZeroGrace":"1s","stableWindow":"6s"}}`)
	d.waitFor("unused", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready == 1 })
	rev := d.waitFor("unused", 30*time.Second, func(r api.RevisionStatus) bool {
		return r.Ready == 0 && r.Desired == 0 && r.PreCreated >= 1
	})
	assert.Equal(t, api.RevisionIdle, rev.State)

	hits := d.metricSeriesSum("ebb_nodeagent_start_seconds_count", `pool="hit"`)
	began := time.Now()
	resp, body := d.get("unused", "/", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	t.Logf("first call from zero took %s", time.Since(began).Round(time.Millisecond))
	assert.Equal(t, hits+1, d.metricSeriesSum("ebb_nodeagent_start_seconds_count", `pool="hit"`),
		"the first call started the pre-created task")
}
