package auth

import "fmt"

// Scope says which namespace a route's permission is checked in.
type Scope int

const (
	// Cluster routes act on no namespace (images, nodes, tokens, metrics);
	// only cluster grants satisfy them.
	Cluster Scope = iota
	// InNamespace routes act in the request's namespace: {ns} in the path,
	// or default on the /v1/... paths that predate namespaces.
	InNamespace
)

// Route is one API route and what it needs.
type Route struct {
	// Method is the HTTP method; empty matches any (the /internal/ tree
	// and the not-found fallback).
	Method string
	// Path is the http.ServeMux path pattern.
	Path       string
	Permission Permission
	Scope      Scope
}

// Pattern is the route's http.ServeMux pattern.
func (r Route) Pattern() string {
	if r.Method == "" {
		return r.Path
	}
	return r.Method + " " + r.Path
}

// namespaced declares a route served in every namespace at
// /v1/namespaces/{ns}{suffix} and in default at /v1{suffix}.
func namespaced(method, suffix string, perm Permission) []Route {
	return []Route{
		{Method: method, Path: "/v1/namespaces/{ns}" + suffix, Permission: perm, Scope: InNamespace},
		{Method: method, Path: "/v1" + suffix, Permission: perm, Scope: InNamespace},
	}
}

// one declares a single route.
func one(method, path string, perm Permission, scope Scope) []Route {
	return []Route{{Method: method, Path: path, Permission: perm, Scope: scope}}
}

// routes is THE table: every route the API server serves, and the only
// place a route's permission is declared. The server refuses to start with
// a route that is not here, and the route × role test in controlplane
// covers every entry.
var routes = concat(
	one("GET", "/healthz", Public, Cluster),
	one("GET", "/readyz", Public, Cluster),
	one("", "/", Public, Cluster), // the JSON 404 for every other path
	one("GET", "/metrics", MetricsRead, Cluster),
	one("", "/internal/", Internal, Cluster),
	// The read side of the OCI distribution API over the uploaded images,
	// for node agents (controlplane/registry), with node credentials.
	one("", "/v2/", Internal, Cluster),

	one("POST", "/v1/images", ImagesWrite, Cluster),
	one("GET", "/v1/images", ImagesRead, Cluster),
	one("GET", "/v1/nodes", NodesRead, Cluster),

	namespaced("GET", "/functions", FunctionsRead),
	namespaced("PUT", "/functions/{name}", FunctionsWrite),
	namespaced("GET", "/functions/{name}", FunctionsRead),
	namespaced("DELETE", "/functions/{name}", FunctionsWrite),
	namespaced("GET", "/functions/{name}/revisions", FunctionsRead),
	// A routed or latest revision is refused (409), so this never moves traffic.
	namespaced("DELETE", "/functions/{name}/revisions/{rev}", FunctionsWrite),
	namespaced("PUT", "/functions/{name}/traffic", TrafficWrite),
	namespaced("GET", "/functions/{name}/rollouts", FunctionsRead),
	namespaced("GET", "/functions/{name}/rollouts/{id}", FunctionsRead),
	// promote and abort move traffic; pause and resume decide whether it moves.
	namespaced("POST", "/functions/{name}/rollouts/{id}/{action}", TrafficWrite),
	namespaced("GET", "/functions/{name}/logs", LogsRead),
	// Submitting an invocation runs the function, as a request to its URL
	// does; the results are read like the function.
	namespaced("POST", "/functions/{name}/invocations", FunctionsWrite),
	namespaced("GET", "/functions/{name}/invocations", FunctionsRead),
	namespaced("GET", "/functions/{name}/invocations/{id}", FunctionsRead),
	// Cron triggers; run-now invokes the function, as a write may.
	namespaced("GET", "/functions/{name}/crontriggers", FunctionsRead),
	namespaced("PUT", "/functions/{name}/crontriggers/{trigger}", FunctionsWrite),
	namespaced("GET", "/functions/{name}/crontriggers/{trigger}", FunctionsRead),
	namespaced("DELETE", "/functions/{name}/crontriggers/{trigger}", FunctionsWrite),
	namespaced("POST", "/functions/{name}/crontriggers/{trigger}/run", FunctionsWrite),
	// Apply checks each document's own permissions in its namespace.
	namespaced("POST", "/apply", FunctionsWrite),

	// Run-to-completion jobs: run as functions are, so with their grants.
	namespaced("GET", "/jobs", FunctionsRead),
	namespaced("PUT", "/jobs/{name}", FunctionsWrite),
	namespaced("GET", "/jobs/{name}", FunctionsRead),
	namespaced("DELETE", "/jobs/{name}", FunctionsWrite),
	namespaced("GET", "/jobs/{name}/logs", LogsRead),
	// Secrets: names, keys and users to readers, never values.
	namespaced("GET", "/secrets", SecretsRead),
	namespaced("PUT", "/secrets/{name}", SecretsWrite),
	namespaced("GET", "/secrets/{name}", SecretsRead),
	namespaced("DELETE", "/secrets/{name}", SecretsWrite),
	one("POST", "/v1/secrets/rotate-key", SecretKeysRotate, Cluster),
	// Domain mappings route a host to a function, as its traffic does.
	namespaced("GET", "/domains", FunctionsRead),
	namespaced("PUT", "/domains/{host}", TrafficWrite),
	namespaced("GET", "/domains/{host}", FunctionsRead),
	namespaced("DELETE", "/domains/{host}", TrafficWrite),

	one("GET", "/v1/namespaces", NamespacesRead, Cluster),
	one("GET", "/v1/namespaces/{ns}", NamespacesRead, InNamespace),
	one("PUT", "/v1/namespaces/{ns}", NamespacesWrite, InNamespace),
	one("DELETE", "/v1/namespaces/{ns}", NamespacesWrite, InNamespace),

	// Tokens span namespaces, so /v1/tokens is every token (not the
	// default namespace's); /v1/namespaces/{ns}/tokens is one namespace's.
	one("POST", "/v1/tokens", TokensWrite, Cluster),
	one("GET", "/v1/tokens", TokensRead, Cluster),
	one("DELETE", "/v1/tokens/{id}", TokensWrite, Cluster),
	one("POST", "/v1/namespaces/{ns}/tokens", TokensWrite, InNamespace),
	one("GET", "/v1/namespaces/{ns}/tokens", TokensRead, InNamespace),
	one("DELETE", "/v1/namespaces/{ns}/tokens/{id}", TokensWrite, InNamespace),

	one("GET", "/v1/namespaces/{ns}/quota", QuotasRead, InNamespace),
	one("PUT", "/v1/namespaces/{ns}/quota", QuotasWrite, InNamespace),

	one("GET", "/v1/audit", AuditRead, Cluster),

	// Backup and restore (package backup): admin only.
	one("GET", "/v1/backup", BackupRead, Cluster),
	one("POST", "/v1/restore", BackupRestore, Cluster),
)

func concat(groups ...[]Route) []Route {
	var all []Route
	for _, g := range groups {
		all = append(all, g...)
	}
	return all
}

// byPattern indexes the table; TestRouteTable checks no pattern is
// declared twice.
var byPattern = func() map[string]Route {
	m := make(map[string]Route, len(routes))
	for _, r := range routes {
		m[r.Pattern()] = r
	}
	return m
}()

// Routes returns a copy of the route table.
func Routes() []Route { return append([]Route(nil), routes...) }

// Lookup returns the route declared for a ServeMux pattern, or an error
// naming the pattern when the table does not list it.
func Lookup(pattern string) (Route, error) {
	r, ok := byPattern[pattern]
	if !ok {
		return Route{}, fmt.Errorf("auth: route %q is not in the route table (controlplane/auth/routes.go); declare its permission there", pattern)
	}
	return r, nil
}
