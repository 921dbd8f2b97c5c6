package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// TestCrashingFunctionFailsFast checks issue 4's activator errors end to
// end: a request buffered for a function whose process dies at start gets
// a 502 that says why, long before the function's timeout, and the
// revision's status carries the function's own last words.
func TestCrashingFunctionFailsFast(t *testing.T) {
	d := startEbbd(t)
	d.pushBinary(binaries.crasher, "crasher:latest")
	const timeout = 2 * time.Minute
	d.putSpec("crasher", `{"image":"crasher:latest","scale":{"initial":0},"timeout":"2m"}`)
	d.waitFor("crasher", 10*time.Second, func(r api.RevisionStatus) bool { return r.State == api.RevisionIdle })

	sent := time.Now()
	resp, body := d.get("crasher", "/", nil)
	waited := time.Since(sent)

	assert.Equal(t, http.StatusBadGateway, resp.StatusCode, body)
	assert.Contains(t, body, "crasher-00001")
	assert.Contains(t, body, "exited with code 3")
	assert.Less(t, waited, timeout/4, "the request failed fast instead of waiting out its timeout")

	rev := d.waitFor("crasher", 10*time.Second, func(r api.RevisionStatus) bool { return r.State == api.RevisionCrashLoop })
	require.NotNil(t, rev.LastExitCode)
	assert.Equal(t, 3, *rev.LastExitCode)
	assert.Contains(t, strings.Join(rev.LastLogLines, "\n"), "crasher: cannot reach the database")
}
