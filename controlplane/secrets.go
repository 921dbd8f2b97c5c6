package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/envelope"
	"github.com/ebbrun/ebb/internal/quota"
	"github.com/ebbrun/ebb/store"
)

// KeyRotator is the key provider of a control plane that can rotate its
// key-encryption key: Rotate makes a new one current while keeping the old
// ones, Retire drops the old ones once no data key needs them.
// *envelope.KeyFile is one.
type KeyRotator interface {
	envelope.KeyProvider
	Rotate() (string, error)
	Retire() error
}

// Secrets keeps secret objects in the store, sealed, and opens them for
// the node agents: the key-encryption key never leaves the control plane.
// It is what the nodeagent's SecretReader is in the all role.
type Secrets struct {
	store store.Store
	keys  KeyRotator
	now   func() time.Time
	// rotateMu makes rotations one at a time.
	rotateMu chan struct{}
	// onNodeRead, if set, observes every read of values by a node agent
	// (for the audit log): never the values, only who read what.
	onNodeRead atomic.Pointer[func(ns, name, node string, err error)]
}

// OnNodeRead sets f to observe every read of a secret's values by a node
// agent, in process (ForNode) or over InternalHandler, before the values
// are handed over.
func (s *Secrets) OnNodeRead(f func(ns, name, node string, err error)) { s.onNodeRead.Store(&f) }

// ForNode is the reader of the node agent of node in this process.
func (s *Secrets) ForNode(node string) NodeSecrets { return NodeSecrets{secrets: s, node: node} }

// NodeSecrets reads secret values for one node's agent, through the
// OnNodeRead observer.
type NodeSecrets struct {
	secrets *Secrets
	node    string
}

// SecretValues is Secrets.SecretValues on behalf of the node.
func (n NodeSecrets) SecretValues(ctx context.Context, ns, name string) (map[string][]byte, error) {
	return n.secrets.nodeRead(ctx, ns, name, n.node)
}

func (s *Secrets) nodeRead(ctx context.Context, ns, name, node string) (map[string][]byte, error) {
	data, err := s.SecretValues(ctx, ns, name)
	if f := s.onNodeRead.Load(); f != nil {
		(*f)(ns, name, node, err)
	}
	return data, err
}

// NewSecrets returns the secret objects of st, sealed with keys.
func NewSecrets(st store.Store, keys KeyRotator, now func() time.Time) *Secrets {
	if now == nil {
		now = time.Now
	}
	return &Secrets{store: st, keys: keys, now: now, rotateMu: make(chan struct{}, 1)}
}

// ErrSecretNotFound is returned for a secret object that does not exist.
var ErrSecretNotFound = errors.New("secret not found")

// SecretValues opens every value of secret ns/name. A record read just
// before a rotation retired its key-encryption key is read again: by then
// it is re-wrapped under the new one, so a rotation fails no read.
func (s *Secrets) SecretValues(ctx context.Context, ns, name string) (map[string][]byte, error) {
	for attempt := 0; ; attempt++ {
		rec, _, err := store.GetJSON[store.Secret](ctx, s.store, store.SecretKey(ns, name))
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("secret %s/%s: %w", ns, name, ErrSecretNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("read secret %s/%s: %w", ns, name, err)
		}
		data, err := envelope.Open(s.keys, ns, name, sealedOf(rec))
		if errors.Is(err, envelope.ErrUnknownKey) && attempt < 3 {
			continue
		}
		return data, err
	}
}

// put seals data as secret ns/name (replacing its data, or with merge
// adding to it) and returns the record written. mustCreate refuses an
// existing secret.
// guard are checks to add to the write's transaction (the namespace not
// being deleted).
func (s *Secrets) put(ctx context.Context, ns, name string, data map[string][]byte, merge, mustCreate bool, guard ...store.Op) (store.Secret, error) {
	rec, _, _, err := s.putWith(ctx, ns, name, data, secretWrite{Merge: merge, MustCreate: mustCreate}, guard...)
	return rec, err
}

// secretWrite is how putWith writes a secret.
type secretWrite struct {
	// Merge keeps the keys data does not name.
	Merge bool
	// MustCreate refuses an existing secret (If-None-Match: *).
	MustCreate bool
	// Expect is checked against the record's version, and the write is
	// at the version read (CAS).
	Expect Precondition
	// DryRun checks everything and writes nothing.
	DryRun bool
	// SkipUnchanged writes nothing when the secret already holds exactly
	// the resulting data (the apply handler's idempotence: no new
	// generation, no functions rolled).
	SkipUnchanged bool
}

// putWith is put with preconditions and modes. It returns the record as
// written (or as it would be, or as it is when unchanged), its version
// (the transaction's revision; the old version when nothing was written,
// 0 for a dry run's new secret) and what it did.
func (s *Secrets) putWith(ctx context.Context, ns, name string, data map[string][]byte, how secretWrite, guard ...store.Op) (store.Secret, int64, Action, error) {
	for range casRetries {
		rec, version, err := store.GetJSON[store.Secret](ctx, s.store, store.SecretKey(ns, name))
		now := s.now().UTC()
		action := ActionConfigured
		switch {
		case errors.Is(err, store.ErrNotFound):
			rec = store.Secret{Namespace: ns, Name: name, CreatedAt: now}
			version = store.MustNotExist
			action = ActionCreated
		case err != nil:
			return store.Secret{}, 0, "", fmt.Errorf("read secret %s/%s: %w", ns, name, err)
		case how.MustCreate:
			return store.Secret{}, 0, "", errorf(http.StatusConflict, api.CodeConflict, "secret %q already exists in namespace %s; change it with `ebb secrets set`", name, ns)
		}
		if err := how.Expect.Check(fmt.Sprintf("secret %q in namespace %s", name, ns), version); err != nil {
			return store.Secret{}, 0, "", err
		}
		full := data
		if (how.Merge || how.SkipUnchanged) && version != store.MustNotExist {
			old, err := envelope.Open(s.keys, ns, name, sealedOf(rec))
			if errors.Is(err, envelope.ErrUnknownKey) {
				continue // re-wrapped by a rotation since it was read
			}
			if err != nil {
				return store.Secret{}, 0, "", err
			}
			merged := maps.Clone(data)
			if how.Merge {
				merged = maps.Clone(old)
				maps.Copy(merged, data)
			}
			if how.SkipUnchanged && maps.EqualFunc(old, merged, bytes.Equal) {
				return rec, version, ActionUnchanged, nil
			}
			full = merged
		}
		if n := api.SecretDataBytes(full); n > api.MaxSecretBytes {
			return store.Secret{}, 0, "", errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "secret %s holds %d bytes, over the limit of %d", name, n, api.MaxSecretBytes)
		}
		sealed, err := envelope.Seal(s.keys, ns, name, full)
		if err != nil {
			return store.Secret{}, 0, "", err
		}
		rec.KeyID, rec.WrappedKey, rec.Values = sealed.KeyID, sealed.WrappedKey, sealed.Values
		rec.Generation++
		rec.UpdatedAt = now
		ops := []store.Op{store.PutJSON(store.SecretKey(ns, name), rec, version)}
		// Functions that use the secret roll to a new revision, in the same
		// transaction, so that none is left on the old value for long.
		rolls, err := s.rollOps(ctx, ns, name, now)
		if err != nil {
			return store.Secret{}, 0, "", err
		}
		ops = append(ops, rolls...)
		if how.DryRun {
			return rec, max(version, 0), action, nil
		}
		rev, err := s.store.Txn(ctx, append(ops, guard...)...)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return store.Secret{}, 0, "", fmt.Errorf("write secret %s/%s: %w", ns, name, err)
		}
		return rec, rev, action, nil
	}
	return store.Secret{}, 0, "", errorf(http.StatusConflict, api.CodeConflict, "secret %q changed concurrently; retry", name)
}

// rollOps are the writes that give every function of ns that uses secret
// name a new revision with the same spec: its replicas then start afresh
// and read the new value. A function whose traffic is pinned to older
// revisions keeps serving them; their new replicas read the new value.
func (s *Secrets) rollOps(ctx context.Context, ns, name string, now time.Time) ([]store.Op, error) {
	fns, _, err := store.ListJSON[store.Function](ctx, s.store, store.PrefixFunctions)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	var ops []store.Op
	for _, kv := range fns {
		fn := kv.Value
		if fnNS, _ := api.SplitQualifiedName(fn.Name); fnNS != ns || !usesSecret(fn.Spec, name) {
			continue
		}
		fn.Generation++
		fn.LatestRevision = api.RevisionName(fn.Name, fn.Generation)
		fn.UpdatedAt = now
		rev := store.Revision{Name: fn.LatestRevision, Function: fn.Name, Generation: fn.Generation, Spec: fn.Spec.RevisionSpec(), CreatedAt: now}
		ops = append(ops,
			store.PutJSON(kv.Key, fn, kv.Version),
			store.PutJSON(store.RevisionKey(fn.Name, rev.Name), rev, store.MustNotExist))
	}
	return ops, nil
}

func usesSecret(spec api.FunctionSpec, name string) bool {
	return spec.ImagePullSecret == name || slices.ContainsFunc(spec.Secrets, func(s api.Secret) bool { return s.Secret == name })
}

// usedBy lists the functions of ns that refer to secret name, by name in
// the namespace.
func (s *Secrets) usedBy(ctx context.Context, ns, name string) ([]string, error) {
	fns, _, err := store.ListJSON[store.Function](ctx, s.store, store.PrefixFunctions)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	var out []string
	for _, kv := range fns {
		if fnNS, fn := api.SplitQualifiedName(kv.Value.Name); fnNS == ns && usesSecret(kv.Value.Spec, name) {
			out = append(out, fn)
		}
	}
	sort.Strings(out)
	return out, nil
}

// CheckRefs refuses a spec that names a secret or key of ns that does not
// exist, so that a function is not left failing at start.
func (s *Secrets) CheckRefs(ctx context.Context, ns string, refs []api.Secret) error {
	keys := map[string]map[string]bool{}
	for i, ref := range refs {
		have, ok := keys[ref.Secret]
		if !ok {
			rec, _, err := store.GetJSON[store.Secret](ctx, s.store, store.SecretKey(ns, ref.Secret))
			if errors.Is(err, store.ErrNotFound) {
				return &api.ValidationError{Field: fmt.Sprintf("secrets[%d].secret", i),
					Reason: fmt.Sprintf("secret %q does not exist in namespace %s; create it with `ebb secrets create %s -n %s --from-literal KEY=VALUE`", ref.Secret, ns, ref.Secret, ns)}
			}
			if err != nil {
				return fmt.Errorf("read secret %s/%s: %w", ns, ref.Secret, err)
			}
			have = map[string]bool{}
			for k := range rec.Values {
				have[k] = true
			}
			keys[ref.Secret] = have
		}
		if !have[ref.Key] {
			return &api.ValidationError{Field: fmt.Sprintf("secrets[%d].key", i),
				Reason: fmt.Sprintf("secret %q in namespace %s has no key %q", ref.Secret, ns, ref.Key)}
		}
	}
	return nil
}

// delete removes secret ns/name; a function still using it refuses.
func (s *Secrets) delete(ctx context.Context, ns, name string) error {
	kv, err := s.store.Get(ctx, store.SecretKey(ns, name))
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, api.CodeNotFound, "secret %q does not exist in namespace %s", name, ns)
	}
	if err != nil {
		return err
	}
	users, err := s.usedBy(ctx, ns, name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return errorf(http.StatusConflict, api.CodeConflict, "secret %q is used by %v; deploy them without it first", name, users)
	}
	_, err = s.store.Txn(ctx, store.Delete(kv.Key, kv.Version))
	return err
}

// RotateKey makes a new key-encryption key current and re-wraps every data
// key under it, one secret at a time with compare-and-swap; values are not
// touched, and both keys open secrets throughout, so reads never fail.
// Once all are re-wrapped the old keys are dropped.
func (s *Secrets) RotateKey(ctx context.Context) (api.RotateKeyResult, error) {
	select {
	case s.rotateMu <- struct{}{}:
		defer func() { <-s.rotateMu }()
	default:
		return api.RotateKeyResult{}, errorf(http.StatusConflict, api.CodeConflict, "a key rotation is already running")
	}
	id, err := s.keys.Rotate()
	if err != nil {
		return api.RotateKeyResult{}, fmt.Errorf("rotate key-encryption key: %w", err)
	}
	n, err := s.rewrapAll(ctx)
	if err != nil {
		// The old keys stay in the file: a later rotation finishes the job.
		return api.RotateKeyResult{}, fmt.Errorf("re-wrap data keys (the new key %s is current; run the rotation again): %w", id, err)
	}
	if err := s.keys.Retire(); err != nil {
		return api.RotateKeyResult{}, fmt.Errorf("retire old key-encryption keys: %w", err)
	}
	return api.RotateKeyResult{KeyID: id, Rewrapped: n}, nil
}

func (s *Secrets) rewrapAll(ctx context.Context) (int, error) {
	list, _, err := store.ListJSON[store.Secret](ctx, s.store, store.PrefixSecrets)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kv := range list {
		done, err := s.rewrap(ctx, kv.Key)
		if err != nil {
			return n, err
		}
		if done {
			n++
		}
	}
	return n, nil
}

// rewrap re-wraps one secret's data key under the current KEK, retrying
// when a concurrent write wins (which seals with the current KEK anyway).
func (s *Secrets) rewrap(ctx context.Context, key string) (bool, error) {
	for range casRetries {
		rec, version, err := store.GetJSON[store.Secret](ctx, s.store, key)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if rec.KeyID == s.keys.KeyID() {
			return false, nil
		}
		sealed, err := envelope.Rewrap(s.keys, sealedOf(rec))
		if err != nil {
			return false, fmt.Errorf("re-wrap %s: %w", key, err)
		}
		rec.KeyID, rec.WrappedKey = sealed.KeyID, sealed.WrappedKey
		_, err = s.store.Txn(ctx, store.PutJSON(key, rec, version))
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return err == nil, err
	}
	return false, fmt.Errorf("re-wrap %s: %w", key, store.ErrConflict)
}

func sealedOf(rec store.Secret) envelope.Sealed {
	return envelope.Sealed{KeyID: rec.KeyID, WrappedKey: rec.WrappedKey, Values: rec.Values}
}

func secretInfo(rec store.Secret, version int64, usedBy []string) api.SecretInfo {
	keys := make([]string, 0, len(rec.Values))
	for k := range rec.Values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return api.SecretInfo{
		Name: rec.Name, Namespace: rec.Namespace, Keys: keys, Generation: rec.Generation, KeyID: rec.KeyID,
		UsedBy: usedBy, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt,
		ResourceVersion: resourceVersion(version),
	}
}

// maxSecretBodyBytes bounds a secret's PUT body: MaxSecretBytes of values,
// base64-encoded in JSON, with room for keys and syntax.
const maxSecretBodyBytes = api.MaxSecretBytes*4/3 + 64<<10

func (s *Server) secrets() (*Secrets, error) {
	if s.deps.Secrets == nil {
		return nil, errorf(http.StatusNotImplemented, api.CodeInternal, "this control plane has no secrets key")
	}
	return s.deps.Secrets, nil
}

// secretTarget is the secret a /secrets/{name} route addresses, with the
// service that keeps it.
func (s *Server) secretTarget(r *http.Request) (sec *Secrets, ns, name string, err error) {
	if sec, err = s.secrets(); err != nil {
		return nil, "", "", err
	}
	ns, name = namespaceOf(r), r.PathValue("name")
	if err := api.ValidateName("name", name); err != nil {
		return nil, "", "", err
	}
	return sec, ns, name, nil
}

// putSecret creates or replaces a secret's data; ?merge=true keeps the
// keys the body does not name, and If-None-Match: * refuses an existing
// secret. The answer describes the secret without its values.
func (s *Server) putSecret(w http.ResponseWriter, r *http.Request) error {
	_, ns, name, err := s.secretTarget(r)
	if err != nil {
		return err
	}
	var body secretBody
	if err := decodeJSONLimit(w, r, &body, maxSecretBodyBytes); err != nil {
		return err
	}
	expect, dry, err := writeOptionsOf(r, body.ResourceVersion)
	if err != nil {
		return err
	}
	data := map[string][]byte{}
	for k, v := range body.Data {
		data[k] = v
	}
	for k, v := range body.StringData {
		data[k] = []byte(v)
	}
	info, action, err := s.applySecret(r.Context(), ns, name, data, secretWrite{
		Merge: r.URL.Query().Get("merge") == "true", MustCreate: r.Header.Get("If-None-Match") == "*",
		Expect: expect, DryRun: dry,
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if action == ActionCreated {
		status = http.StatusCreated
	}
	setETag(w, info.ResourceVersion)
	writeJSON(w, status, info)
	return nil
}

// secretBody is PUT .../secrets/{name}'s body.
type secretBody struct {
	api.SecretData
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// applySecret validates data and writes it as secret ns/name the way how
// says: what PUT .../secrets/{name} does, and (with SkipUnchanged) what
// the apply handler does for a Secret document. The namespace must take
// new secrets (not deleting, within its quota). It returns the secret as
// the API shows it (no values) and what the write did.
func (s *Server) applySecret(ctx context.Context, ns, name string, data map[string][]byte, how secretWrite) (api.SecretInfo, Action, error) {
	sec, err := s.secrets()
	if err != nil {
		return api.SecretInfo{}, "", err
	}
	if err := api.ValidateName("name", name); err != nil {
		return api.SecretInfo{}, "", err
	}
	if err := api.ValidateSecretData(data); err != nil {
		return api.SecretInfo{}, "", err
	}
	// A namespace being deleted takes no new secret (see namespaceOpen),
	// nor one past its quota of secrets (admitNew, which implies the
	// former when the namespace caps secrets).
	guard, err := s.admitNew(ctx, ns, quota.ResourceSecrets, store.SecretsPrefix(ns), store.SecretKey(ns, name))
	if err != nil {
		return api.SecretInfo{}, "", err
	}
	if guard == nil {
		if guard, err = s.namespaceOpen(ctx, api.QualifiedName(ns, name)); err != nil {
			return api.SecretInfo{}, "", err
		}
	}
	rec, version, action, err := sec.putWith(ctx, ns, name, data, how, guard...)
	if err != nil {
		return api.SecretInfo{}, "", err
	}
	users, err := sec.usedBy(ctx, ns, name)
	if err != nil {
		return api.SecretInfo{}, "", err
	}
	return secretInfo(rec, version, users), action, nil
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request) error {
	sec, ns, name, err := s.secretTarget(r)
	if err != nil {
		return err
	}
	rec, version, err := store.GetJSON[store.Secret](r.Context(), s.deps.Store, store.SecretKey(ns, name))
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, api.CodeNotFound, "secret %q does not exist in namespace %s", name, ns)
	}
	if err != nil {
		return err
	}
	users, err := sec.usedBy(r.Context(), ns, name)
	if err != nil {
		return err
	}
	info := secretInfo(rec, version, users)
	setETag(w, info.ResourceVersion)
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) error {
	sec, err := s.secrets()
	if err != nil {
		return err
	}
	pg, err := pageOf(r)
	if err != nil {
		return err
	}
	ns := namespaceOf(r)
	recs, _, err := store.ListJSON[store.Secret](r.Context(), s.deps.Store, store.SecretsPrefix(ns))
	if err != nil {
		return err
	}
	// Page the records first: usedBy reads the functions of each.
	slices.SortFunc(recs, func(a, b store.Versioned[store.Secret]) int { return strings.Compare(a.Value.Name, b.Value.Name) })
	var list api.SecretList
	recs, list.Continue = paginate(recs, pg, func(v store.Versioned[store.Secret]) string { return v.Value.Name })
	list.Secrets = make([]api.SecretInfo, 0, len(recs))
	for _, kv := range recs {
		users, err := sec.usedBy(r.Context(), ns, kv.Value.Name)
		if err != nil {
			return err
		}
		list.Secrets = append(list.Secrets, secretInfo(kv.Value, kv.Version, users))
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) error {
	sec, ns, name, err := s.secretTarget(r)
	if err != nil {
		return err
	}
	if err := sec.delete(r.Context(), ns, name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rotateSecretsKey re-wraps every secret's data key under a new
// key-encryption key.
func (s *Server) rotateSecretsKey(w http.ResponseWriter, r *http.Request) error {
	sec, err := s.secrets()
	if err != nil {
		return err
	}
	res, err := sec.RotateKey(r.Context())
	if err != nil {
		return err
	}
	s.deps.Logger.Info("rotated the secrets key-encryption key", "keyId", res.KeyID, "rewrapped", res.Rewrapped)
	writeJSON(w, http.StatusOK, res)
	return nil
}

// InternalSecretsPath is where node agents on other machines read a
// secret's values: GET InternalSecretsPath + "{ns}/{name}" answers
// api.SecretData (values base64 in data).
const InternalSecretsPath = "/internal/v1/secrets/"

// NodeAuthenticator names the node whose agent made r, from its
// credential; ok is false for any caller that is not a node agent.
type NodeAuthenticator func(r *http.Request) (node string, ok bool)

// InternalHandler serves InternalSecretsPath to the node agents auth
// accepts. It is the one way values leave the control plane; the answer
// is never cached.
func (s *Secrets) InternalHandler(auth NodeAuthenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		node, ok := auth(r)
		if !ok {
			writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "this endpoint takes a node agent's credential")
			return
		}
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, api.CodeInvalid, "use GET")
			return
		}
		ns, name, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, InternalSecretsPath), "/")
		if !ok || api.ValidateName("namespace", ns) != nil || api.ValidateName("name", name) != nil {
			writeError(w, http.StatusBadRequest, api.CodeInvalid, "want "+InternalSecretsPath+"{namespace}/{name}")
			return
		}
		data, err := s.nodeRead(r.Context(), ns, name, node)
		switch {
		case errors.Is(err, ErrSecretNotFound):
			writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("secret %q does not exist in namespace %s", name, ns))
			return
		case err != nil:
			writeError(w, http.StatusInternalServerError, api.CodeInternal, "cannot open the secret")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, api.SecretData{Data: data})
	})
}

// checkSecretRefs refuses a function (by qualified name) whose spec names a
// secret or key that does not exist in its namespace.
func (s *Server) checkSecretRefs(ctx context.Context, qualified string, refs []api.Secret) error {
	if len(refs) == 0 {
		return nil
	}
	sec, err := s.secrets()
	if err != nil {
		return err
	}
	ns, _ := api.SplitQualifiedName(qualified)
	return sec.CheckRefs(ctx, ns, refs)
}

// MigrateInline turns the inline secret values that specs of earlier
// versions stored in plain text, in functions and in each of their
// revisions, into a secret object per function ("inline-{fn}" in its
// namespace, keyed by the old secret names), and rewrites the specs to
// refer to it. It runs at start, before any node agent reads a spec, and
// returns the functions it migrated with the secret each got.
//
// The store's records then hold no value; a file-backed store may still
// hold the old plain text in pages it freed until it reuses them.
func (s *Secrets) MigrateInline(ctx context.Context) (map[string]string, error) {
	fns, _, err := store.ListJSON[store.Function](ctx, s.store, store.PrefixFunctions)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	out := map[string]string{}
	for _, kv := range fns {
		revs, _, err := store.ListJSON[store.Revision](ctx, s.store, store.RevisionsPrefix(kv.Value.Name))
		if err != nil {
			return out, fmt.Errorf("list revisions of %s: %w", kv.Value.Name, err)
		}
		if !hasInline(kv.Value.Spec) && !slices.ContainsFunc(revs, func(r store.Versioned[store.Revision]) bool { return hasInline(r.Value.Spec) }) {
			continue
		}
		name, err := s.migrateFunction(ctx, kv, revs)
		if err != nil {
			return out, fmt.Errorf("move the inline secrets of %s into a secret object: %w", kv.Value.Name, err)
		}
		out[kv.Value.Name] = name
	}
	return out, nil
}

func hasInline(spec api.FunctionSpec) bool {
	return slices.ContainsFunc(spec.Secrets, func(s api.Secret) bool { return s.Value != "" })
}

func (s *Secrets) migrateFunction(ctx context.Context, fn store.Versioned[store.Function], revs []store.Versioned[store.Revision]) (string, error) {
	ns, bare := api.SplitQualifiedName(fn.Value.Name)
	name := strings.TrimRight(("inline-" + bare)[:min(63, len("inline-"+bare))], "-")
	data := map[string][]byte{}
	// convert gives a spec refs in place of values, under the old name as
	// key, or name.N when revision N had another value for it.
	convert := func(spec api.FunctionSpec, gen int) api.FunctionSpec {
		refs := make([]api.Secret, len(spec.Secrets))
		for i, sec := range spec.Secrets {
			refs[i] = sec
			if sec.Value == "" {
				continue
			}
			key := sec.Name
			if old, ok := data[key]; ok && string(old) != sec.Value {
				key = fmt.Sprintf("%s.%05d", sec.Name, gen)
			}
			data[key] = []byte(sec.Value)
			refs[i] = api.Secret{Secret: name, Key: key, Env: sec.Env, File: sec.File}
		}
		spec.Secrets = refs
		return spec
	}
	f := fn.Value
	f.Spec = convert(f.Spec, f.Generation)
	ops := []store.Op{store.PutJSON(fn.Key, f, fn.Version)}
	for _, r := range revs {
		rev := r.Value
		rev.Spec = convert(rev.Spec, rev.Generation)
		ops = append(ops, store.PutJSON(r.Key, rev, r.Version))
	}
	if _, err := s.store.Get(ctx, store.SecretKey(ns, name)); err == nil {
		return "", fmt.Errorf("secret %q exists already in namespace %s", name, ns)
	}
	sealed, err := envelope.Seal(s.keys, ns, name, data)
	if err != nil {
		return "", err
	}
	now := s.now().UTC()
	rec := store.Secret{Namespace: ns, Name: name, KeyID: sealed.KeyID, WrappedKey: sealed.WrappedKey, Values: sealed.Values,
		Generation: 1, CreatedAt: now, UpdatedAt: now}
	ops = append(ops, store.PutJSON(store.SecretKey(ns, name), rec, store.MustNotExist))
	if _, err := s.store.Txn(ctx, ops...); err != nil {
		return "", err
	}
	return name, nil
}
