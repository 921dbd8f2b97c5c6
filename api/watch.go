package api

import "strings"

// Watch event types: the object was created (or, in a watch without a
// resourceVersion, existed when the watch began), changed, or was
// removed. A BOOKMARK carries no object, only the resourceVersion the
// stream has read up to: a heartbeat, and where to resume from.
const (
	WatchAdded    = "ADDED"
	WatchModified = "MODIFIED"
	WatchDeleted  = "DELETED"
	WatchBookmark = "BOOKMARK"
	// WatchError is never sent by the server: the client's channel ends
	// with it when the stream breaks, Err saying why.
	WatchError = "ERROR"
)

// WatchEvent is one line of GET .../functions?watch=true (or the data of
// one server-sent event). Object is the function as GET returns it; for
// DELETED, its last known state.
type WatchEvent struct {
	Type            string    `json:"type"`
	Object          *Function `json:"object,omitempty"`
	ResourceVersion string    `json:"resourceVersion"`
	// Err is set on a client-side WatchError event only.
	Err error `json:"-"`
}

// CodeGone is the error code of a watch asked to resume from a
// resourceVersion the store has compacted away (410): list again and
// watch from the listing's version.
const CodeGone = "gone"

// ParseIfMatch reads an If-Match header value: a resourceVersion, quoted
// or not (a weak W/ prefix is accepted too), or "*" for "must exist".
// It returns "" for an empty header.
func ParseIfMatch(h string) string {
	h = strings.TrimSpace(h)
	h = strings.TrimPrefix(h, "W/")
	if len(h) >= 2 && h[0] == '"' && h[len(h)-1] == '"' {
		h = h[1 : len(h)-1]
	}
	return h
}
