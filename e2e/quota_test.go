package e2e

import (
	"fmt"
	"net/http"
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

// revisionIn reads the latest revision's status of function fn in
// namespace ns; ok is false when the API did not answer it.
func (d *ebbd) revisionIn(ns, fn string) (api.RevisionStatus, bool) {
	d.t.Helper()
	var f api.Function
	if d.apiCall("GET", "/v1/namespaces/"+ns+"/functions/"+fn, nil, &f) != http.StatusOK {
		return api.RevisionStatus{}, false
	}
	for _, rev := range f.Revisions {
		if rev.Name == f.LatestRevision {
			return rev, true
		}
	}
	return api.RevisionStatus{}, false
}

var clippedDemand = regexp.MustCompile(`clipped by namespace quota: replicas 2 of 2; demand (\d+) replicas, runs 2`)

// TestQuota is issue 14's quota acceptance through real ebbd and
// containerd: namespace team-a, capped at 2 replicas, refuses a deploy
// that asks for 3 with the numbers; under load that wants 5 replicas its
// function runs 2 and its status says why, and the clipped decisions are
// counted; meanwhile functions in another namespace start from zero about
// as fast as on the idle machine.
// It runs on bbolt and on Redis.
func TestQuota(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) { testQuota(t) })
	t.Run("redis", func(t *testing.T) { testQuota(t, "--store", testenv.Redis(t).URL()) })
}

func testQuota(t *testing.T, args ...string) {
	hey := testenv.RequireBinary(t, "hey")
	d := startEbbd(t, args...)
	d.pushHello()
	assert.Contains(t, d.ebb("namespaces", "create", "team-a", "--max-replicas", "2"), "created namespace team-a")
	assert.Contains(t, d.ebb("namespaces", "quota", "team-a"), "team-a     -          2")

	var e api.ErrorBody
	require.Equal(t, http.StatusForbidden, d.apiCall("PUT", "/v1/namespaces/team-a/functions/big",
		strings.NewReader(`{"image":"hello:latest","scale":{"min":3}}`), &e))
	assert.Equal(t, api.CodeQuotaExceeded, e.Error.Code)
	assert.Equal(t, "namespace team-a: replicas 0 of 2 used, deploy wants 3 more", e.Error.Message)
	require.NotNil(t, e.Error.Quota)
	assert.Equal(t, api.QuotaExceeded{Namespace: "team-a", Resource: "replicas", Unit: "replicas", Limit: 2, Used: 0, Wants: 3}, *e.Error.Quota)

	require.Equal(t, http.StatusCreated, d.apiCall("PUT", "/v1/namespaces/team-a/functions/busy",
		strings.NewReader(`{"image":"hello:latest","concurrency":{"target":10},"scale":{"initial":0}}`), nil))

	// Cold starts of default's functions on the idle machine: each is a
	// new function's first request.
	const colds = 5
	for i := range 2 * colds {
		d.putSpec(fmt.Sprintf("cold-%d", i), `{"image":"hello:latest","scale":{"initial":0}}`)
	}
	for i := range 2 * colds {
		d.waitFor(fmt.Sprintf("cold-%d", i), 30*time.Second, func(r api.RevisionStatus) bool { return r.State == api.RevisionIdle })
	}
	coldStart := func(i int) time.Duration {
		start := time.Now()
		resp, body := d.get(fmt.Sprintf("cold-%d", i), "/", nil)
		took := time.Since(start)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		return took
	}
	var idle []time.Duration
	for i := range colds {
		idle = append(idle, coldStart(i))
	}

	// 35 concurrent clients at target 7 per replica want 5 replicas.
	// Sample team-a's status while hey runs.
	var mu sync.Mutex
	maxReady, maxDesired, demand := 0, 0, 0
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
			rev, ok := d.revisionIn("team-a", "busy")
			if !ok {
				continue
			}
			mu.Lock()
			maxReady, maxDesired = max(maxReady, rev.Ready), max(maxDesired, rev.Desired)
			if m := clippedDemand.FindStringSubmatch(rev.Message); m != nil {
				n, _ := strconv.Atoi(m[1])
				demand = max(demand, n)
			}
			mu.Unlock()
		}
	}()
	heyDone := make(chan string, 1)
	go func() {
		heyDone <- runHey(t, hey, "-z", "25s", "-c", "35", "-t", "60", "-host", "busy.team-a.localhost",
			"http://"+d.httpAddr+"/sleep?d=100ms")
	}()
	// Once team-a is clipped, default's cold starts again.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		clipped := demand > 0
		mu.Unlock()
		if clipped {
			break
		}
		require.True(t, time.Now().Before(deadline), "team-a was not clipped within 20 s:\n%s", d.log)
		time.Sleep(100 * time.Millisecond) // polling what the sampler saw of a live system
	}
	var loaded []time.Duration
	for i := colds; i < 2*colds; i++ {
		loaded = append(loaded, coldStart(i))
	}
	out := <-heyDone
	close(stop)
	<-watched

	assert.Greater(t, heyStatus(out, 200), 500, "hey output:\n%s", out)
	assert.NotContains(t, out, "Error distribution", "no request may fail:\n%s", out)
	mu.Lock()
	assert.Equal(t, 2, maxReady, "team-a runs what its quota allows, no more")
	assert.Equal(t, 2, maxDesired)
	assert.GreaterOrEqual(t, demand, 5, "the status says the demand the quota clipped")
	mu.Unlock()
	assert.Positive(t, d.metric("ebb_autoscaler_quota_clipped_total", `namespace="team-a"`))
	assert.Zero(t, d.metric("ebb_autoscaler_quota_clipped_total", `namespace="default"`))

	// The cold starts beside the saturated namespace: on this shared
	// machine hey's load itself costs CPU, so the bound is loose; what it
	// rules out is a cold start waiting on team-a's quota (a tick, 2 s) or
	// finding no room.
	t.Logf("default's cold start p50: idle %s, beside team-a at its quota %s (all: %v / %v)",
		pct(idle, 50), pct(loaded, 50), idle, loaded)
	assert.Less(t, pct(loaded, 50), 2*pct(idle, 50)+500*time.Millisecond)
}
