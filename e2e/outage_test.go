package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

// TestRedisOutage stops the one Redis of an ebbd for 30 seconds under hey
// load, the way a Redis host lost and restarted would: the data plane
// serves from its last known state, so a warm function loses no request,
// and a function at zero, which would need a durable scale write to start,
// fails fast with 503 and Retry-After instead of hanging. Redis comes back
// from its AOF, and everything carries on: the function at zero starts, and
// a write through the API lands.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	hey := testenv.RequireBinary(t, "hey")
	srv := testenv.Redis(t)
	d := startEbbd(t, "--store", srv.URL())
	d.pushHello()
	d.putSpec("warm", `{"image":"hello:latest","scale":{"min":1,"max":1}}`)
	d.putSpec("cold", `{"image":"hello:latest","scale":{"initial":0}}`)
	d.waitFor("warm", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready == 1 })
	d.waitFor("cold", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready == 0 && r.Desired == 0 })
	resp, body := d.get("warm", "/", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)

	const outage = 30 * time.Second
	load := make(chan string, 1)
	go func() {
		load <- runHey(t, hey, "-z", "40s", "-c", "4", "-q", "50", "-t", "10",
			"-host", "warm.localhost", "http://"+d.httpAddr+"/")
	}()
	srv.Kill()
	down := time.Now()

	// A function at zero cannot start without Redis: it is refused at once.
	sent := time.Now()
	resp, body = d.get("cold", "/", nil)
	took := time.Since(sent)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"), "a 503 for a store outage says when to retry")
	assert.Less(t, took, 5*time.Second, "a start that cannot happen fails fast")
	t.Logf("at zero during the outage: %d in %s: %s", resp.StatusCode, took.Round(time.Millisecond), strings.TrimSpace(body))

	time.Sleep(time.Until(down.Add(outage))) // the outage itself is the scenario, not a wait for a condition
	srv.Restart(t)

	out := <-load
	sum := parseHeySummary(t, out)
	t.Logf("warm under load across a %s Redis outage: %d of %d requests 200", outage, sum.statuses[200], sum.total())
	require.Positive(t, sum.total(), out)
	assert.Equal(t, sum.total(), sum.statuses[200], "no request to a warm function fails while Redis is down:\n%s", out)

	// After the outage the cluster works again: the function at zero
	// starts, and a spec write lands.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body = d.get("cold", "/", nil)
		if resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling a real system's recovery
	}
	require.Equal(t, http.StatusOK, resp.StatusCode, "the function at zero starts once Redis is back: %s", body)
	fn := d.putSpec("warm", `{"image":"hello:latest","scale":{"min":1,"max":1},"env":{"AFTER":"outage"}}`)
	assert.Equal(t, "warm-00002", fn.LatestRevision)
}

// TestSentinelFailover runs ebbd on Redis Sentinel and kills the primary
// under load: warm functions lose no request, Sentinel promotes the
// replica, ebbd follows it on its own, and the API writes again.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	hey := testenv.RequireBinary(t, "hey")
	set := testenv.RedisSentinel(t)
	d := startEbbd(t, "--store", set.URL())
	d.pushHello()
	d.putSpec("warm", `{"image":"hello:latest","scale":{"min":1,"max":1}}`)
	d.waitFor("warm", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready == 1 })

	load := make(chan string, 1)
	go func() {
		load <- runHey(t, hey, "-z", "15s", "-c", "4", "-q", "50", "-t", "10",
			"-host", "warm.localhost", "http://"+d.httpAddr+"/")
	}()
	old := set.PrimaryAddr(t)
	killed := time.Now()
	set.KillPrimary(t)
	promoted := time.Since(killed)

	// ebbd writes again through the new primary.
	var fn api.Function
	for {
		code := d.apiCall("PUT", "/v1/functions/after", strings.NewReader(`{"image":"hello:latest","scale":{"initial":0}}`), &fn)
		if code == http.StatusCreated || code == http.StatusOK {
			break
		}
		require.Less(t, time.Since(killed), 30*time.Second, "ebbd never wrote through the promoted replica: %d", code)
		time.Sleep(50 * time.Millisecond) // polling a real failover
	}
	t.Logf("primary %s killed: replica %s promoted after %s, ebbd writing again after %s",
		old, set.PrimaryAddr(t), promoted.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	// The router learns of it through its watch, which has moved to the
	// new primary too.
	written := time.Now()
	resp, body := d.get("after", "/", nil)
	for resp.StatusCode == http.StatusNotFound && time.Since(written) < 20*time.Second {
		time.Sleep(50 * time.Millisecond) // polling a real system
		resp, body = d.get("after", "/", nil)
	}
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a function deployed after the failover starts from zero: %s", body)
	t.Logf("routed %s after the write", time.Since(written).Round(time.Millisecond))

	sum := parseHeySummary(t, <-load)
	t.Logf("warm under load across the failover: %d of %d requests 200", sum.statuses[200], sum.total())
	require.Positive(t, sum.total())
	assert.Equal(t, sum.total(), sum.statuses[200], "no request to a warm function fails during a failover")
}
