package controlplane

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/ebbrun/ebb/api"
)

// Pagination. Every list answers in a fixed order (by name, tokens by
// creation) and takes ?limit=N (1-MaxPageSize) and ?continue=TOKEN. The
// token is opaque to clients: the sort key of the last item returned, so
// a page is "the next N after that key" and stays right when items are
// added or removed between pages (none is returned twice; one added
// before the key is not returned).
const (
	MaxPageSize = 1000
	// continuePrefix versions the token's format.
	continuePrefix = "v1:"
)

// page is a list request's ?limit and ?continue: limit 0 means all.
type page struct {
	limit int
	after string // the sort key of the previous page's last item; "" = from the start
}

// pageOf reads and checks ?limit and ?continue (400 when bad).
func pageOf(r *http.Request) (page, error) {
	var p page
	q := r.URL.Query()
	if values, ok := q["limit"]; ok {
		if len(values) != 1 {
			return p, &api.ValidationError{Field: "limit", Reason: "given more than once"}
		}
		n, err := strconv.Atoi(values[0])
		if err != nil || n < 1 || n > MaxPageSize {
			return p, &api.ValidationError{Field: "limit", Reason: fmt.Sprintf("%q is not a number from 1 to %d", truncateForError(values[0]), MaxPageSize)}
		}
		p.limit = n
	}
	if values, ok := q["continue"]; ok {
		if len(values) != 1 {
			return p, &api.ValidationError{Field: "continue", Reason: "given more than once"}
		}
		after, err := decodeContinue(values[0])
		if err != nil {
			return p, err
		}
		p.after = after
	}
	return p, nil
}

func encodeContinue(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(continuePrefix + key))
}

func decodeContinue(token string) (string, error) {
	bad := &api.ValidationError{Field: "continue", Reason: fmt.Sprintf("%q is not a continue token of this list; pass the previous page's continue as it is", truncateForError(token))}
	if token == "" || len(token) > 1024 {
		return "", bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", bad
	}
	key, ok := strings.CutPrefix(string(raw), continuePrefix)
	if !ok || key == "" || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", bad
	}
	return key, nil
}

// paginate returns the page of items (sorted by key, ascending) after
// p.after, at most p.limit long, and the continue token when more remain.
func paginate[T any](items []T, p page, key func(T) string) ([]T, string) {
	start := 0
	if p.after != "" {
		start = len(items)
		for i, it := range items {
			if key(it) > p.after {
				start = i
				break
			}
		}
	}
	items = items[start:]
	if p.limit == 0 || len(items) <= p.limit {
		return items, ""
	}
	return items[:p.limit], encodeContinue(key(items[p.limit-1]))
}
