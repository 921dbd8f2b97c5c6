package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/auth"
	"github.com/ebbrun/ebb/internal/nodecred"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
)

// The role matrix, written out by hand rather than read from package auth,
// so that a change of grants shows up here as a deliberate edit. A route
// whose permission is in none of these sets fails the test: declare what
// each role may do with it first.
var (
	// In the token's own namespace.
	developerInNamespace = permSet(auth.FunctionsRead, auth.FunctionsWrite, auth.TrafficWrite, auth.LogsRead,
		auth.SecretsRead, auth.SecretsWrite, auth.NamespacesRead, auth.QuotasRead)
	viewerInNamespace = permSet(auth.FunctionsRead, auth.SecretsRead, auth.NamespacesRead, auth.QuotasRead)
	// On cluster routes, whatever the token's namespace.
	developerCluster = permSet(auth.ImagesRead, auth.ImagesWrite)
	metricsCluster   = permSet(auth.MetricsRead)
	// Only admins.
	adminOnly = permSet(auth.NamespacesWrite, auth.NodesRead, auth.TokensRead, auth.TokensWrite,
		auth.SecretKeysRotate, auth.QuotasWrite, auth.AuditRead, auth.BackupRead, auth.BackupRestore)
)

func permSet(ps ...auth.Permission) map[auth.Permission]bool {
	m := map[auth.Permission]bool{}
	for _, p := range ps {
		m[p] = true
	}
	return m
}

// principalCase is one kind of caller of the route × role table.
type principalCase struct {
	name string
	// token picks the bearer token for a route acting in namespace ns
	// ("" for a cluster route).
	token func(ns string) string
	// allowed says whether the caller passes authentication and
	// authorization on route in ns; refused is the status when it does not.
	allowed func(r auth.Route, ns string) bool
	refused int
}

type routeFixture struct {
	*testAPI
	tokens map[string]string // "{role}@{ns}" → token
	recs   []store.Token
	node   nodecred.Credential
}

// newRouteFixture is an API with every route registered (metrics and a
// node-credential-guarded /internal/ included), namespaces team-a and
// team-b, and tokens of each role.
func newRouteFixture(t *testing.T) *routeFixture {
	t.Helper()
	dir := t.TempDir()
	st, err := embedded.Open(filepath.Join(dir, "state.db"), embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	spool := filepath.Join(dir, "spool")
	require.NoError(t, os.MkdirAll(spool, 0o700))
	reg := prometheus.NewRegistry()
	node, err := nodecred.LoadOrCreate(nodecred.Path(dir, nodecred.RoleRouter), "node-1", nodecred.RoleRouter)
	require.NoError(t, err)
	require.NoError(t, nodecred.Register(context.Background(), st, node, time.Now()))
	internal := nodecred.Require(&nodecred.Verifier{Store: st, Roles: []string{nodecred.RoleRouter}}, nil,
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	imp := &recordingImporter{}
	srv, err := New(Config{Token: testToken, SpoolDir: spool, MaxBodyBytes: 4096, MaxImageBytes: 64 << 20}, Deps{
		Store: st, Images: imp, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registerer: reg, Gatherer: reg, Internal: internal, Registry: internal,
	})
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	f := &routeFixture{
		testAPI: &testAPI{t: t, url: ts.URL, srv: srv, store: st, images: imp, spoolDir: spool},
		tokens:  map[string]string{},
		node:    node,
	}
	for _, ns := range []string{"default", "team-a", "team-b"} {
		for _, role := range []auth.Role{auth.RoleDeveloper, auth.RoleViewer} {
			f.tokens[string(role)+"@"+ns] = f.issue(auth.TokenSpec{Role: role, Namespace: ns}, time.Now())
		}
	}
	f.tokens["metrics"] = f.issue(auth.TokenSpec{Role: auth.RoleMetrics}, time.Now())
	f.tokens["admin"] = f.issue(auth.TokenSpec{Role: auth.RoleAdmin}, time.Now())
	for _, ns := range []string{"default", "team-a"} {
		f.tokens["expired@"+ns] = f.issue(auth.TokenSpec{Role: auth.RoleDeveloper, Namespace: ns, TTL: time.Minute}, time.Now().Add(-time.Hour))
	}
	f.seed()
	return f
}

// issue stores a new token straight in the store and returns it.
func (f *routeFixture) issue(spec auth.TokenSpec, now time.Time) string {
	f.t.Helper()
	plain, rec, err := auth.Issue(spec, now)
	require.NoError(f.t, err)
	_, err = f.store.Txn(context.Background(), store.PutJSON(store.TokenKey(rec.ID), rec, store.AnyVersion))
	require.NoError(f.t, err)
	f.recs = append(f.recs, rec)
	return plain
}

// seed (re)creates the namespaces and tokens, which an admin's namespace
// delete in the previous request may have removed.
func (f *routeFixture) seed() {
	f.t.Helper()
	ops := []store.Op{}
	for _, ns := range []string{"team-a", "team-b"} {
		ops = append(ops, store.PutJSON(store.NamespaceKey(ns), store.Namespace{Name: ns, CreatedAt: time.Now()}, store.AnyVersion))
	}
	for _, rec := range f.recs {
		ops = append(ops, store.PutJSON(store.TokenKey(rec.ID), rec, store.AnyVersion))
	}
	_, err := f.store.Txn(context.Background(), ops...)
	require.NoError(f.t, err)
}

var pathParam = regexp.MustCompile(`\{[a-z]+\}`)

// requestFor fills a route's pattern: {ns} with ns, anything else with a
// valid name.
func requestFor(r auth.Route, ns string) (method, path string) {
	method = r.Method
	if method == "" {
		method = http.MethodGet
	}
	path = pathParam.ReplaceAllStringFunc(r.Path, func(p string) string {
		switch p {
		case "{ns}":
			return ns
		case "{id}":
			return "0123456789abcdef"
		}
		return "hello"
	})
	switch {
	case path == "/":
		path = "/no-such-route"
	case path == "/internal/":
		path = "/internal/v1/stats"
	}
	return method, path
}

// targetNamespace is the namespace a request to r acts in: team-a for
// /v1/namespaces/{ns}/..., default for the /v1/... paths of namespaced
// objects, none for cluster routes.
func targetNamespace(r auth.Route) string {
	switch {
	case r.Scope == auth.Cluster:
		return ""
	case strings.Contains(r.Path, "{ns}"):
		return "team-a"
	}
	return "default"
}

// TestRouteRoleTable sends every route in the route table as every kind of
// caller and checks the status: 401 for no, bad or expired tokens and for
// node credentials on the public API, 403 naming the permission outside a
// token's grants, and the handler's own answer (never 401 or 403)
// otherwise.
func TestRouteRoleTable(t *testing.T) {
	f := newRouteFixture(t)
	inOwn := func(set map[auth.Permission]bool) func(auth.Route, string) bool {
		return func(r auth.Route, ns string) bool {
			if r.Scope == auth.Cluster {
				return false
			}
			return set[r.Permission]
		}
	}
	onCluster := func(set map[auth.Permission]bool) func(auth.Route, string) bool {
		return func(r auth.Route, _ string) bool { return r.Scope == auth.Cluster && set[r.Permission] }
	}
	either := func(a, b func(auth.Route, string) bool) func(auth.Route, string) bool {
		return func(r auth.Route, ns string) bool { return a(r, ns) || b(r, ns) }
	}
	other := func(ns string) string {
		if ns == "team-b" {
			return "team-a"
		}
		return "team-b"
	}
	ownNS := func(ns string) string {
		if ns == "" {
			return "team-a"
		}
		return ns
	}
	never := func(auth.Route, string) bool { return false }
	cases := []principalCase{
		{"admin (token file)", func(string) string { return testToken }, func(r auth.Route, _ string) bool { return r.Permission != auth.Internal }, http.StatusForbidden},
		{"admin (API token)", func(string) string { return f.tokens["admin"] }, func(r auth.Route, _ string) bool { return r.Permission != auth.Internal }, http.StatusForbidden},
		{"developer (own namespace)", func(ns string) string { return f.tokens["developer@"+ownNS(ns)] },
			either(inOwn(developerInNamespace), onCluster(developerCluster)), http.StatusForbidden},
		{"developer (other namespace)", func(ns string) string { return f.tokens["developer@"+other(ownNS(ns))] },
			onCluster(developerCluster), http.StatusForbidden},
		{"viewer (own namespace)", func(ns string) string { return f.tokens["viewer@"+ownNS(ns)] },
			inOwn(viewerInNamespace), http.StatusForbidden},
		{"viewer (other namespace)", func(ns string) string { return f.tokens["viewer@"+other(ownNS(ns))] },
			never, http.StatusForbidden},
		{"metrics", func(string) string { return f.tokens["metrics"] }, onCluster(metricsCluster), http.StatusForbidden},
		{"expired developer", func(ns string) string {
			if ns == "" || ns == "default" {
				return f.tokens["expired@default"]
			}
			return f.tokens["expired@team-a"]
		}, never, http.StatusUnauthorized},
		{"bad token", func(string) string { return "ebb_0123456789abcdef_" + strings.Repeat("0", 64) }, never, http.StatusUnauthorized},
		{"not a token", func(string) string { return "hunter2" }, never, http.StatusUnauthorized},
		{"no token", func(string) string { return "" }, never, http.StatusUnauthorized},
		{"node credential", func(string) string { return f.node.String() }, never, http.StatusUnauthorized},
	}
	known := map[auth.Permission]bool{auth.Public: true, auth.Internal: true}
	for _, set := range []map[auth.Permission]bool{developerInNamespace, viewerInNamespace, developerCluster, metricsCluster, adminOnly} {
		for p := range set {
			known[p] = true
		}
	}

	routes := auth.Routes()
	require.Greater(t, len(routes), 20)
	for _, route := range routes {
		require.True(t, known[route.Permission], "route %s needs %q, which the role matrix of this test does not list", route.Pattern(), route.Permission)
		ns := targetNamespace(route)
		method, path := requestFor(route, ns)
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%s", route.Pattern(), c.name), func(t *testing.T) {
				f.seed()
				token := c.token(ns)
				allowed := c.allowed(route, ns)
				want := c.refused
				switch route.Permission {
				case auth.Public:
					allowed = true
				case auth.Internal:
					// /internal/ takes node credentials only: every API token,
					// the admin's too, is a 401 there.
					allowed = c.name == "node credential"
					want = http.StatusUnauthorized
				}
				var e struct {
					Error api.ErrorDetail `json:"error"`
				}
				status := f.send(method, path, token, &e)
				if !allowed {
					require.Equal(t, want, status, "%s %s as %s", method, path, c.name)
					if want == http.StatusForbidden {
						assert.Equal(t, api.CodeForbidden, e.Error.Code)
						assert.Contains(t, e.Error.Message, string(route.Permission), "the refusal names the missing permission")
						if ns != "" {
							assert.Contains(t, e.Error.Message, "in namespace "+ns)
						}
					} else {
						assert.Equal(t, api.CodeUnauthorized, e.Error.Code)
					}
					return
				}
				assert.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, status,
					"%s %s as %s: %s", method, path, c.name, e.Error.Message)
			})
		}
	}
}

// send makes one request and decodes a JSON error body, if any.
func (f *routeFixture) send(method, path, token string, errOut any) int {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(""))
	require.NoError(f.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(f.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(f.t, err)
	if resp.StatusCode >= 400 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(raw, errOut)
	}
	return resp.StatusCode
}

// TestEveryTableRouteIsServed checks the other direction: the server
// registered every route the table declares (and New already refused any
// it does not).
func TestEveryTableRouteIsServed(t *testing.T) {
	f := newRouteFixture(t)
	var want []string
	for _, r := range auth.Routes() {
		want = append(want, r.Pattern())
	}
	assert.ElementsMatch(t, want, f.srv.served)
}

func TestUndeclaredRouteRefusedAtStart(t *testing.T) {
	s := &Server{mux: http.NewServeMux()}
	s.handle("GET /v1/backdoor", func(http.ResponseWriter, *http.Request) error { return nil })
	require.Len(t, s.routeErrs, 1)
	assert.ErrorContains(t, s.routeErrs[0], "GET /v1/backdoor")
}

// TestMalformedNamespaceIs400 checks that a path's namespace that cannot be
// one is refused as such, after authentication and before authorization,
// so a long or odd string is never echoed back in a 403.
func TestMalformedNamespaceIs400(t *testing.T) {
	f := newRouteFixture(t)
	for _, ns := range []string{"Team_A", strings.Repeat("a", 64), "a%0Ab", "a..b"} {
		for _, token := range []string{testToken, f.tokens["developer@team-a"], f.tokens["viewer@team-a"]} {
			var e struct {
				Error api.ErrorDetail `json:"error"`
			}
			assert.Equal(t, http.StatusBadRequest, f.send("GET", "/v1/namespaces/"+ns+"/functions", token, &e), ns)
			assert.Equal(t, api.CodeInvalid, e.Error.Code)
		}
		assert.Equal(t, http.StatusUnauthorized, f.send("GET", "/v1/namespaces/"+ns+"/functions", "", nil), "no token is a 401 first")
	}
}
