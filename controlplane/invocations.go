package controlplane

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/store"
)

// Invocation list bounds: ?limit= defaults to defaultInvocationList and
// may not pass maxInvocationList.
const (
	defaultInvocationList = 50
	maxInvocationList     = 1000
)

// invocationsOf is the queue and the qualified function name an
// invocations request addresses.
func (s *Server) invocationsOf(r *http.Request) (queue.Queue, string, error) {
	if s.deps.Queue == nil {
		return nil, "", errorf(http.StatusNotImplemented, api.CodeInternal, "this control plane has no invocation queue")
	}
	name, err := s.functionName(r)
	if err != nil {
		return nil, "", err
	}
	return s.deps.Queue, name, nil
}

// submitInvocation is POST .../functions/{name}/invocations: the body is
// the request body to deliver (POST, to ?path= or /), with the request's
// Content-Type, and the options in the Ebb-Callback-Url,
// Idempotency-Key and Ebb-Max-Attempts headers. It answers 202 with the
// invocation, or 200 with the earlier one an Idempotency-Key names.
func (s *Server) submitInvocation(w http.ResponseWriter, r *http.Request) error {
	q, name, err := s.invocationsOf(r)
	if err != nil {
		return err
	}
	opts, err := api.ParseInvocationOptions(r.Header.Get)
	if err != nil {
		return err
	}
	if opts.CallbackURL != "" {
		if err := s.cfg.CallbackPolicy.CheckURL(opts.CallbackURL); err != nil {
			return &api.ValidationError{Field: api.HeaderCallbackURL, Reason: err.Error()}
		}
	}
	path := "/"
	if r.URL.Query().Has("path") {
		path = r.URL.Query().Get("path")
		if err := api.ValidateInvocationPath(path); err != nil {
			return err
		}
	}
	if _, err := s.deps.Store.Get(r.Context(), store.FunctionKey(name)); err != nil {
		return functionErr(name, err)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxInvocationBody))
	if err != nil {
		return err // writeErr maps *http.MaxBytesError to 413
	}
	req := api.InvocationRequest{Method: http.MethodPost, Path: path, Body: body}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		req.Header = http.Header{"Content-Type": {ct}}
	}
	inv, dup, err := q.Enqueue(r.Context(), api.NewInvocation(name, req, opts, s.deps.Now().UTC()))
	if err != nil {
		return err
	}
	w.Header().Set(api.HeaderInvocationID, inv.ID)
	w.Header().Set("Location", api.InvocationLocation(inv.Function, inv.ID))
	status := http.StatusAccepted
	if dup {
		status = http.StatusOK
	}
	writeJSON(w, status, inv.Brief())
	return nil
}

// listInvocations is GET .../functions/{name}/invocations: newest first,
// at most ?limit=, without their bodies (GET one for those).
func (s *Server) listInvocations(w http.ResponseWriter, r *http.Request) error {
	q, name, err := s.invocationsOf(r)
	if err != nil {
		return err
	}
	limit := defaultInvocationList
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxInvocationList {
			return &api.ValidationError{Field: "limit", Reason: "must be a whole number within 1-" + strconv.Itoa(maxInvocationList)}
		}
	}
	invs, err := q.List(r.Context(), name, limit)
	if err != nil {
		return err
	}
	if len(invs) == 0 {
		// No invocations, or no function: tell the two apart.
		if _, err := s.deps.Store.Get(r.Context(), store.FunctionKey(name)); err != nil {
			return functionErr(name, err)
		}
	}
	out := api.InvocationList{Items: make([]api.Invocation, 0, len(invs))}
	for _, inv := range invs {
		out.Items = append(out.Items, inv.Brief())
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getInvocation is GET .../functions/{name}/invocations/{id}.
func (s *Server) getInvocation(w http.ResponseWriter, r *http.Request) error {
	q, name, err := s.invocationsOf(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	notFound := errorf(http.StatusNotFound, api.CodeNotFound, "function %s has no invocation %q", describe(name), truncateID(id))
	if !api.ValidInvocationID(id) {
		return notFound
	}
	inv, err := q.Get(r.Context(), name, id)
	if errors.Is(err, queue.ErrNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, inv.Public())
	return nil
}

func truncateID(id string) string {
	if len(id) > 64 {
		return id[:64] + "..."
	}
	return id
}

// dropInvocations deletes a deleted function's invocations. The function
// is gone whatever happens here: a failure is logged, and what is left
// is delivered to no route (404, Failed) and expires with its retention.
func (s *Server) dropInvocations(ctx context.Context, qualified string) {
	if s.deps.Queue == nil {
		return
	}
	if err := s.deps.Queue.DeleteFunction(ctx, qualified); err != nil {
		s.deps.Logger.Warn("drop a deleted function's invocations", "function", qualified, "err", err)
	}
}
