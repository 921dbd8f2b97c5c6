package controlplane

import (
	"net/http"
	"strconv"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	name, err := s.functionName(r)
	if err != nil {
		return err
	}
	if _, err := s.deps.Store.Get(r.Context(), store.FunctionKey(name)); err != nil {
		return functionErr(name, err)
	}
	req, err := logRequest(r, name)
	if err != nil {
		return err
	}
	req.Revision = r.URL.Query().Get("revision")
	if v := r.URL.Query().Get("access"); v != "" {
		if req.Access, err = strconv.ParseBool(v); err != nil {
			return &api.ValidationError{Field: "access", Reason: "must be true or false"}
		}
		if req.Access && req.Revision != "" {
			return &api.ValidationError{Field: "revision", Reason: "access logs are per function, not per revision"}
		}
	}
	if req.Revision != "" {
		if _, err := s.deps.Store.Get(r.Context(), store.RevisionKey(name, req.Revision)); err != nil {
			return errorf(http.StatusNotFound, api.CodeNotFound, "revision %q of %s does not exist", req.Revision, describe(name))
		}
	}
	return s.streamLogs(w, r, req)
}

// logRequest reads the tail and follow parameters of a logs request for
// the log name function (a function's qualified name, or a job's
// api.JobLogName).
func logRequest(r *http.Request, function string) (LogRequest, error) {
	q := r.URL.Query()
	req := LogRequest{Function: function}
	var err error
	if v := q.Get("tail"); v != "" {
		if req.Tail, err = strconv.Atoi(v); err != nil || req.Tail < 0 {
			return req, &api.ValidationError{Field: "tail", Reason: "must be a non-negative integer"}
		}
	}
	if v := q.Get("follow"); v != "" {
		if req.Follow, err = strconv.ParseBool(v); err != nil {
			return req, &api.ValidationError{Field: "follow", Reason: "must be true or false"}
		}
	}
	return req, nil
}

// streamLogs answers a logs request from the node agents' log rings.
func (s *Server) streamLogs(w http.ResponseWriter, r *http.Request, req LogRequest) error {
	logs := s.deps.Logs
	if req.Access {
		logs = s.deps.AccessLogs
		if logs == nil {
			return errorf(http.StatusNotImplemented, api.CodeInternal, "no router keeps access logs: start ebbd with --access-log")
		}
	}
	if logs == nil {
		return errorf(http.StatusNotImplemented, api.CodeInternal, "this control plane runs without a node agent to read logs from")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	// The status line is out; from here an error can only end the stream.
	if err := logs.Logs(r.Context(), &flushWriter{w: w}, req); err != nil && r.Context().Err() == nil {
		s.deps.Logger.Warn("log stream ended", "function", req.Function, "err", err)
	}
	return nil
}

// flushWriter flushes after each write so followed logs arrive promptly.
type flushWriter struct{ w http.ResponseWriter }

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}
