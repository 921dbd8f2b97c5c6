package controlplane

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

func TestAccessLogs(t *testing.T) {
	a := newTestAPI(t)
	a.pushHello()
	require.Equal(t, http.StatusCreated, a.do("PUT", "/v1/functions/hello", `{"image":"hello:latest"}`, nil))

	var e api.ErrorBody
	require.Equal(t, http.StatusNotImplemented, a.do("GET", "/v1/functions/hello/logs?access=true", "", &e),
		"no router keeps access logs")
	assert.Contains(t, e.Error.Message, "--access-log")

	output, access := &logsByName{}, &logsByName{}
	a.srv.deps.Logs, a.srv.deps.AccessLogs = output, access
	for _, tc := range []struct {
		name, query string
		status      int
		field       string
	}{
		{"access", "access=true&tail=2&follow=false", 200, ""},
		{"output", "access=false", 200, ""},
		{"not a bool", "access=maybe", 400, "access"},
		{"with a revision", "access=true&revision=hello-00001", 400, "revision"},
		{"bad tail", "access=true&tail=-3", 400, "tail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.field == "" {
				require.Equal(t, tc.status, a.do("GET", "/v1/functions/hello/logs?"+tc.query, "", nil))
				return
			}
			var e api.ErrorBody
			require.Equal(t, tc.status, a.do("GET", "/v1/functions/hello/logs?"+tc.query, "", &e), "%+v", e)
			assert.Contains(t, e.Error.Message, tc.field)
		})
	}
	assert.Equal(t, []LogRequest{{Function: "hello", Tail: 2, Access: true}}, access.got)
	assert.Equal(t, []LogRequest{{Function: "hello"}}, output.got)
	require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/functions/nope/logs?access=true", "", nil))
}
