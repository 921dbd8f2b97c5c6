package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// TestOneCrashIsARestart is issue 13's bug 1 end to end. The only replica
// of a function crashes (examples/hello's /crash) and a request follows at
// once, while the replica waits out its restart backoff: it used to get
// 502 "cannot serve (CrashLoop)"; one crash is not a crash loop, so it must
// wait for the restart and get 200. The same holds after a second crash in
// a row, and a third makes the revision a crash loop whose requests fail
// fast again.
func TestOneCrashIsARestart(t *testing.T) {
	d := startEbbd(t)
	d.pushHello()
	d.putSpec("hello", `{"image":"hello:latest","scale":{"min":1,"max":1}}`)
	d.putSpec("straight", `{"image":"hello:latest","scale":{"min":1,"max":1}}`)
	d.waitFor("hello", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready == 1 })
	d.waitFor("straight", 30*time.Second, func(r api.RevisionStatus) bool { return r.Ready == 1 })

	// Straight after the crash, before the store knows of it: the router
	// still has the dead replica's endpoint, the connection is refused, and
	// the request (no byte of which reached a replica) waits in the
	// activator for the restart.
	d.get("straight", "/crash", nil)
	resp, body := d.get("straight", "/", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "a request sent at once after a crash waits for the restart: %s", body)
	assert.Contains(t, body, "revision=straight-00001")

	for crash := 1; crash <= 3; crash++ {
		// The replica dies in the middle of this request, so its own
		// answer is an error, whatever the status.
		d.get("hello", "/crash", nil)
		rev := d.waitCrashed("hello", crash)

		sent := time.Now()
		resp, body := d.get("hello", "/", nil)
		if crash < 3 {
			assert.Equal(t, api.RevisionScaling, rev.State, "crash %d: %+v", crash, rev)
			require.Equal(t, http.StatusOK, resp.StatusCode, "crash %d: the request waits for the restart: %s", crash, body)
			assert.Contains(t, body, "hello")
			continue
		}
		assert.Equal(t, api.RevisionCrashLoop, rev.State, "the third crash in a row is a crash loop: %+v", rev)
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode, body)
		assert.Contains(t, body, "cannot serve (CrashLoop)")
		assert.Contains(t, body, "exited with code 1")
		assert.Less(t, time.Since(sent), 5*time.Second, "a crash loop still fails requests fast")
	}
}

// waitCrashed waits until the latest revision of fn shows its crash-th
// restart and no ready replica: the crash is in the store and the replica
// waits out its backoff (100ms after a first crash). The status API reads
// the store as the data plane does, so a request sent then reaches the
// activator; it polls every millisecond to land inside the backoff.
func (d *ebbd) waitCrashed(fn string, crash int) api.RevisionStatus {
	d.t.Helper()
	rev := d.pollStatus(fn, 30*time.Second, time.Millisecond, func(r api.RevisionStatus) bool {
		return r.Restarts >= crash && r.Ready == 0
	})
	require.Equal(d.t, crash, rev.Restarts, "one restart per crash")
	return rev
}
