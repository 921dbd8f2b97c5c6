package controlplane

import (
	"net/http"
	"strconv"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/audit"
)

// Bounds of GET /v1/audit's limit.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 10000
)

// audited wraps the API in the audit log's middleware: every mutating /v1/
// call is recorded after its handler, before its answer leaves, and refused
// while the log cannot be written (see package audit).
func (s *Server) audited(h http.Handler) http.Handler {
	if s.deps.Audit == nil {
		return h
	}
	return s.deps.Audit.Middleware(h, audit.MiddlewareConfig{
		Report: func(e audit.Event, err error) {
			// The line waits in memory for the disk; ebbd's log keeps a
			// copy in case the process ends first.
			s.deps.Logger.Error("audit line not written", "err", err,
				"time", e.Time, "token_id", e.TokenID, "namespace", e.Namespace,
				"verb", e.Verb, "object", e.Object, "status", e.Status, "code", e.Code, "request_id", e.RequestID)
		},
	})
}

// readAudit serves GET /v1/audit?since=&namespace=&limit=: the newest
// limit (default 100, at most 10000) matching events, oldest first. since
// is an RFC 3339 time or a duration back from now (1h).
func (s *Server) readAudit(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Audit == nil {
		return errorf(http.StatusNotImplemented, api.CodeInternal, "this server keeps no audit log")
	}
	q, err := s.auditQuery(r)
	if err != nil {
		return err
	}
	res, err := s.deps.Audit.Read(q)
	if err != nil {
		return err
	}
	out := api.AuditList{Events: res.Events, Skipped: res.Skipped}
	if out.Events == nil {
		out.Events = []api.AuditEvent{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) auditQuery(r *http.Request) (audit.Query, error) {
	v := r.URL.Query()
	q := audit.Query{Namespace: v.Get("namespace"), Limit: defaultAuditLimit}
	if q.Namespace != "" {
		if err := api.ValidateName("namespace", q.Namespace); err != nil {
			return audit.Query{}, err
		}
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxAuditLimit {
			return audit.Query{}, errorf(http.StatusBadRequest, api.CodeInvalid, "limit %q: want a number from 1 to %d", l, maxAuditLimit)
		}
		q.Limit = n
	}
	if since := v.Get("since"); since != "" {
		if d, err := time.ParseDuration(since); err == nil && d >= 0 {
			q.Since = s.deps.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, since); err == nil {
			q.Since = t
		} else {
			return audit.Query{}, errorf(http.StatusBadRequest, api.CodeInvalid, "since %q: want an RFC 3339 time or a duration such as 1h", since)
		}
	}
	return q, nil
}
