package accesslog

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/linestream"
)

// Query selects a function's access lines.
type Query struct {
	// Function is the function's qualified name (api.QualifiedName).
	Function string
	// Tail is how many of the newest kept lines to start with; 0 means all.
	Tail int
	// Follow keeps writing new lines until ctx ends.
	Follow bool
	// FromEnd skips the lines kept now: with Follow, only new lines.
	FromEnd bool
}

// Read writes the function's kept lines to w, oldest first, and with
// Follow then each new one until ctx ends.
func (l *Logger) Read(ctx context.Context, w io.Writer, q Query) error {
	if q.Follow {
		l.rings.followers.Add(1)
		defer l.rings.followers.Add(-1)
	}
	var next uint64
	var lines [][]byte
	tail := q.Tail
	if q.FromEnd {
		if _, next = l.rings.read(q.Function, math.MaxUint64, 0, nil); next == math.MaxUint64 {
			next = 0 // no ring yet: every line is new
		}
	}
	for {
		// Take the wake-up channel before reading, so that a line added
		// between the read and the wait is not missed.
		changed := l.rings.wait()
		lines, next = l.rings.read(q.Function, next, tail, lines[:0])
		tail = 0
		for _, line := range lines {
			if _, err := w.Write(line); err != nil {
				return fmt.Errorf("write access log: %w", err)
			}
		}
		if !q.Follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// Handler serves GET ?function=QUALIFIED&tail=N&follow=true[&from=end] with Read's lines
// as application/x-ndjson, flushing as it goes. It is how a control plane
// reads the access logs of a router on another machine; token, if set, is
// the bearer token the caller must present.
func (l *Logger) Handler(token string) http.Handler {
	return linestream.Handler(token, "application/x-ndjson", ParseQuery, l.Read)
}

// ParseQuery reads function, tail and follow from a request's query.
func ParseQuery(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{Function: v.Get("function")}
	if err := api.ValidateQualifiedName("function", q.Function); err != nil {
		return q, err
	}
	if t := v.Get("tail"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return q, &api.ValidationError{Field: "tail", Reason: "must be a non-negative integer"}
		}
		q.Tail = n
	}
	switch v.Get("from") {
	case "":
	case "end":
		q.FromEnd = true
	default:
		return q, &api.ValidationError{Field: "from", Reason: `must be "end" or absent`}
	}
	if f := v.Get("follow"); f != "" {
		b, err := strconv.ParseBool(f)
		if err != nil {
			return q, &api.ValidationError{Field: "follow", Reason: "must be true or false"}
		}
		q.Follow = b
	}
	return q, nil
}
