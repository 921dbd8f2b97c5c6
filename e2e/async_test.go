package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

// submitAsync sends one request through the router to fn with Ebb-Invoke:
// async (and header) and returns the 202's invocation id and Location.
func (d *ebbd) submitAsync(fn, path, body string, header http.Header) (id, location string) {
	d.t.Helper()
	resp, err := d.sendAsync(fn, path, body, header)
	require.NoError(d.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	require.Equal(d.t, http.StatusAccepted, resp.StatusCode, "%s", raw)
	var brief api.Invocation
	require.NoError(d.t, json.Unmarshal(raw, &brief), "%s", raw)
	id = resp.Header.Get(api.HeaderInvocationID)
	require.NotEmpty(d.t, id)
	assert.Equal(d.t, id, brief.ID)
	return id, resp.Header.Get("Location")
}

// sendAsync is the request of submitAsync, its answer unread.
func (d *ebbd) sendAsync(fn, path, body string, header http.Header) (*http.Response, error) {
	return sendAsyncTo(d.httpAddr, fn, path, body, header)
}

// sendAsyncTo sends an async request to fn through the router at addr.
func sendAsyncTo(addr, fn, path, body string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Host = fn + ".localhost"
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set(api.HeaderInvoke, "async")
	return routerClient.Do(req)
}

// invocation reads one invocation through the API.
func (d *ebbd) invocation(fn, id string) api.Invocation {
	d.t.Helper()
	var inv api.Invocation
	code := d.apiCall("GET", "/v1/namespaces/default/functions/"+fn+"/invocations/"+id, nil, &inv)
	require.Equal(d.t, http.StatusOK, code, "get invocation %s/%s", fn, id)
	return inv
}

// waitInvocation polls the invocation at location (a 202's Location)
// until it is final, or fails the test after limit.
func (d *ebbd) waitInvocation(location string, limit time.Duration) api.Invocation {
	d.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var inv api.Invocation
		require.Equal(d.t, http.StatusOK, d.apiCall("GET", location, nil, &inv), location)
		if inv.Status.Final() {
			return inv
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("invocation %s not final within %s: %+v\n%s", location, limit, inv, d.log)
		}
		time.Sleep(50 * time.Millisecond) // polling a real system
	}
}

// seen is examples/hello's /seen: the async deliveries its replica got.
type seen struct {
	Replica     string `json:"replica"`
	Invocations map[string]struct {
		Count     int       `json:"count"`
		First     time.Time `json:"first"`
		Attempts  []int     `json:"attempts"`
		Scheduled string    `json:"scheduled"`
	} `json:"invocations"`
}

// seenBy reads fn's /seen through the router (a synchronous request).
func (d *ebbd) seenBy(fn string) seen {
	d.t.Helper()
	resp, body := d.get(fn, "/seen", nil)
	require.Equal(d.t, http.StatusOK, resp.StatusCode, body)
	var s seen
	require.NoError(d.t, json.Unmarshal([]byte(body), &s), body)
	return s
}

// TestAsync is issue 20's acceptance of asynchronous invocation, but for
// the kill test (TestAsyncKillMidDelivery): 202 then the result by id,
// retries, dead letters, a callback to loopback, and a function woken
// from zero by queued work. Each against real ebbd, containerd and hello.
func TestAsync(t *testing.T) {
	t.Parallel()
	// The callback's test server listens on loopback, which callbacks may
	// reach only when allowed.
	d := startEbbd(t, "--invoker-callback-allow", "127.0.0.0/8")
	d.pushHello()
	// Warm: one replica throughout, so /seen sees every delivery.
	d.putSpec("warm", `{"image":"hello:latest","timeout":"10s","scale":{"min":1,"max":1}}`)
	d.putSpec("cold", `{"image":"hello:latest","scale":{"initial":0,"max":1}}`)
	d.waitFor("warm", time.Minute, func(r api.RevisionStatus) bool { return r.Ready == 1 })

	t.Run("end to end", func(t *testing.T) {
		began := time.Now()
		id, loc := d.submitAsync("warm", "/echo?x=1", "ping async", http.Header{"Content-Type": {"text/x-test"}})
		assert.Equal(t, "/v1/namespaces/default/functions/warm/invocations/"+id, loc)
		inv := d.waitInvocation(loc, 30*time.Second)
		t.Logf("202 to Succeeded in %s", time.Since(began).Round(time.Millisecond))
		require.Equal(t, api.InvocationSucceeded, inv.Status, "%+v", inv)
		assert.Equal(t, 1, inv.Attempts)
		require.NotNil(t, inv.Result)
		assert.Equal(t, http.StatusOK, inv.Result.Status)
		assert.Equal(t, "ping async", string(inv.Result.Body), "the function's body is kept")
		assert.Equal(t, "text/x-test", inv.Result.Header.Get("Content-Type"))
		assert.Equal(t, id, inv.Result.Header.Get("X-Echo-X-Ebb-Invocation-Id"), "the delivery names the invocation")
		assert.Equal(t, "warm", inv.Function)
		assert.Equal(t, "default", inv.Namespace)
		// The CLI reads the same.
		out := d.ebb("invocations", "get", "warm", id)
		assert.Contains(t, out, "Succeeded")
	})

	t.Run("retries then success", func(t *testing.T) {
		_, loc := d.submitAsync("warm", "/flaky?fail=2", "", nil)
		inv := d.waitInvocation(loc, time.Minute)
		require.Equal(t, api.InvocationSucceeded, inv.Status, "%+v", inv)
		assert.Equal(t, 3, inv.Attempts, "two 503s, then success")
		require.NotNil(t, inv.Result)
		assert.Equal(t, "succeeded at attempt 3\n", string(inv.Result.Body))
		s := d.seenBy("warm").Invocations[inv.ID]
		assert.Equal(t, []int{1, 2, 3}, s.Attempts, "the function saw each attempt once")
	})

	t.Run("dead letter", func(t *testing.T) {
		_, loc := d.submitAsync("warm", "/flaky?fail=-1", "", http.Header{api.HeaderMaxAttempts: {"2"}})
		inv := d.waitInvocation(loc, time.Minute)
		require.Equal(t, api.InvocationDeadLetter, inv.Status, "%+v", inv)
		assert.Equal(t, 2, inv.Attempts)
		assert.Equal(t, 2, inv.MaxAttempts)
		require.NotNil(t, inv.Result)
		assert.Equal(t, http.StatusServiceUnavailable, inv.Result.Status)
		assert.Equal(t, []int{1, 2}, d.seenBy("warm").Invocations[inv.ID].Attempts)
	})

	t.Run("callback", func(t *testing.T) {
		got := make(chan api.Invocation, 4)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var inv api.Invocation
			if err := json.NewDecoder(r.Body).Decode(&inv); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			got <- inv
		}))
		t.Cleanup(srv.Close)
		require.True(t, strings.HasPrefix(srv.URL, "http://127.0.0.1:"), srv.URL)
		id, loc := d.submitAsync("warm", "/echo", "call me back", http.Header{api.HeaderCallbackURL: {srv.URL + "/done"}})
		select {
		case inv := <-got:
			assert.Equal(t, id, inv.ID)
			assert.Equal(t, api.InvocationSucceeded, inv.Status)
			assert.Equal(t, "warm", inv.Function)
			require.NotNil(t, inv.Result)
			assert.Equal(t, "call me back", string(inv.Result.Body))
		case <-time.After(30 * time.Second):
			t.Fatalf("no callback within 30s: %+v", d.invocation("warm", id))
		}
		// The delivery of the callback is recorded, once it is.
		deadline := time.Now().Add(10 * time.Second)
		for inv := d.waitInvocation(loc, time.Second); !strings.HasPrefix(inv.CallbackStatus, "Delivered"); inv = d.invocation("warm", id) {
			require.True(t, time.Now().Before(deadline), "callback status: %q", inv.CallbackStatus)
			time.Sleep(50 * time.Millisecond) // polling a real system
		}
		assert.Empty(t, got, "one callback")

		// Cloud metadata is refused at submit, whatever is allowed.
		resp, err := d.sendAsync("warm", "/echo", "", http.Header{api.HeaderCallbackURL: {"http://169.254.169.254/latest/meta-data/"}})
		require.NoError(t, err)
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", raw)
		assert.Contains(t, string(raw), api.HeaderCallbackURL)
	})

	t.Run("scale from zero", func(t *testing.T) {
		d.waitFor("cold", time.Minute, func(r api.RevisionStatus) bool { return r.State == api.RevisionIdle && r.Ready == 0 })
		began := time.Now()
		_, loc := d.submitAsync("cold", "/", "", nil)
		inv := d.waitInvocation(loc, time.Minute)
		t.Logf("queued work woke the function from zero: 202 to Succeeded in %s", time.Since(began).Round(time.Millisecond))
		require.Equal(t, api.InvocationSucceeded, inv.Status, "%+v", inv)
		require.NotNil(t, inv.Result)
		assert.Contains(t, string(inv.Result.Body), "revision=cold-00001")
		rev := d.waitFor("cold", 10*time.Second, func(r api.RevisionStatus) bool { return r.Ready >= 1 })
		assert.Equal(t, 1, rev.Ready)
	})
}

// TestAsyncKillMidDelivery is issue 20's durability test: 1000
// invocations submitted through the router, ebbd SIGKILLed in the middle
// of their delivery and restarted on the same data dir; all 1000
// succeed, and the function's own record of the ids it saw bounds the
// duplicates.
func TestAsyncKillMidDelivery(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		store func(t *testing.T) []string
	}{
		{"embedded", func(*testing.T) []string { return nil }},
		// The queue in Redis, as on many nodes: the node's ebbd, its
		// invoker and router with it, is lost and comes back.
		{"redis", func(t *testing.T) []string { return []string{"--store", testenv.Redis(t).URL()} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testAsyncKillMidDelivery(t, tt.store(t))
		})
	}
}

func testAsyncKillMidDelivery(t *testing.T, storeArgs []string) {
	const (
		total = 1000
		// margin shortens the claims' visibility past the function's
		// timeout, so the killed daemon's claims lapse in seconds.
		margin = "1s"
		// asyncLimit is the deliveries in flight at once: the most a kill
		// cuts short, so the bound on the duplicates.
		asyncLimit = 10
	)
	d := startEbbd(t, append([]string{"--invoker-visibility-margin", margin}, storeArgs...)...)
	d.pushHello()
	d.putSpec("durable", fmt.Sprintf(`{"image":"hello:latest","timeout":"2s","concurrency":{"target":50},"scale":{"min":1,"max":1},"async":{"maxConcurrency":%d}}`, asyncLimit))
	d.waitFor("durable", time.Minute, func(r api.RevisionStatus) bool { return r.Ready == 1 })

	// Submit with 32 clients at once.
	ids := submitMany(t, total, func(i int) (*http.Response, error) {
		return d.sendAsync("durable", "/sleep?d=50ms", fmt.Sprintf("n=%d", i), nil)
	})

	// Kill once a good part, not all, has been delivered.
	var before seen
	for deadline := time.Now().Add(time.Minute); ; {
		before = d.seenBy("durable")
		if len(before.Invocations) >= total/3 {
			break
		}
		require.True(t, time.Now().Before(deadline), "only %d delivered within a minute", len(before.Invocations))
		time.Sleep(20 * time.Millisecond) // polling a real system
	}
	require.Less(t, len(before.Invocations), total, "the kill must come mid-delivery")
	d.stop(syscall.SIGKILL)
	killed := time.Now()
	t.Logf("SIGKILL after %d of %d delivered", len(before.Invocations), total)
	d.start()
	t.Logf("restarted in %s", time.Since(killed).Round(time.Millisecond))

	// Every one completes.
	statuses, attempts := waitAllFinal(t, ids, 90*time.Second, func(id string) api.Invocation { return d.invocation("durable", id) })
	t.Logf("all %d final %s after the kill: %v; attempts %v", total, time.Since(killed).Round(time.Millisecond), statuses, attempts)
	assert.Equal(t, map[api.InvocationStatus]int{api.InvocationSucceeded: total}, statuses, "none lost, none failed")

	// Duplicates, by the function's record.
	after := d.seenBy("durable")
	sameReplica := after.Replica == before.Replica
	counts := map[string]int{}
	for id, s := range after.Invocations {
		counts[id] = s.Count
	}
	if !sameReplica {
		// A new replica's record starts empty: add the old one's.
		t.Logf("the replica changed across the restart (%s -> %s): duplicates are a lower bound", before.Replica, after.Replica)
		for id, s := range before.Invocations {
			counts[id] += s.Count
		}
	}
	dups := 0
	var dupIDs []string
	for _, id := range ids {
		switch c := counts[id]; {
		case c == 0 && sameReplica:
			t.Errorf("invocation %s succeeded but the function never saw it", id)
		case c > 1:
			dups += c - 1
			dupIDs = append(dupIDs, id)
		}
	}
	sort.Strings(dupIDs)
	t.Logf("duplicate deliveries seen by the function: %d (invocations %v); bound: %d in flight at the kill", dups, dupIDs, asyncLimit)
	assert.LessOrEqual(t, dups, asyncLimit, "duplicates are bounded by the deliveries in flight at the kill")
	assert.Len(t, counts, total, "the function saw each of the %d", total)
}

// submitMany makes total submissions with send, 32 at once, and returns
// the invocation ids their 202s gave, by submission; it fails the test on
// any other answer.
func submitMany(t *testing.T, total int, send func(i int) (*http.Response, error)) []string {
	t.Helper()
	began := time.Now()
	ids := make([]string, total)
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, total)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				resp, err := send(i)
				if err != nil {
					errs <- err
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					errs <- fmt.Errorf("submission %d: %s", i, resp.Status)
					continue
				}
				ids[i] = resp.Header.Get(api.HeaderInvocationID)
			}
		})
	}
	for i := range total {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	require.False(t, t.Failed())
	t.Logf("submitted %d in %s", total, time.Since(began).Round(time.Millisecond))
	return ids
}

// waitAllFinal polls every invocation of ids through get until each is
// final, or fails the test after limit, and counts them by status and by
// attempts.
func waitAllFinal(t *testing.T, ids []string, limit time.Duration, get func(id string) api.Invocation) (map[api.InvocationStatus]int, map[int]int) {
	t.Helper()
	pending := slices.Clone(ids)
	statuses := map[api.InvocationStatus]int{}
	attempts := map[int]int{}
	deadline := time.Now().Add(limit)
	for len(pending) > 0 {
		var still []string
		for _, id := range pending {
			inv := get(id)
			if !inv.Status.Final() {
				still = append(still, id)
				continue
			}
			statuses[inv.Status]++
			attempts[inv.Attempts]++
		}
		pending = still
		if len(pending) > 0 {
			require.True(t, time.Now().Before(deadline), "%d of %d not final within %s, e.g. %+v", len(pending), len(ids), limit, get(pending[0]))
			time.Sleep(200 * time.Millisecond) // polling a real system
		}
	}
	return statuses, attempts
}
