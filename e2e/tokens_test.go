package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

// TestScopedTokensAndNodeCredentials runs a control plane and a router as two
// processes over Redis, as on two machines: the credential the router made
// and registered itself (no token copied), the one its autoscaler client
// sends, opens the control plane's /internal/; the admin token no longer
// does; and the router's credential opens nothing of the public API. Then
// a scoped token made with the CLI acts in its namespace only.
func TestScopedTokensAndNodeCredentials(t *testing.T) {
	redis := testenv.Redis(t)
	cp := startEbbd(t, "--role", "controlplane", "--store", redis.URL(), "--node-name", "cp")

	routerDir := shortTempDir(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	var log bytes.Buffer
	router := exec.Command(binaries.ebbd, "--role", "router", "--store", redis.URL(), "--node-name", "node-1",
		"--data-dir", routerDir, "--metrics-addr", metricsAddr,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"--autoscaler-url", "http://"+cp.apiAddr)
	router.Stdout, router.Stderr = &log, &log
	router.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, router.Start())
	exited := make(chan error, 1)
	go func() { exited <- router.Wait() }()
	t.Cleanup(func() {
		_ = router.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-router.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	ready := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !ready; {
		select {
		case err := <-exited:
			t.Fatalf("router exited during start: %v\n%s", err, log.String())
		default:
		}
		if resp, err := httpClient.Get("http://" + metricsAddr + "/readyz"); err == nil {
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
		if !ready {
			time.Sleep(20 * time.Millisecond) // polling a child process's start
		}
	}
	require.True(t, ready, "router did not become ready:\n%s", log.String())

	_, err := os.Stat(filepath.Join(routerDir, "token"))
	assert.ErrorIs(t, err, os.ErrNotExist, "a router neither needs nor makes an admin token")
	b, err := os.ReadFile(filepath.Join(routerDir, "node-credentials", "router"))
	require.NoError(t, err)
	routerCred := strings.TrimSpace(string(b))
	require.True(t, strings.HasPrefix(routerCred, "ebbn_node-1_router_"), routerCred)
	b, err = os.ReadFile(filepath.Join(cp.dataDir, "node-credentials", "controlplane"))
	require.NoError(t, err)
	cpCred := strings.TrimSpace(string(b))

	call := func(method, path, token, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+cp.apiAddr+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusNoContent, call("POST", "/internal/v1/stats", routerCred, `[]`), "the router's own credential reports load")
	assert.Equal(t, http.StatusUnauthorized, call("POST", "/internal/v1/stats", cp.token(), `[]`), "the admin token does not open /internal/")
	assert.Equal(t, http.StatusUnauthorized, call("POST", "/internal/v1/stats", cpCred, `[]`), "the control plane's credential is for node agents' logs only")
	for _, path := range []string{"/v1/functions", "/v1/nodes", "/v1/tokens", "/metrics"} {
		assert.Equal(t, http.StatusUnauthorized, call("GET", path, routerCred, ""), "a captured node credential does not open %s", path)
	}
	assert.Equal(t, http.StatusOK, call("GET", "/v1/functions", cp.token(), ""))

	// Scoped tokens through the CLI and ebbd on Redis: a developer of
	// team-a works there and gets 403 naming the permission in team-b;
	// revoked, its token is a 401.
	cp.ebb("namespaces", "create", "team-a")
	cp.ebb("namespaces", "create", "team-b")
	var dev api.Token
	cp.ebbJSON(&dev, "tokens", "create", "-n", "team-a", "--role", "developer", "--expires", "1h")
	require.NotEmpty(t, dev.Token)
	assert.Equal(t, http.StatusOK, call("GET", "/v1/namespaces/team-a/functions", dev.Token, ""))
	assert.Equal(t, http.StatusForbidden, call("GET", "/v1/namespaces/team-b/functions", dev.Token, ""))
	assert.Equal(t, http.StatusForbidden, call("GET", "/v1/functions", dev.Token, ""))
	assert.Equal(t, http.StatusForbidden, call("GET", "/metrics", dev.Token, ""))
	assert.Equal(t, http.StatusUnauthorized, call("POST", "/internal/v1/stats", dev.Token, `[]`))
	assert.Contains(t, cp.ebb("tokens", "list"), dev.ID)
	cp.ebb("tokens", "revoke", dev.ID)
	assert.Equal(t, http.StatusUnauthorized, call("GET", "/v1/namespaces/team-a/functions", dev.Token, ""))
}
