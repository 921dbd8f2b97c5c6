package controlplane

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// Precondition is what a write expects of the object's record before it
// writes: nothing (last writer wins), that it exists (If-Match: *), or
// that it is at one resourceVersion (the store revision of its last
// write). Writers check it against the version they read and write at
// that same version, so the check and the write are one compare-and-swap
// in the store transaction.
type Precondition struct {
	// MustExist is If-Match: *.
	MustExist bool
	// Version is the expected resourceVersion; 0 expects nothing.
	Version int64
}

// None reports whether the precondition expects nothing.
func (p Precondition) None() bool { return !p.MustExist && p.Version == 0 }

// Check compares the precondition with the record as read: version is
// the record's version, store.MustNotExist when it is absent. A mismatch
// is 409 conflict naming what (e.g. `function "hello"`).
func (p Precondition) Check(what string, version int64) error {
	switch {
	case p.None():
		return nil
	case version == store.MustNotExist:
		return errorf(http.StatusConflict, api.CodeConflict, "%s does not exist, but the request expects it (If-Match)", what)
	case p.Version != 0 && p.Version != version:
		return errorf(http.StatusConflict, api.CodeConflict, "%s is at resourceVersion %d, not %d: it changed since it was read; read it again and retry", what, version, p.Version)
	}
	return nil
}

// ParseResourceVersion reads a resourceVersion: a positive decimal
// store revision.
func ParseResourceVersion(field, s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, &api.ValidationError{Field: field, Reason: fmt.Sprintf("%q is not a resourceVersion (a positive decimal number)", truncateForError(s))}
	}
	return v, nil
}

// preconditionOf reads a PUT's precondition from its If-Match header and
// the resourceVersion its body carried (bodyRV, "" for none). Both may be
// given only if they agree.
func preconditionOf(r *http.Request, bodyRV string) (Precondition, error) {
	var p Precondition
	header := r.Header.Get("If-Match")
	if strings.TrimSpace(header) != "" {
		match := api.ParseIfMatch(header)
		if match == "*" {
			p.MustExist = true
		} else {
			v, err := ParseResourceVersion("If-Match", match)
			if err != nil {
				return p, err
			}
			p.Version = v
		}
	}
	if bodyRV != "" {
		v, err := ParseResourceVersion("resourceVersion", bodyRV)
		if err != nil {
			return p, err
		}
		if p.Version != 0 && p.Version != v {
			return p, &api.ValidationError{Field: "resourceVersion", Reason: fmt.Sprintf("the body says %d but If-Match says %d", v, p.Version)}
		}
		p.Version = v
	}
	return p, nil
}

// dryRunOf reads ?dryRun: "server" or "All" (Kubernetes' spelling)
// validates everything and writes nothing; absent writes; anything else
// is 400.
func dryRunOf(r *http.Request) (bool, error) {
	values, ok := r.URL.Query()["dryRun"]
	if !ok {
		return false, nil
	}
	if len(values) != 1 {
		return false, &api.ValidationError{Field: "dryRun", Reason: "given more than once"}
	}
	switch values[0] {
	case "server", "All", "all":
		return true, nil
	}
	return false, &api.ValidationError{Field: "dryRun", Reason: fmt.Sprintf("%q is not server or All", truncateForError(values[0]))}
}

// writeOptionsOf reads a PUT's precondition and dry-run mode.
func writeOptionsOf(r *http.Request, bodyRV string) (Precondition, bool, error) {
	p, err := preconditionOf(r, bodyRV)
	if err != nil {
		return p, false, err
	}
	dry, err := dryRunOf(r)
	return p, dry, err
}

// resourceVersion renders a store version for the API; "" for none.
func resourceVersion(v int64) string {
	if v <= 0 {
		return ""
	}
	return strconv.FormatInt(v, 10)
}

// setETag sets the ETag of an answer describing an object at rv.
func setETag(w http.ResponseWriter, rv string) {
	if rv != "" {
		w.Header().Set("ETag", strconv.Quote(rv))
	}
}
