package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// TestFunctionThatCannotRun checks what a user sees of a function that
// cannot run, end to end (issue 4's activator errors, and bad input on the
// API): requests buffered for a function whose process dies at start get a
// 502 that says why, long before the function's timeout; an image built
// for another machine is refused at push with a reason.
func TestFunctionThatCannotRun(t *testing.T) {
	d := startEbbd(t)

	t.Run("it dies at start: its buffered request fails fast with 502", func(t *testing.T) {
		const timeout = 2 * time.Minute
		d.pushBinary(binaries.crasher, "crasher:latest")
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
		assert.Contains(t, strings.Join(rev.LastLogLines, "\n"), "crasher: cannot reach the database", "the function's last words")
	})

	t.Run("its image is for another machine: the push is refused", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "foreign.oci.tar")
		d.ebb("images", "build", binaries.foreignCrasher, "--name", "foreign:latest", "-o", archive)

		_, stderr, code := d.ebbExit("images", "push", archive)

		assert.Equal(t, 4, code, "exit 4: the API rejected the input\n%s", stderr)
		var reasons []string
		for _, line := range strings.Split(stderr, "\n") {
			if strings.HasPrefix(line, "ebb: ") {
				reasons = append(reasons, line)
			}
		}
		require.Len(t, reasons, 1, "one line of reason: %q", stderr)
		assert.Contains(t, reasons[0], "the image is for platform linux/"+foreignArch())
		var images struct{ Images []api.Image }
		require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/images", nil, &images))
		for _, img := range images.Images {
			assert.NotContains(t, img.Name, "foreign", "a refused push leaves no image")
		}
	})
}
