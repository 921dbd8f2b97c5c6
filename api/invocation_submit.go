package api

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// InvocationOptions are a submission's options, read from its headers by
// the router (Ebb-Invoke: async) and the API alike.
type InvocationOptions struct {
	CallbackURL    string
	IdempotencyKey string
	MaxAttempts    int
}

// Bounds of a submission's options.
const (
	maxCallbackURL    = 2048
	maxIdempotencyKey = 256
	maxInvocationPath = 2048
)

// ParseInvocationOptions reads and checks a submission's options through
// get, a header lookup. A bad value is a ValidationError naming the
// header.
func ParseInvocationOptions(get func(name string) string) (InvocationOptions, error) {
	opts := InvocationOptions{MaxAttempts: DefaultInvocationAttempts}
	if v := get(HeaderCallbackURL); v != "" {
		if err := validateCallbackURL(v); err != nil {
			return opts, err
		}
		opts.CallbackURL = v
	}
	if v := get(HeaderIdempotencyKey); v != "" {
		if len(v) > maxIdempotencyKey || !printable(v) {
			return opts, invalid(HeaderIdempotencyKey, "must be at most %d printable ASCII characters", maxIdempotencyKey)
		}
		opts.IdempotencyKey = v
	}
	if v := get(HeaderMaxAttempts); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxInvocationAttempts {
			return opts, invalid(HeaderMaxAttempts, "%q is not a whole number within 1-%d", truncate(v), MaxInvocationAttempts)
		}
		opts.MaxAttempts = n
	}
	return opts, nil
}

func validateCallbackURL(v string) error {
	if len(v) > maxCallbackURL {
		return invalid(HeaderCallbackURL, "is longer than %d characters", maxCallbackURL)
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return invalid(HeaderCallbackURL, "%q must be an http:// or https:// URL with a host and no user info", truncate(v))
	}
	return nil
}

// ValidateInvocationPath checks the path (with an optional query) an
// invocation is delivered to.
func ValidateInvocationPath(p string) error {
	if !strings.HasPrefix(p, "/") || len(p) > maxInvocationPath || !printable(p) || strings.ContainsAny(p, " #") {
		return invalid("path", "%q must start with / and be at most %d printable characters without spaces or #", truncate(p), maxInvocationPath)
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// NewInvocationID is a random 128-bit hex id.
func NewInvocationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// ValidInvocationID reports whether id looks like NewInvocationID's.
func ValidInvocationID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// NewInvocation is a submission of req to function (its qualified name)
// at now, ready for queue.Enqueue.
func NewInvocation(function string, req InvocationRequest, opts InvocationOptions, now time.Time) Invocation {
	return Invocation{
		ID:             NewInvocationID(),
		Function:       function,
		Status:         InvocationQueued,
		Request:        req,
		MaxAttempts:    opts.MaxAttempts,
		IdempotencyKey: opts.IdempotencyKey,
		CallbackURL:    opts.CallbackURL,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
}

// InvocationLocation is where an invocation of function (its qualified
// name) is read: the Location of the 202.
func InvocationLocation(function, id string) string {
	ns, fn := SplitQualifiedName(function)
	return "/v1/namespaces/" + ns + "/functions/" + fn + "/invocations/" + id
}
