package auth

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// TestAuthorize spells the role matrix out by hand, so a change to grants
// shows up here as a deliberate edit.
func TestAuthorize(t *testing.T) {
	admin := Principal{TokenID: AdminTokenID, Role: RoleAdmin}
	devA := Principal{TokenID: "a", Role: RoleDeveloper, Namespace: "team-a"}
	viewA := Principal{TokenID: "v", Role: RoleViewer, Namespace: "team-a"}
	metrics := Principal{TokenID: "m", Role: RoleMetrics}
	unknown := Principal{TokenID: "x", Role: "root"}

	tests := []struct {
		p    Principal
		perm Permission
		ns   string
		ok   bool
	}{
		{admin, FunctionsWrite, "team-b", true},
		{admin, TokensWrite, "", true},
		{admin, MetricsRead, "", true},
		{admin, Internal, "", false}, // node credentials only
		{devA, FunctionsWrite, "team-a", true},
		{devA, TrafficWrite, "team-a", true},
		{devA, SecretsWrite, "team-a", true},
		{devA, LogsRead, "team-a", true},
		{devA, FunctionsRead, "team-a", true},
		{devA, NamespacesRead, "team-a", true},
		{devA, FunctionsRead, "team-b", false},
		{devA, FunctionsWrite, "default", false},
		{devA, NamespacesWrite, "team-a", false},
		{devA, TokensWrite, "", false},
		{devA, TokensRead, "", false},
		{devA, ImagesWrite, "", true},
		{devA, ImagesRead, "", true},
		{devA, NodesRead, "", false},
		{devA, MetricsRead, "", false},
		{devA, FunctionsRead, "", false}, // a namespaced grant never satisfies a cluster route
		{viewA, FunctionsRead, "team-a", true},
		{viewA, SecretsRead, "team-a", true},
		{viewA, FunctionsWrite, "team-a", false},
		{viewA, LogsRead, "team-a", false},
		{viewA, FunctionsRead, "team-b", false},
		{viewA, ImagesWrite, "", false},
		{devA, QuotasRead, "team-a", true},
		{viewA, QuotasRead, "team-a", true},
		{devA, QuotasWrite, "team-a", false},
		{devA, SecretKeysRotate, "", false},
		{devA, AuditRead, "", false},
		{admin, AuditRead, "", true},
		{metrics, MetricsRead, "", true},
		{metrics, FunctionsRead, "default", false},
		{unknown, FunctionsRead, "default", false},
		{Principal{}, Public, "", true},
	}
	for _, tt := range tests {
		err := Authorize(tt.p, tt.perm, tt.ns)
		if tt.ok {
			assert.NoError(t, err, "%s %s in %q", tt.p.Role, tt.perm, tt.ns)
			continue
		}
		var fe *ForbiddenError
		if assert.ErrorAs(t, err, &fe, "%s %s in %q", tt.p.Role, tt.perm, tt.ns) {
			assert.Equal(t, tt.perm, fe.Permission)
			assert.Contains(t, err.Error(), string(tt.perm))
			if tt.ns != "" {
				assert.Contains(t, err.Error(), "in namespace "+tt.ns)
			}
		}
	}
}

func TestRouteTable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Routes() {
		assert.False(t, seen[r.Pattern()], "%s declared twice", r.Pattern())
		seen[r.Pattern()] = true
		got, err := Lookup(r.Pattern())
		require.NoError(t, err)
		assert.Equal(t, r, got)
		if r.Scope == InNamespace {
			assert.True(t, strings.HasPrefix(r.Path, "/v1/"), "%s: namespaced routes live under /v1/", r.Pattern())
		}
		if strings.Contains(r.Path, "{ns}") {
			assert.Equal(t, InNamespace, r.Scope, "%s names a namespace, so its permission is checked in it", r.Pattern())
		}
	}
	_, err := Lookup("GET /v1/secret-backdoor")
	assert.ErrorContains(t, err, "not in the route table")
	for _, p := range []string{"GET /v1/functions/{name}", "GET /v1/namespaces/{ns}/functions/{name}"} {
		r, err := Lookup(p)
		require.NoError(t, err)
		assert.Equal(t, FunctionsRead, r.Permission)
		assert.Equal(t, InNamespace, r.Scope)
	}
}

func TestParseToken(t *testing.T) {
	id, secret := strings.Repeat("ab", 8), strings.Repeat("0f", 32)
	gotID, gotSecret, ok := ParseToken("ebb_" + id + "_" + secret)
	require.True(t, ok)
	assert.Equal(t, id, gotID)
	assert.Equal(t, secret, gotSecret)

	for _, bad := range []string{
		"",
		"ebb_",
		"ebb__",
		"ebb_" + id,
		"ebb_" + id + "_",
		"ebb_" + id + "_" + secret + "_",
		"ebb_" + id + "_" + secret + "0",
		"ebb_" + strings.ToUpper(id) + "_" + secret,
		"ebb_" + id + "_" + strings.Repeat("zz", 32),
		"ebb_" + id[:15] + "_" + secret,
		"EBB_" + id + "_" + secret,
		"ebb_../../x_" + secret,
		"ebb_" + id + "_" + secret[:63] + "\x00",
		strings.Repeat("ebb_", 10000),
	} {
		_, _, ok := ParseToken(bad)
		assert.False(t, ok, "%q", bad)
	}
}

type mapStore map[string][]byte

func (m mapStore) Get(_ context.Context, key string) (store.KV, error) {
	v, ok := m[key]
	if !ok {
		return store.KV{}, store.ErrNotFound
	}
	return store.KV{Key: key, Value: v, Version: 1}, nil
}

type failingStore struct{}

func (failingStore) Get(context.Context, string) (store.KV, error) {
	return store.KV{}, errors.New("store down")
}

func TestIssueAndAuthenticate(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := mapStore{}
	put := func(rec store.Token) {
		b, err := json.Marshal(rec)
		require.NoError(t, err)
		st[store.TokenKey(rec.ID)] = b
	}
	dev, devRec, err := Issue(TokenSpec{Role: RoleDeveloper, Namespace: "team-a", Description: "ci"}, now)
	require.NoError(t, err)
	put(devRec)
	short, shortRec, err := Issue(TokenSpec{Role: RoleViewer, Namespace: "team-b", TTL: time.Hour}, now)
	require.NoError(t, err)
	put(shortRec)
	assert.Equal(t, now.Add(time.Hour), shortRec.ExpiresAt)

	assert.Regexp(t, `^ebb_[0-9a-f]{16}_[0-9a-f]{64}$`, dev)
	assert.NotContains(t, string(st[store.TokenKey(devRec.ID)]), strings.Split(dev, "_")[2], "the store never holds the secret")

	clock := now
	a := &Authenticator{AdminToken: strings.Repeat("a", 64), Store: st, Now: func() time.Time { return clock }}
	ctx := context.Background()

	p, err := a.Authenticate(ctx, "Bearer "+dev)
	require.NoError(t, err)
	assert.Equal(t, Principal{TokenID: devRec.ID, Role: RoleDeveloper, Namespace: "team-a"}, p)

	p, err = a.Authenticate(ctx, "Bearer "+strings.Repeat("a", 64))
	require.NoError(t, err)
	assert.Equal(t, Principal{TokenID: AdminTokenID, Role: RoleAdmin}, p)

	p, err = a.Authenticate(ctx, "Bearer "+short)
	require.NoError(t, err)
	assert.Equal(t, RoleViewer, p.Role)
	clock = now.Add(time.Hour)
	_, err = a.Authenticate(ctx, "Bearer "+short)
	assert.ErrorIs(t, err, ErrExpired, "a token stops at its expiry")

	wrongSecret := dev[:len(dev)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", dev[len(dev)-1])+1)%16])
	otherID, _, err := Issue(TokenSpec{Role: RoleAdmin}, now) // never stored
	require.NoError(t, err)
	for _, h := range []string{
		"",
		"Bearer",
		"Bearer ",
		"bearer " + dev,
		"Basic " + dev,
		dev,
		"Bearer " + wrongSecret,
		"Bearer " + otherID,
		"Bearer " + strings.Repeat("a", 63),
		"Bearer " + strings.Repeat("a", 64) + " ",
		"Bearer  " + dev,
	} {
		_, err := a.Authenticate(ctx, h)
		assert.ErrorIs(t, err, ErrUnauthenticated, "%q", h)
	}

	// A token id under a record with an unknown role grants nothing.
	tampered := devRec
	tampered.Role = "root"
	put(tampered)
	_, err = a.Authenticate(ctx, "Bearer "+dev)
	assert.ErrorIs(t, err, ErrUnauthenticated)

	// A store failure is not a 401.
	broken := &Authenticator{Store: failingStore{}}
	_, err = broken.Authenticate(ctx, "Bearer "+dev)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrUnauthenticated)

	// A token file that happens to look like an API token is still the
	// admin's.
	lookalike := &Authenticator{AdminToken: "ebb_" + strings.Repeat("1", 16) + "_" + strings.Repeat("2", 64), Store: st}
	p, err = lookalike.Authenticate(ctx, "Bearer "+lookalike.AdminToken)
	require.NoError(t, err)
	assert.Equal(t, RoleAdmin, p.Role)

	// Without an admin token configured, nothing matches the empty one.
	none := &Authenticator{Store: st}
	_, err = none.Authenticate(ctx, "Bearer ")
	assert.ErrorIs(t, err, ErrUnauthenticated)
}

func TestTokenSpecValidate(t *testing.T) {
	tests := []struct {
		spec  TokenSpec
		field string // "" means valid
	}{
		{TokenSpec{Role: RoleAdmin}, ""},
		{TokenSpec{Role: RoleMetrics, Description: "prometheus"}, ""},
		{TokenSpec{Role: RoleDeveloper, Namespace: "team-a", TTL: time.Hour}, ""},
		{TokenSpec{Role: "Admin"}, "role"},
		{TokenSpec{Role: ""}, "role"},
		{TokenSpec{Role: RoleAdmin, Namespace: "team-a"}, "namespace"},
		{TokenSpec{Role: RoleDeveloper}, "namespace"},
		{TokenSpec{Role: RoleViewer, Namespace: "Team_A"}, "namespace"},
		{TokenSpec{Role: RoleViewer, Namespace: "../x"}, "namespace"},
		{TokenSpec{Role: RoleViewer, Namespace: strings.Repeat("a", 64)}, "namespace"},
		{TokenSpec{Role: RoleAdmin, Description: strings.Repeat("d", MaxDescription+1)}, "description"},
		{TokenSpec{Role: RoleAdmin, Description: "two\nlines"}, "description"},
		{TokenSpec{Role: RoleAdmin, Description: "esc\x1b[31m"}, "description"},
		{TokenSpec{Role: RoleAdmin, TTL: -time.Second}, "expires"},
	}
	for _, tt := range tests {
		err := tt.spec.Validate()
		if tt.field == "" {
			assert.NoError(t, err, "%+v", tt.spec)
			continue
		}
		var ve *api.ValidationError
		if assert.ErrorAs(t, err, &ve, "%+v", tt.spec) {
			assert.Equal(t, tt.field, ve.Field, "%+v", tt.spec)
		}
		_, _, err = Issue(tt.spec, time.Now())
		assert.Error(t, err, "Issue validates too")
	}
}

func TestPrincipalContext(t *testing.T) {
	_, ok := PrincipalFrom(context.Background())
	assert.False(t, ok)
	p := Principal{TokenID: "x", Role: RoleViewer, Namespace: "n"}
	got, ok := PrincipalFrom(WithPrincipal(context.Background(), p))
	require.True(t, ok)
	assert.Equal(t, p, got)
}
