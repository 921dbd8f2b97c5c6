package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// TestAuditLog makes mutating calls through the CLI and the API of real
// ebbd, with reads and a refused token among them, and finds exactly one
// audit line per mutating call, in order, through `ebb audit` and in
// <data-dir>/audit/audit.log, and still after a restart.
func TestAuditLog(t *testing.T) {
	d := startEbbd(t)
	line := func(e api.AuditEvent) string {
		s := fmt.Sprintf("%s %s %s %s %d", e.TokenID, e.Verb, e.Namespace, e.Object, e.Status)
		if e.Code != "" {
			s += " " + e.Code
		}
		return s
	}

	d.pushHello()
	d.ebb("namespaces", "create", "team-a")
	d.ebb("-n", "team-a", "deploy", "hello", "--image", "hello:latest", "--initial", "0", "--no-wait")
	d.ebb("deploy", "hello", "--image", "hello:latest", "--initial", "0", "--no-wait")
	d.ebb("traffic", "hello", "1=100", "--tag", "1=canary")
	d.ebb("list")
	d.ebb("-n", "team-a", "get", "hello")
	require.Equal(t, http.StatusBadRequest, d.apiCall("PUT", "/v1/functions/Bad_Name", strings.NewReader(`{"image":"hello:latest"}`), nil))
	req, err := http.NewRequest("DELETE", "http://"+d.apiAddr+"/v1/functions/hello", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer ebb_wrong_token_wrong_token")
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a refused token changes nothing and is not recorded")
	d.ebb("delete", "hello")
	d.ebb("namespaces", "delete", "team-a", "--force")

	want := []string{
		"admin create  images/docker.io/library/hello:latest 201",
		"admin update team-a namespaces/team-a 201",
		"admin update team-a functions/hello 201",
		"admin update default functions/hello 201",
		"admin update default functions/hello/traffic 200",
		"admin update default functions/Bad_Name 400 invalid",
		"admin delete default functions/hello 204",
		"admin delete team-a namespaces/team-a 204",
	}
	var list api.AuditList
	d.ebbJSON(&list, "audit")
	var got []string
	for _, e := range list.Events {
		got = append(got, line(e))
	}
	assert.Equal(t, want, got)
	assert.Zero(t, list.Skipped)

	// The file holds the same lines, and never the token.
	f, err := os.Open(filepath.Join(d.dataDir, "audit", "audit.log"))
	require.NoError(t, err)
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); n++ {
		assert.NotContains(t, sc.Text(), d.token())
	}
	assert.Equal(t, len(want), n)

	// A restart keeps the log and appends to it; -n narrows it.
	d.restart()
	d.ebb("deploy", "again", "--image", "hello:latest", "--initial", "0", "--no-wait")
	d.ebbJSON(&list, "audit", "--limit", "2")
	got = nil
	for _, e := range list.Events {
		got = append(got, line(e))
	}
	assert.Equal(t, []string{"admin delete team-a namespaces/team-a 204", "admin update default functions/again 201"}, got)
	d.ebbJSON(&list, "audit", "-n", "team-a", "--since", "1h")
	assert.Len(t, list.Events, 3)
	table := d.ebb("audit", "--limit", "1")
	assert.Contains(t, table, "functions/again")
}
