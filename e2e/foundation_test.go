package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// TestNewUserFlow walks issue 2's acceptance as a new user would, through
// the CLI and then through the raw API: deploy, list, get, change an env
// var (revision 00002), split 50/50, read status, restart ebbd and find
// everything still there.
func TestNewUserFlow(t *testing.T) {
	d := startEbbd(t)
	d.pushHello()

	d.ebb("deploy", "hello", "--image", "hello:latest", "--no-wait")
	list := d.ebb("list")
	assert.Contains(t, list, "hello")
	assert.Contains(t, list, "hello-00001")

	var fn api.Function
	d.ebbJSON(&fn, "get", "hello")
	assert.Equal(t, "hello-00001", fn.LatestRevision)
	assert.Equal(t, "http://hello.localhost:"+portOfAddr(d.httpAddr)+"/", fn.URL)

	d.ebb("deploy", "hello", "--image", "hello:latest", "--env", "GREETING=hi", "--no-wait")
	d.ebbJSON(&fn, "get", "hello")
	assert.Equal(t, "hello-00002", fn.LatestRevision)
	assert.Equal(t, "hi", fn.Spec.Env["GREETING"])

	d.ebb("traffic", "hello", "hello-00001=50", "hello-00002=50", "--tag", "hello-00002=canary")
	d.ebbJSON(&fn, "get", "hello")
	require.Len(t, fn.Revisions, 2)
	for _, rev := range fn.Revisions {
		assert.Equal(t, 50, rev.Percent, rev.Name)
	}
	status := d.ebb("get", "hello")
	assert.Contains(t, status, "canary-hello.localhost")

	// The same flow with curl-like raw HTTP calls.
	var created api.Function
	require.Equal(t, http.StatusCreated, d.apiCall("PUT", "/v1/functions/hello2", strings.NewReader(`{"image":"hello:latest"}`), &created))
	require.Equal(t, http.StatusOK, d.apiCall("PUT", "/v1/functions/hello2", strings.NewReader(`{"image":"hello:latest","env":{"GREETING":"hi"}}`), &created))
	assert.Equal(t, "hello2-00002", created.LatestRevision)
	require.Equal(t, http.StatusOK, d.apiCall("PUT", "/v1/functions/hello2/traffic",
		strings.NewReader(`{"traffic":[{"revision":"hello2-00001","percent":50},{"revision":"hello2-00002","percent":50}]}`), &created))
	var got api.Function
	require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/functions/hello2", nil, &got))
	assert.Equal(t, 50, got.Revisions[0].Percent)

	// Bad input gets a clear 4xx and a one-line CLI error.
	var e api.ErrorBody
	assert.Equal(t, http.StatusBadRequest, d.apiCall("PUT", "/v1/functions/Bad_Name", strings.NewReader(`{"image":"hello:latest"}`), &e))
	assert.Equal(t, api.CodeInvalid, e.Error.Code)
	_, errOut, code := d.ebbExit("traffic", "hello", "hello-00001=70", "hello-00002=10")
	assert.Equal(t, 2, code, "the CLI catches a bad split before sending it")
	assert.Contains(t, errOut, "80")
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, "one-line reason: %q", errOut)

	// Everything survives a restart.
	d.restart()
	d.ebbJSON(&fn, "get", "hello")
	assert.Equal(t, "hello-00002", fn.LatestRevision)
	require.Len(t, fn.Revisions, 2)
	assert.Equal(t, 50, fn.Revisions[0].Percent)
	var fns api.FunctionList
	d.ebbJSON(&fns, "list")
	assert.Len(t, fns.Functions, 2)
	assert.Contains(t, d.ebb("images", "list"), "docker.io/library/hello:latest")

	// The token file is private.
	info, err := os.Stat(filepath.Join(d.dataDir, "token"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}

func portOfAddr(addr string) string {
	return addr[strings.LastIndex(addr, ":")+1:]
}
