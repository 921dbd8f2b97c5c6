package nodecred

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/secrethash"
	"github.com/ebbrun/ebb/store"
)

// Prefix starts every node credential; API tokens start with ebb_, so the
// two can never be mistaken for each other.
const Prefix = "ebbn_"

const secretBytes = 32

// Roles whose processes hold credentials.
const (
	RoleControlPlane = "controlplane"
	RoleRouter       = "router"
	RoleNodeAgent    = "nodeagent"
)

// Credential is one process's credential.
type Credential struct {
	Node, Role, Secret string
}

// String is the bearer token form, ebbn_{node}_{role}_{secret}.
func (c Credential) String() string {
	return Prefix + c.Node + "_" + c.Role + "_" + c.Secret
}

// Parse reads ebbn_{node}_{role}_{secret}. Node names are DNS labels, so
// they hold no '_'.
func Parse(s string) (Credential, bool) {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return Credential{}, false
	}
	parts := strings.Split(rest, "_")
	if len(parts) != 3 {
		return Credential{}, false
	}
	c := Credential{Node: parts[0], Role: parts[1], Secret: parts[2]}
	if api.ValidateName("node", c.Node) != nil || !validRole(c.Role) || !secrethash.IsHex(c.Secret, 2*secretBytes) {
		return Credential{}, false
	}
	return c, true
}

func validRole(r string) bool {
	return r == RoleControlPlane || r == RoleRouter || r == RoleNodeAgent
}

// Path is where a process of role keeps its credential under dataDir.
func Path(dataDir, role string) string {
	return filepath.Join(dataDir, "node-credentials", role)
}

// LoadOrCreate returns the credential for node and role kept at path,
// creating one on first start (or when the node was renamed). The file is
// mode 0600 and refused when others may read it. Two processes starting
// at once with one data dir end up with the same credential: the file is
// created exclusively and the loser reads the winner's.
func LoadOrCreate(path, node, role string) (Credential, error) {
	if api.ValidateName("node", node) != nil || !validRole(role) {
		return Credential{}, fmt.Errorf("node credential: invalid node %q or role %q", node, role)
	}
	c, loadErr := load(path)
	switch {
	case loadErr == nil && c.Node == node && c.Role == role:
		return c, nil
	case loadErr != nil && !errors.Is(loadErr, fs.ErrNotExist):
		return Credential{}, loadErr
	}
	raw := make([]byte, secretBytes)
	if _, err := rand.Read(raw); err != nil {
		return Credential{}, fmt.Errorf("generate node credential: %w", err)
	}
	c = Credential{Node: node, Role: role, Secret: hex.EncodeToString(raw)}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return Credential{}, fmt.Errorf("create node credential dir: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cred-*")
	if err != nil {
		return Credential{}, fmt.Errorf("write node credential: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(c.String() + "\n")
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return Credential{}, fmt.Errorf("write node credential: %w", werr)
	}
	// A stale file (another node name) is replaced; a fresh one is only
	// ever linked into place, so a concurrent starter's wins.
	if loadErr == nil {
		if err := os.Rename(tmp.Name(), path); err != nil {
			return Credential{}, fmt.Errorf("write node credential: %w", err)
		}
		return c, nil
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return load(path)
		}
		return Credential{}, fmt.Errorf("write node credential: %w", err)
	}
	return c, nil
}

func load(path string) (Credential, error) {
	info, err := os.Stat(path)
	if err != nil {
		return Credential{}, err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return Credential{}, fmt.Errorf("node credential %s has mode %v; it must be readable by its owner only (chmod 600)", path, info.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Credential{}, fmt.Errorf("read node credential: %w", err)
	}
	c, ok := Parse(strings.TrimSpace(string(b)))
	if !ok {
		return Credential{}, fmt.Errorf("node credential %s is malformed; remove it to have a new one made", path)
	}
	return c, nil
}

// Register publishes c's hash at nodecreds/{node}/{role}, replacing what
// an earlier credential of the same process left.
func Register(ctx context.Context, st store.Store, c Credential, now time.Time) error {
	rec := store.NodeCredential{Node: c.Node, Role: c.Role, SecretHash: secrethash.Hash(c.Secret), CreatedAt: now.UTC()}
	if _, err := st.Txn(ctx, store.PutJSON(store.NodeCredKey(c.Node, c.Role), rec, store.AnyVersion)); err != nil {
		return fmt.Errorf("register node credential: %w", err)
	}
	return nil
}

// Getter reads one store key.
type Getter interface {
	Get(ctx context.Context, key string) (store.KV, error)
}

// ErrUnauthenticated is Verify's answer to anything but a registered
// credential of an accepted role.
var ErrUnauthenticated = errors.New("missing or wrong node credential")

// Verifier checks node credentials against the store.
type Verifier struct {
	Store Getter
	// Roles are the roles whose credentials are accepted.
	Roles []string
}

// Verify checks an Authorization header ("Bearer ebbn_..."). It returns
// the caller, ErrUnauthenticated, or a store error.
func (v *Verifier) Verify(ctx context.Context, header string) (Credential, error) {
	token, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return Credential{}, ErrUnauthenticated
	}
	c, ok := Parse(token)
	if !ok || !slices.Contains(v.Roles, c.Role) {
		return Credential{}, ErrUnauthenticated
	}
	kv, err := v.Store.Get(ctx, store.NodeCredKey(c.Node, c.Role))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Credential{}, ErrUnauthenticated
	case err != nil:
		return Credential{}, fmt.Errorf("read node credential: %w", err)
	}
	var rec store.NodeCredential
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return Credential{}, fmt.Errorf("decode node credential: %w", err)
	}
	if !secrethash.Matches(rec.SecretHash, c.Secret) {
		return Credential{}, ErrUnauthenticated
	}
	c.Secret = ""
	return c, nil
}

type callerKey struct{}

// Caller returns the node and role Require verified for this request, so
// a handler (or the audit log) names the node that called, not one the
// request claims.
func Caller(ctx context.Context) (Credential, bool) {
	c, ok := ctx.Value(callerKey{}).(Credential)
	return c, ok
}

// Require serves h only to requests carrying a credential v accepts;
// others get a JSON 401 (503 when the store could not be read). h finds
// the caller with Caller.
func Require(v *Verifier, log *slog.Logger, h http.Handler) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.Verify(r.Context(), r.Header.Get("Authorization"))
		switch {
		case err == nil:
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
			return
		case errors.Is(err, ErrUnauthenticated):
			w.Header().Set("WWW-Authenticate", `Bearer realm="ebb-internal"`)
			writeError(w, http.StatusUnauthorized, api.CodeUnauthorized,
				fmt.Sprintf("this endpoint takes the node credential of a %s process", strings.Join(v.Roles, " or ")))
		default:
			log.Warn("node credential check failed", "path", r.URL.Path, "err", err)
			writeError(w, http.StatusServiceUnavailable, api.CodeInternal, "cannot check the node credential: "+err.Error())
		}
	})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}
