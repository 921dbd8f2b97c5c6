package linestream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHandler(t *testing.T) {
	parse := func(r *http.Request) (string, error) {
		if q := r.URL.Query().Get("q"); q != "" {
			return q, nil
		}
		return "", errors.New("q: required")
	}
	read := func(_ context.Context, w io.Writer, q string) error {
		_, err := io.WriteString(w, "line of "+q+"\n")
		return err
	}
	srv := httptest.NewServer(Handler("tok", "text/plain", parse, read))
	defer srv.Close()
	for _, tc := range []struct {
		name, method, query, auth string
		status                    int
		body                      string
	}{
		{"reads", "GET", "q=a", "Bearer tok", 200, "line of a\n"},
		{"post", "POST", "q=a", "Bearer tok", 405, ""},
		{"no token", "GET", "q=a", "", 401, ""},
		{"wrong token", "GET", "q=a", "Bearer tak", 401, ""},
		{"bad query", "GET", "", "Bearer tok", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+"?"+tc.query, nil)
			require.NoError(t, err)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode, "%s", b)
			if tc.status == 200 {
				assert.Equal(t, tc.body, string(b))
				assert.Equal(t, "text/plain", resp.Header.Get("Content-Type"))
			} else {
				assert.Contains(t, string(b), `"error"`, "the API's error body")
			}
		})
	}
}
