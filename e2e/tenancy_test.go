package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

// TestTenancyAcceptance is issue 14's acceptance for namespaces, tokens
// and the audit log, through ebbd with real containerd, on bbolt and on
// Redis: two namespaces, each with a developer token; neither developer
// can read, change or list the other's objects (403); the admin sees both;
// hello.localhost still serves the default namespace; and the audit log
// has one line per mutating call the test made.
func TestTenancyAcceptance(t *testing.T) {
	for _, store := range []string{"bbolt", "redis"} {
		t.Run(store, func(t *testing.T) {
			var args []string
			if store == "redis" {
				args = []string{"--store", testenv.Redis(t).URL()}
			}
			d := startEbbd(t, args...)
			mutations := 0
			call := func(method, path, token, body string) (int, string) {
				t.Helper()
				req, err := http.NewRequest(method, "http://"+d.apiAddr+path, strings.NewReader(body))
				require.NoError(t, err)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := httpClient.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				raw, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				if method != http.MethodGet && resp.StatusCode != http.StatusUnauthorized {
					mutations++
				}
				return resp.StatusCode, string(raw)
			}
			admin := d.token()

			d.pushHello()
			mutations++
			for _, ns := range []string{"team-a", "team-b"} {
				code, body := call("PUT", "/v1/namespaces/"+ns, admin, `{}`)
				require.Equal(t, http.StatusCreated, code, body)
			}
			devs := map[string]string{}
			for _, ns := range []string{"team-a", "team-b"} {
				code, body := call("POST", "/v1/namespaces/"+ns+"/tokens", admin, `{"role":"developer"}`)
				require.Equal(t, http.StatusCreated, code, body)
				var tok api.Token
				require.NoError(t, json.Unmarshal([]byte(body), &tok))
				devs[ns] = tok.Token
			}
			spec := `{"image":"hello:latest","scale":{"min":1}}`
			code, body := call("PUT", "/v1/functions/hello", admin, spec)
			require.Equal(t, http.StatusCreated, code, body)
			for ns, tok := range devs {
				code, body := call("PUT", "/v1/namespaces/"+ns+"/functions/hello", tok, spec)
				require.Equal(t, http.StatusCreated, code, "%s deploys in its own namespace: %s", ns, body)
			}

			for ns, tok := range devs {
				other := map[string]string{"team-a": "team-b", "team-b": "team-a"}[ns]
				for _, c := range []struct{ method, path, body string }{
					{"GET", "/v1/namespaces/" + other + "/functions", ""},
					{"GET", "/v1/namespaces/" + other + "/functions/hello", ""},
					{"GET", "/v1/namespaces/" + other + "/functions/hello/revisions", ""},
					{"GET", "/v1/namespaces/" + other + "/functions/hello/logs", ""},
					{"PUT", "/v1/namespaces/" + other + "/functions/hello", spec},
					{"DELETE", "/v1/namespaces/" + other + "/functions/hello", ""},
					{"GET", "/v1/functions", ""},
				} {
					code, body := call(c.method, c.path, tok, c.body)
					assert.Equal(t, http.StatusForbidden, code, "%s's developer: %s %s: %s", ns, c.method, c.path, body)
					assert.Contains(t, body, `"error"`, "a JSON error")
				}
			}
			for _, ns := range []string{"team-a", "team-b"} {
				var list api.FunctionList
				require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/namespaces/"+ns+"/functions", nil, &list))
				require.Len(t, list.Functions, 1, "the admin sees %s", ns)
				assert.Equal(t, ns, list.Functions[0].Namespace)
			}

			d.waitFor("hello", 60*time.Second, func(r api.RevisionStatus) bool { return r.Ready == 1 })
			resp, body := d.get("hello", "/", nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.Contains(t, body, "revision=hello-00001", "hello.localhost serves the default namespace")
			resp, body = d.get("hello.team-a", "/", nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.Contains(t, body, "revision=hello.team-a-00001")

			var audit api.AuditList
			require.Equal(t, http.StatusOK, d.apiCall("GET", "/v1/audit?limit=1000", nil, &audit))
			assert.Len(t, audit.Events, mutations, "one audit line per mutating call: %+v", audit.Events)
			for _, e := range audit.Events {
				for _, tok := range append([]string{admin}, devs["team-a"], devs["team-b"]) {
					assert.NotContains(t, e.TokenID, tok, "a token id, never the token")
				}
			}
		})
	}
}
