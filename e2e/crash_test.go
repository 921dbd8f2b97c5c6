package e2e

import (
	"fmt"
	"net/http"
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

// TestKillDuringWriteBurst SIGKILLs ebbd in the middle of a burst of API
// writes and restarts it: every write the API acknowledged is there, with
// its revision, and the state is usable. It runs against both stores.
func TestKillDuringWriteBurst(t *testing.T) {
	tests := []struct {
		name  string
		store func(t *testing.T) []string
	}{
		{"embedded", func(*testing.T) []string { return nil }},
		{"redis", func(t *testing.T) []string {
			return []string{"--store", testenv.Redis(t).URL()}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireE2E(t)
			d := startEbbd(t, tt.store(t)...)
			d.pushHello()

			var mu sync.Mutex
			acked := map[string]string{} // function → latest acknowledged revision
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						name := fmt.Sprintf("crash-%d-%d", w, i%5)
						body := fmt.Sprintf(`{"image":"hello:latest","scale":{"initial":0},"env":{"N":"%d"}}`, i)
						req, _ := http.NewRequest("PUT", "http://"+d.apiAddr+"/v1/functions/"+name, strings.NewReader(body))
						req.Header.Set("Authorization", "Bearer "+d.token())
						resp, err := httpClient.Do(req)
						if err != nil {
							return // ebbd is gone
						}
						var fn api.Function
						if resp.StatusCode < 300 {
							_ = decodeJSON(resp, &fn)
							mu.Lock()
							acked[name] = fn.LatestRevision
							mu.Unlock()
						}
						resp.Body.Close()
					}
				}()
			}
			time.Sleep(1500 * time.Millisecond) // let the burst run before the crash
			d.stop(syscall.SIGKILL)
			close(stop)
			wg.Wait()
			require.NotEmpty(t, acked, "some writes were acknowledged before the kill")

			d.start()
			for name, rev := range acked {
				var fn api.Function
				require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/functions/"+name, nil, &fn), name)
				assert.GreaterOrEqual(t, fn.LatestRevision, rev, "%s lost an acknowledged revision", name)
				var revs api.RevisionList
				require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/functions/"+name+"/revisions", nil, &revs))
				assert.Len(t, revs.Revisions, generation(t, fn.LatestRevision), "%s: every revision up to the latest exists", name)
			}
			// The store still takes writes.
			require.Equal(t, http.StatusOK, d.apiCall("PUT", "/v1/functions/crash-0-0",
				strings.NewReader(`{"image":"hello:latest","scale":{"initial":0},"env":{"N":"after"}}`), nil))
		})
	}
}

func generation(t *testing.T, revision string) int {
	t.Helper()
	var n int
	_, err := fmt.Sscanf(revision[strings.LastIndex(revision, "-")+1:], "%d", &n)
	require.NoError(t, err, revision)
	return n
}
