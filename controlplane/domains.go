package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// Domain mappings (issue 19) live at domains/{host}: keyed by the host
// alone, so a host has one owner namespace, and the router finds a
// request's mapping with one lookup. A mapping names its function by name
// in its namespace.
//
// Deleting a function orphans its mappings: the host stays reserved for
// the namespace (no other namespace can take it), the router answers 404
// for it, and re-creating the function serves it again, as a function
// deleted and deployed again keeps its URL. Deleting a namespace deletes
// its mappings (a cascade), since nothing could own them any more.

// domainTarget validates the {host} of a domains path.
func domainTarget(r *http.Request) (ns, host string, err error) {
	ns, host = namespaceOf(r), r.PathValue("host")
	if err := api.ValidateHost("host", host); err != nil {
		return "", "", err
	}
	return ns, host, nil
}

func domainOf(rec store.Domain) api.Domain {
	return api.Domain{Host: rec.Host, Namespace: rec.Namespace, Function: rec.Function, Redirect: rec.Redirect,
		CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt}
}

// ownedElsewhere is the 409 for a host another namespace maps.
func ownedElsewhere(host, owner string) error {
	return errorf(http.StatusConflict, api.CodeConflict, "domain %s is owned by namespace %q; delete it there first", host, owner)
}

// putDomain maps {host} to a function of the namespace: 201 when new, 200
// when it changed an existing mapping of the same namespace, 409 when
// another namespace owns the host, 404 when the function does not exist.
func (s *Server) putDomain(w http.ResponseWriter, r *http.Request) error {
	ns, host, err := domainTarget(r)
	if err != nil {
		return err
	}
	var spec api.DomainSpec
	if err := s.decodeJSON(w, r, &spec); err != nil {
		return err
	}
	if err := api.ValidateQualified(ns, spec.Function); err != nil {
		return err
	}
	ctx := r.Context()
	qualified := api.QualifiedName(ns, spec.Function)
	for range casRetries {
		if _, _, err := store.GetJSON[store.Function](ctx, s.deps.Store, store.FunctionKey(qualified)); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return errorf(http.StatusNotFound, api.CodeNotFound, "function %q does not exist in namespace %s", spec.Function, ns)
			}
			return fmt.Errorf("read function %s: %w", qualified, err)
		}
		guard, err := s.namespaceOpen(ctx, qualified)
		if err != nil {
			return err
		}
		now := s.deps.Now().UTC()
		rec, version, err := store.GetJSON[store.Domain](ctx, s.deps.Store, store.DomainKey(host))
		status := http.StatusOK
		switch {
		case errors.Is(err, store.ErrNotFound):
			rec = store.Domain{Host: host, Namespace: ns, CreatedAt: now}
			version = store.MustNotExist
			status = http.StatusCreated
		case err != nil:
			return fmt.Errorf("read domain %s: %w", host, err)
		case rec.Namespace != ns:
			return ownedElsewhere(host, rec.Namespace)
		}
		rec.Function, rec.Redirect, rec.UpdatedAt = spec.Function, spec.Redirect, now
		_, err = s.deps.Store.Txn(ctx, append(guard, store.PutJSON(store.DomainKey(host), rec, version))...)
		if errors.Is(err, store.ErrConflict) {
			continue // a concurrent add or delete: look again, the owner may have changed
		}
		if err != nil {
			return fmt.Errorf("write domain %s: %w", host, err)
		}
		writeJSON(w, status, domainOf(rec))
		return nil
	}
	return store.ErrConflict
}

// namespaceDomain reads the namespace's mapping of host: 404 when there is
// none, or when another namespace owns it (its owner is not this
// namespace's business to read).
func (s *Server) namespaceDomain(ctx context.Context, ns, host string) (store.Domain, int64, error) {
	rec, version, err := store.GetJSON[store.Domain](ctx, s.deps.Store, store.DomainKey(host))
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && rec.Namespace != ns):
		return rec, 0, errorf(http.StatusNotFound, api.CodeNotFound, "domain %s is not mapped in namespace %s", host, ns)
	case err != nil:
		return rec, 0, fmt.Errorf("read domain %s: %w", host, err)
	}
	return rec, version, nil
}

func (s *Server) getDomain(w http.ResponseWriter, r *http.Request) error {
	ns, host, err := domainTarget(r)
	if err != nil {
		return err
	}
	rec, _, err := s.namespaceDomain(r.Context(), ns, host)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, domainOf(rec))
	return nil
}

// listDomains lists the namespace's mappings by host. A namespace maps a
// handful of hosts, so the list is not paged.
func (s *Server) listDomains(w http.ResponseWriter, r *http.Request) error {
	ns := namespaceOf(r)
	recs, _, err := store.ListJSON[store.Domain](r.Context(), s.deps.Store, store.PrefixDomains)
	if err != nil {
		return err
	}
	list := api.DomainList{Domains: []api.Domain{}}
	for _, kv := range recs {
		if kv.Value.Namespace == ns {
			list.Domains = append(list.Domains, domainOf(kv.Value))
		}
	}
	slices.SortFunc(list.Domains, func(a, b api.Domain) int { return strings.Compare(a.Host, b.Host) })
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) deleteDomain(w http.ResponseWriter, r *http.Request) error {
	ns, host, err := domainTarget(r)
	if err != nil {
		return err
	}
	_, version, err := s.namespaceDomain(r.Context(), ns, host)
	if err != nil {
		return err
	}
	if _, err := s.deps.Store.Txn(r.Context(), store.Delete(store.DomainKey(host), version)); err != nil {
		return fmt.Errorf("delete domain %s: %w", host, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// namespaceDomains is the namespace delete's cascade of its mappings.
func namespaceDomains(ctx context.Context, st store.Store, ns string) ([]store.Op, error) {
	recs, _, err := store.ListJSON[store.Domain](ctx, st, store.PrefixDomains)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	var ops []store.Op
	for _, kv := range recs {
		if kv.Value.Namespace == ns {
			ops = append(ops, store.Delete(store.DomainKey(kv.Value.Host), kv.Version))
		}
	}
	return ops, nil
}
