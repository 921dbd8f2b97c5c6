package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AuditEvent is one line of the audit log, as written to
// <data-dir>/audit/audit.log and as GET /v1/audit returns it: who (a token
// id, never a token) did what (verb) to which object in which namespace,
// and how it ended.
type AuditEvent struct {
	// Time is when the call ended, in UTC (RFC 3339 with nanoseconds).
	Time time.Time `json:"time"`
	// TokenID names the credential that made the call: a token id, "admin"
	// for the token written at first start, or a node's credential id for
	// a secret read by its node agent. Never the token itself.
	TokenID string `json:"token_id"`
	// Namespace is the namespace of the object; empty for cluster-wide
	// objects such as images and nodes.
	Namespace string `json:"namespace,omitempty"`
	// Verb is create, update or delete for API calls (POST, PUT, DELETE),
	// read-secret for a node agent's secret read, or another verb a caller
	// of Record names.
	Verb string `json:"verb"`
	// Object is the object's path below its namespace, such as
	// functions/hello, functions/hello/traffic, secrets/db or
	// namespaces/team-a.
	Object string `json:"object"`
	// Status is the HTTP status the call was answered with.
	Status int `json:"status"`
	// Code is the error code (ErrorDetail.Code) of a failed call.
	Code string `json:"code,omitempty"`
	// RequestID is the caller's X-Request-Id, if it sent one.
	RequestID string `json:"request_id,omitempty"`
}

// AuditList is the body of GET /v1/audit: the matching events, oldest
// first.
type AuditList struct {
	Events []AuditEvent `json:"events"`
	// Skipped counts lines of the scanned files that were not valid events
	// (a line torn by a crash or a full disk).
	Skipped int `json:"skipped,omitempty"`
}

// CodeAuditUnavailable is the error code of a mutating call that was
// refused, or whose change could not be audited, because the audit log
// cannot be written.
const CodeAuditUnavailable = "audit_unavailable"

// AuditQuery selects audit events. The zero value asks for the server's
// default: the newest 100 events.
type AuditQuery struct {
	Since     time.Time // events at or after it
	Namespace string    // empty: every namespace
	Limit     int       // the newest Limit matching events; 0 is the server's default
}

// Values encodes q as the query of GET /v1/audit.
func (q AuditQuery) Values() url.Values {
	v := url.Values{}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.Namespace != "" {
		v.Set("namespace", q.Namespace)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Audit returns the audit events q selects, oldest first. Only an admin may
// read the audit log.
func (c *Client) Audit(ctx context.Context, q AuditQuery) (AuditList, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var out AuditList
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/audit", q.Values(), nil)
	if err != nil {
		return AuditList{}, err
	}
	_, err = c.roundTrip(req, &out, http.StatusOK)
	return out, err
}
