package testenv

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// StartPrometheus gives a prometheus that answers queries, and stops it
// when the test that started it ends.
func TestStartPrometheus(t *testing.T) {
	c := &http.Client{Timeout: 5 * time.Second}
	var url string
	t.Run("running", func(t *testing.T) {
		p := StartPrometheus(t, "127.0.0.1:1") // a target that never answers
		url = p.URL
		resp, err := c.Get(p.URL + "/api/v1/query?query=vector(42)")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, string(body), `"42"`)
		assert.Contains(t, p.Log(), "Server is ready to receive web requests")
	})
	if url == "" {
		return // skipped: no prometheus
	}
	_, err := c.Get(url + "/-/ready")
	assert.Error(t, err, "prometheus is stopped when its test ends")
}
