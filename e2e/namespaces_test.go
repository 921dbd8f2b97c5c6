package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// TestNamespaces runs hello in namespace team-a and in default through real
// ebbd and containerd: each answers at its own host with its own revision,
// the API paths of one namespace never show the other's functions, and
// deleting the namespace (refused while it serves, unless forced) removes
// its function while default's keeps serving.
func TestNamespaces(t *testing.T) {
	d := startEbbd(t)
	d.pushHello()

	assert.Contains(t, d.ebb("namespaces", "create", "team-a"), "created namespace team-a")
	d.ebb("-n", "team-a", "deploy", "hello", "--image", "hello:latest", "--env", "GREETING=team-a")
	d.ebb("deploy", "hello", "--image", "hello:latest")

	t.Run("each host answers with its namespace's revision", func(t *testing.T) {
		resp, body := d.get("hello.team-a", "/", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Contains(t, body, "revision=hello.team-a-00001")
		assert.Contains(t, body, "greeting=team-a")
		resp, body = d.get("hello", "/", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Contains(t, body, "revision=hello-00001")
		assert.NotContains(t, body, "team-a")
	})

	t.Run("a tag URL in a namespace", func(t *testing.T) {
		d.ebb("-n", "team-a", "traffic", "hello", "1=100", "--tag", "1=canary")
		resp, body := d.get("canary-hello.team-a", "/", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Contains(t, body, "revision=hello.team-a-00001")
	})

	t.Run("API paths isolate namespaces", func(t *testing.T) {
		names := func(path string) []string {
			var list api.FunctionList
			require.Equal(t, http.StatusOK, d.apiCall("GET", path, nil, &list))
			var out []string
			for _, fn := range list.Functions {
				out = append(out, fn.Namespace+"/"+fn.Name+" "+fn.URL)
			}
			return out
		}
		port := portOfAddr(d.httpAddr)
		assert.Equal(t, []string{"default/hello http://hello.localhost:" + port + "/"}, names("/v1/functions"))
		assert.Equal(t, []string{"team-a/hello http://hello.team-a.localhost:" + port + "/"}, names("/v1/namespaces/team-a/functions"))

		var revs api.RevisionList
		require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/namespaces/team-a/functions/hello/revisions", nil, &revs))
		require.Len(t, revs.Revisions, 1)
		assert.Equal(t, "hello.team-a-00001", revs.Revisions[0].Name)

		// Each namespace's logs hold its own replicas' lines only.
		teamLogs := d.ebb("-n", "team-a", "logs", "hello")
		defaultLogs := d.ebb("logs", "hello")
		assert.Contains(t, teamLogs, "hello.team-a-00001-")
		assert.NotContains(t, defaultLogs, "team-a")

		var e api.ErrorBody
		require.Equal(t, http.StatusNotFound, d.apiCall("PUT", "/v1/namespaces/team-b/functions/hello", strings.NewReader(`{"image":"hello:latest"}`), &e))
		assert.Contains(t, e.Error.Message, `namespace "team-b" does not exist`)
	})

	t.Run("metrics carry the namespace", func(t *testing.T) {
		assert.Positive(t, d.metricSeriesSum("ebb_router_requests_total", `namespace="team-a"`))
		assert.Positive(t, d.metricSeriesSum("ebb_router_requests_total", `function="hello.team-a"`),
			"function stays the qualified name, as dashboards group by it")
	})

	t.Run("deleting the namespace removes its function", func(t *testing.T) {
		_, errOut, code := d.ebbExit("namespaces", "delete", "team-a")
		assert.Equal(t, 4, code, "refused while hello serves: %s", errOut)
		assert.Contains(t, errOut, "--force")
		d.ebb("namespaces", "delete", "team-a", "--force")

		require.Equal(t, http.StatusNotFound, d.apiCall("GET", "/v1/namespaces/team-a/functions", nil, nil))
		var list api.NamespaceList
		require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/namespaces", nil, &list))
		assert.Equal(t, []api.Namespace{{Name: "default", Functions: 1}}, list.Namespaces)

		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, _ := d.get("hello.team-a", "/", nil)
			if resp.StatusCode == http.StatusNotFound {
				break
			}
			require.True(t, time.Now().Before(deadline), "hello.team-a.localhost still answers %d", resp.StatusCode)
			time.Sleep(50 * time.Millisecond) // polling a real router's table
		}
		// Its replicas stop: no node runs anything of team-a.
		for {
			var nodes struct {
				Nodes []api.Node `json:"nodes"`
			}
			require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/nodes", nil, &nodes))
			require.Len(t, nodes.Nodes, 1)
			if nodes.Nodes[0].Running == 1 {
				break
			}
			require.True(t, time.Now().Before(deadline), "node still runs %d replicas", nodes.Nodes[0].Running)
			time.Sleep(100 * time.Millisecond) // polling a real node agent's heartbeat
		}
		resp, body := d.get("hello", "/", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Contains(t, body, "revision=hello-00001")
	})
}
