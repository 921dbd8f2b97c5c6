package logring

import (
	"net/http"
	"strconv"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/linestream"
)

// Handler serves GET ?function=F&revision=R&tail=N&since=T&follow=true&timestamps=true
// with the lines of Read as text/plain, flushing as it goes (see Query for
// each parameter). It is how a control plane reads the logs of a remote
// node; token, if set, is the bearer token the caller must present.
func (s *Store) Handler(token string) http.Handler {
	return linestream.Handler(token, "text/plain; charset=utf-8", parseQuery, s.Read)
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
