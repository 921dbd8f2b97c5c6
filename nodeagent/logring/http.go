package logring

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/ebbrun/ebb/api"
)

// Handler serves GET ?function=F&revision=R&tail=N&since=T&follow=true&timestamps=true
// with the lines of Read as text/plain, flushing as it goes (see Query for
// each parameter). It is how a control plane reads the logs of a remote
// node; token, if set, is the bearer token the caller must present.
func (s *Store) Handler(token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, api.CodeInvalid, "only GET is allowed")
			return
		}
		if token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) != 1 {
			writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong bearer token")
			return
		}
		q, err := parseQuery(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, api.CodeInvalid, err.Error())
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		fw := flushWriter{w: w}
		fw.flush()
		// The status is out; an error can only end the stream early.
		_ = s.Read(r.Context(), fw, q)
	})
}

func parseQuery(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{Function: v.Get("function"), Revision: v.Get("revision")}
	if err := api.ValidateQualifiedName("function", q.Function); err != nil {
		// A job's logs go under its api.JobLogName instead.
		if api.ValidateJobLogName("function", q.Function) != nil {
			return q, err
		}
	}
	if q.Revision != "" {
		if err := api.ValidateQualifiedName("revision", q.Revision); err != nil {
			return q, err
		}
	}
	if t := v.Get("tail"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return q, &api.ValidationError{Field: "tail", Reason: "must be a non-negative integer"}
		}
		q.Tail = n
	}
	if t := v.Get("since"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 {
			return q, &api.ValidationError{Field: "since", Reason: "must be a non-negative integer (Unix nanoseconds)"}
		}
		q.Since = n
	}
	for _, b := range []struct {
		name string
		to   *bool
	}{{"follow", &q.Follow}, {"timestamps", &q.Timestamps}} {
		if f := v.Get(b.name); f != "" {
			v, err := strconv.ParseBool(f)
			if err != nil {
				return q, &api.ValidationError{Field: b.name, Reason: "must be true or false"}
			}
			*b.to = v
		}
	}
	return q, nil
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}

// flushWriter flushes after each write so followed lines arrive promptly.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	f.flush()
	return n, err
}

func (f flushWriter) flush() {
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
}
