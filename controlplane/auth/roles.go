package auth

import (
	"fmt"
	"slices"
)

// Role is what a token may do. admin and metrics are cluster roles (their
// tokens carry no namespace); developer and viewer act in one namespace.
type Role string

const (
	// RoleAdmin may do everything in every namespace.
	RoleAdmin Role = "admin"
	// RoleDeveloper deploys, routes traffic, manages secrets and reads
	// logs and everything else in its namespace.
	RoleDeveloper Role = "developer"
	// RoleViewer reads its namespace's objects (not logs, not secret values:
	// the API never returns those to anyone).
	RoleViewer Role = "viewer"
	// RoleMetrics reads /metrics and nothing else, for Prometheus: the
	// metrics name every function of every namespace, so no namespace role
	// may read them, and a scraper should not hold an admin token.
	RoleMetrics Role = "metrics"
)

// Roles lists every role, for validation and usage text.
var Roles = []Role{RoleAdmin, RoleDeveloper, RoleViewer, RoleMetrics}

// Namespaced says whether a token of this role acts in one namespace.
func (r Role) Namespaced() bool { return r == RoleDeveloper || r == RoleViewer }

// Valid says whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// Permission names what a route does, as "object:verb".
type Permission string

// Every permission. A namespaced route checks it in the request's
// namespace; a cluster route (images, nodes, the namespace list, tokens,
// metrics) checks it in no namespace, which only cluster grants satisfy.
const (
	// Public routes (health) need no token at all.
	Public Permission = ""
	// Internal routes (/internal/) take a node credential, never an API
	// token; see the node credentials in cmd/ebbd.
	Internal Permission = "internal"

	FunctionsRead   Permission = "functions:read" // functions, revisions, status
	FunctionsWrite  Permission = "functions:write"
	TrafficWrite    Permission = "traffic:write"
	LogsRead        Permission = "logs:read"
	SecretsRead     Permission = "secrets:read" // names and keys, never values
	SecretsWrite    Permission = "secrets:write"
	NamespacesRead  Permission = "namespaces:read"
	NamespacesWrite Permission = "namespaces:write"
	ImagesRead      Permission = "images:read"
	ImagesWrite     Permission = "images:write"
	NodesRead       Permission = "nodes:read"
	TokensRead      Permission = "tokens:read"
	TokensWrite     Permission = "tokens:write"
	MetricsRead     Permission = "metrics:read"
	// For the routes of the secrets, quota and audit work: declared here
	// with their grants so that each of those routes is one table line.
	SecretKeysRotate Permission = "secretkeys:rotate" // re-wrap every data key
	QuotasRead       Permission = "quotas:read"
	QuotasWrite      Permission = "quotas:write"
	AuditRead        Permission = "audit:read"
	// A backup holds every namespace's state, sealed secrets and token
	// hashes included; a restore writes all of it. Admins only.
	BackupRead    Permission = "backup:read"
	BackupRestore Permission = "backup:restore"
)

// grant is one role's permissions. inNamespace permissions hold in the
// token's own namespace; cluster permissions hold whatever the namespace,
// and also for cluster routes.
type grant struct {
	inNamespace []Permission
	cluster     []Permission
}

var read = []Permission{FunctionsRead, SecretsRead, NamespacesRead, QuotasRead}

// grants is the role → permission matrix (docs/architecture.md, security).
// Images are cluster-wide (content-addressed in containerd and shared by
// every namespace), and a developer must push one to deploy, so developers
// hold images:read/write in every namespace; image names are therefore
// visible across namespaces. Only admins manage tokens and namespaces:
// a developer who could mint tokens could mint a longer-lived one for
// itself, or one that outlives its own revocation.
var grants = map[Role]grant{
	RoleDeveloper: {
		inNamespace: append([]Permission{FunctionsWrite, TrafficWrite, LogsRead, SecretsWrite}, read...),
		cluster:     []Permission{ImagesRead, ImagesWrite},
	},
	RoleViewer: {
		inNamespace: read,
	},
	RoleMetrics: {
		cluster: []Permission{MetricsRead},
	},
}

// Principal is who made a request: an authenticated token.
type Principal struct {
	// TokenID identifies the token (never its secret): the id of an API
	// token, or AdminTokenID for the token file written at first start.
	TokenID string
	Role    Role
	// Namespace is the namespace a developer or viewer acts in; empty for
	// cluster roles.
	Namespace string
}

// AdminTokenID is the TokenID of the first-start token file's principal.
// API token ids are hex, so it cannot clash with one.
const AdminTokenID = "admin"

// ForbiddenError is a refusal that names the missing permission.
type ForbiddenError struct {
	Permission Permission
	Namespace  string // empty for a cluster route
}

func (e *ForbiddenError) Error() string {
	if e.Namespace == "" {
		return fmt.Sprintf("this token lacks %s", e.Permission)
	}
	return fmt.Sprintf("this token lacks %s in namespace %s", e.Permission, e.Namespace)
}

// Authorize says whether p may use permission perm in namespace ns ("" for a
// cluster route). It returns nil or a *ForbiddenError. Public routes allow
// everyone; Internal routes no API principal at all.
func Authorize(p Principal, perm Permission, ns string) error {
	switch {
	case perm == Public:
		return nil
	case perm == Internal:
		return &ForbiddenError{Permission: perm}
	case p.Role == RoleAdmin:
		return nil
	}
	g := grants[p.Role]
	if slices.Contains(g.cluster, perm) {
		return nil
	}
	if ns != "" && p.Role.Namespaced() && p.Namespace == ns && slices.Contains(g.inNamespace, perm) {
		return nil
	}
	return &ForbiddenError{Permission: perm, Namespace: ns}
}
