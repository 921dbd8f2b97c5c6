package testenv

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// WaitHTTP polls url until it answers 200 and returns the body, failing
// the test if that takes longer than within: the way to wait for a
// process that has just been started to serve.
func WaitHTTP(t testing.TB, url string, within time.Duration) string {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	var last error
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(b)
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(time.Millisecond) // polling a process start
	}
	t.Fatalf("%s did not answer within %s: %v", url, within, last)
	return ""
}
