package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/secrethash"
	"github.com/ebbrun/ebb/store"
)

// TokenPrefix starts every API token: ebb_{id}_{secret}, the id 16 and
// the secret 64 lowercase hex digits.
const TokenPrefix = "ebb_"

const (
	idBytes     = 8
	secretBytes = 32
	// MaxDescription bounds a token's description.
	MaxDescription = 256
)

// TokenSpec is what a new token may do.
type TokenSpec struct {
	Role Role
	// Namespace is required for developer and viewer and must be empty for
	// the cluster roles (admin, metrics).
	Namespace   string
	Description string
	// TTL, when positive, makes the token expire that long after creation.
	TTL time.Duration
}

// Validate checks a spec; its errors are api validation errors (400).
func (s TokenSpec) Validate() error {
	if !s.Role.Valid() {
		return invalid("role", "%q is not a role; use one of admin, developer, viewer, metrics", truncate(string(s.Role)))
	}
	if s.Role.Namespaced() {
		if err := api.ValidateName("namespace", s.Namespace); err != nil {
			return err
		}
	} else if s.Namespace != "" {
		return invalid("namespace", "a %s token acts in every namespace and takes none", s.Role)
	}
	if len(s.Description) > MaxDescription {
		return invalid("description", "is longer than %d bytes", MaxDescription)
	}
	for _, r := range s.Description {
		if !unicode.IsPrint(r) {
			return invalid("description", "must be printable text on one line")
		}
	}
	if s.TTL < 0 {
		return invalid("expires", "must not be negative")
	}
	return nil
}

// Issue makes a new token for spec: the plain token, shown once to its
// creator, and the record to store, which holds only the secret's hash.
func Issue(spec TokenSpec, now time.Time) (string, store.Token, error) {
	if err := spec.Validate(); err != nil {
		return "", store.Token{}, err
	}
	raw := make([]byte, idBytes+secretBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", store.Token{}, fmt.Errorf("generate token: %w", err)
	}
	id, secret := hex.EncodeToString(raw[:idBytes]), hex.EncodeToString(raw[idBytes:])
	rec := store.Token{
		ID:          id,
		SecretHash:  secrethash.Hash(secret),
		Role:        string(spec.Role),
		Namespace:   spec.Namespace,
		Description: spec.Description,
		CreatedAt:   now.UTC(),
	}
	if spec.TTL > 0 {
		rec.ExpiresAt = now.Add(spec.TTL).UTC()
	}
	return TokenPrefix + id + "_" + secret, rec, nil
}

// ParseToken splits ebb_{id}_{secret}. ok is false for anything else.
func ParseToken(token string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || !secrethash.IsHex(id, 2*idBytes) || !secrethash.IsHex(secret, 2*secretBytes) {
		return "", "", false
	}
	return id, secret, true
}

// ValidTokenID says whether id has the form of a token id, so that a
// path's id can be checked before it becomes a store key.
func ValidTokenID(id string) bool { return secrethash.IsHex(id, 2*idBytes) }

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Errors of Authenticate. Both mean 401.
var (
	ErrUnauthenticated = errors.New("missing or wrong bearer token")
	ErrExpired         = errors.New("token expired")
)

// Getter reads one store key.
type Getter interface {
	Get(ctx context.Context, key string) (store.KV, error)
}

// Authenticator turns a request's Authorization header into a Principal.
type Authenticator struct {
	// AdminToken is the token file's content: compared in constant time,
	// it yields an admin principal, as before tokens existed.
	AdminToken string
	// Store holds tokens/{id}.
	Store Getter
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Authenticate checks an Authorization header value ("Bearer ..."). It
// returns ErrUnauthenticated or ErrExpired (both 401) when it finds no
// valid token, and another error only when the store failed.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Principal, error) {
	token, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || token == "" {
		return Principal{}, ErrUnauthenticated
	}
	// The token file's content is compared first, whatever its form: an
	// operator may have written one that looks like an API token.
	if a.AdminToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(a.AdminToken)) == 1 {
		return Principal{TokenID: AdminTokenID, Role: RoleAdmin}, nil
	}
	id, secret, ok := ParseToken(token)
	if !ok {
		return Principal{}, ErrUnauthenticated
	}
	kv, err := a.Store.Get(ctx, store.TokenKey(id))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Principal{}, ErrUnauthenticated
	case err != nil:
		return Principal{}, fmt.Errorf("read token %s: %w", id, err)
	}
	var rec store.Token
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return Principal{}, fmt.Errorf("decode token %s: %w", id, err)
	}
	if !secrethash.Matches(rec.SecretHash, secret) {
		return Principal{}, ErrUnauthenticated
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	if !rec.ExpiresAt.IsZero() && !now().Before(rec.ExpiresAt) {
		return Principal{}, ErrExpired
	}
	role := Role(rec.Role)
	if !role.Valid() {
		return Principal{}, ErrUnauthenticated // a record this build does not know grants nothing
	}
	return Principal{TokenID: rec.ID, Role: role, Namespace: rec.Namespace}, nil
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p, for handlers and the audit log.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal the request was authenticated as.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

func invalid(field, format string, args ...any) error {
	return &api.ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
