package proxy

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTraceparentReplaced checks Options.Traceparent: the client's
// traceparent fields, however many and however spelt, give way to the one
// given; without it they pass untouched.
func TestTraceparentReplaced(t *testing.T) {
	addr, _ := httpBackend(t, func(w http.ResponseWriter, r *http.Request) {
		for _, v := range r.Header.Values("Traceparent") {
			_, _ = w.Write([]byte(v + "\n"))
		}
	})
	const ours = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name string
		opt  []byte
		sent []string
		want string
	}{
		{"replaced", []byte(ours), []string{"garbage", "00-0-0-0"}, ours + "\n"},
		{"added", []byte(ours), nil, ours + "\n"},
		{"passed through", nil, []string{"whatever"}, "whatever\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFront(t, addr, Config{}, Options{Traceparent: tc.opt})
			req, err := http.NewRequest("GET", "http://"+f.addr+"/", nil)
			require.NoError(t, err)
			req.Header["TraceParent"] = tc.sent
			resp, err := client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(b))
			f.done.wait(t)
		})
	}
}
