package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/auth"
	"github.com/ebbrun/ebb/store"
)

// maxTokenTTL bounds a token's lifetime when one is given, so that a typo
// of units cannot make a "temporary" token outlive everyone's memory.
const maxTokenTTL = 10 * 365 * 24 * time.Hour

// createToken issues a token (POST /v1/tokens, or in {ns} at
// /v1/namespaces/{ns}/tokens) and shows its secret this once.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req api.TokenRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if ns := r.PathValue("ns"); ns != "" {
		if req.Namespace != "" && req.Namespace != ns {
			return errorf(http.StatusBadRequest, api.CodeInvalid, "namespace: the body names %q but the path %q", truncateForError(req.Namespace), ns)
		}
		req.Namespace = ns
	}
	spec := auth.TokenSpec{Role: auth.Role(req.Role), Namespace: req.Namespace, Description: req.Description}
	if req.ExpiresIn != "" {
		ttl, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || ttl <= 0 || ttl > maxTokenTTL {
			return errorf(http.StatusBadRequest, api.CodeInvalid, "expiresIn: %q must be a positive duration such as 24h or 90m, at most %s", truncateForError(req.ExpiresIn), maxTokenTTL)
		}
		spec.TTL = ttl
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	var ops []store.Op
	if spec.Role.Namespaced() {
		// The token's namespace must exist and stay: its delete removes the
		// namespace's tokens, and a token must not slip in after.
		rec, version, err := s.namespace(r.Context(), spec.Namespace)
		if err != nil {
			return err
		}
		if rec.Deleting {
			return errorf(http.StatusConflict, api.CodeConflict, "namespace %q is being deleted", spec.Namespace)
		}
		ops = append(ops, store.Check(store.NamespaceKey(spec.Namespace), version))
	}
	now := s.deps.Now()
	plain, rec, err := auth.Issue(spec, now)
	if err != nil {
		return err
	}
	ops = append(ops, store.PutJSON(store.TokenKey(rec.ID), rec, store.MustNotExist))
	if _, err := s.deps.Store.Txn(r.Context(), ops...); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	out := tokenOut(rec, now)
	out.Token = plain
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// listTokens lists every token, or {ns}'s, never a secret or its hash.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	pg, err := pageOf(r)
	if err != nil {
		return err
	}
	ns := r.PathValue("ns")
	if ns != "" {
		if _, err := namespaceName(r); err != nil {
			return err
		}
		if _, _, err := s.namespace(r.Context(), ns); err != nil {
			return err
		}
	}
	recs, _, err := store.ListJSON[store.Token](r.Context(), s.deps.Store, store.PrefixTokens)
	if err != nil {
		return err
	}
	now := s.deps.Now()
	out := api.TokenList{Tokens: []api.Token{}}
	for _, v := range recs {
		if ns == "" || v.Value.Namespace == ns {
			out.Tokens = append(out.Tokens, tokenOut(v.Value, now))
		}
	}
	slices.SortFunc(out.Tokens, func(a, b api.Token) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	// Tokens page in their order, by creation: the key is the fixed-width
	// UTC time, which sorts as the time does, then the id.
	out.Tokens, out.Continue = paginate(out.Tokens, pg, func(t api.Token) string {
		return t.CreatedAt.UTC().Format("2006-01-02T15:04:05.000000000Z") + " " + t.ID
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

// revokeToken deletes a token; the next request with it gets 401. At
// /v1/namespaces/{ns}/tokens/{id} only a token of {ns} is found.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	notFound := errorf(http.StatusNotFound, api.CodeNotFound, "no token %q", truncateForError(id))
	if !auth.ValidTokenID(id) {
		return notFound
	}
	rec, version, err := store.GetJSON[store.Token](r.Context(), s.deps.Store, store.TokenKey(id))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound
	case err != nil:
		return err
	}
	if ns := r.PathValue("ns"); ns != "" && rec.Namespace != ns {
		return notFound
	}
	if _, err := s.deps.Store.Txn(r.Context(), store.Delete(store.TokenKey(id), version)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// namespaceTokens is the namespace delete's cascade for tokens: every
// token of the namespace goes with it.
func namespaceTokens(ctx context.Context, st store.Store, ns string) ([]store.Op, error) {
	recs, _, err := store.ListJSON[store.Token](ctx, st, store.PrefixTokens)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	var ops []store.Op
	for _, v := range recs {
		if v.Value.Namespace == ns {
			ops = append(ops, store.Delete(v.Key, v.Version))
		}
	}
	return ops, nil
}

func tokenOut(rec store.Token, now time.Time) api.Token {
	t := api.Token{
		ID:          rec.ID,
		Role:        rec.Role,
		Namespace:   rec.Namespace,
		Description: rec.Description,
		CreatedAt:   rec.CreatedAt,
	}
	if !rec.ExpiresAt.IsZero() {
		exp := rec.ExpiresAt
		t.ExpiresAt = &exp
		t.Expired = !now.Before(exp)
	}
	return t
}

// truncateForError keeps an echoed client string short.
func truncateForError(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
