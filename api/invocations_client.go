package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// SubmitInvocation is what SubmitInvocation sends: the body to deliver
// (POSTed to Path, "/" when empty) and the submission's options.
type SubmitInvocation struct {
	Body        []byte
	ContentType string
	Path        string
	Options     InvocationOptions
}

// SubmitInvocation queues an asynchronous invocation of function name.
// dup is true when an earlier submission with the same Idempotency-Key
// came back instead.
func (c *Client) SubmitInvocation(ctx context.Context, name string, s SubmitInvocation) (inv Invocation, dup bool, err error) {
	path, err := c.functionPath(name, "/invocations")
	if err != nil {
		return inv, false, err
	}
	if len(s.Body) > MaxInvocationBody {
		return inv, false, invalid("body", "%d bytes is over the %d-byte limit", len(s.Body), MaxInvocationBody)
	}
	q := url.Values{}
	if s.Path != "" {
		if err := ValidateInvocationPath(s.Path); err != nil {
			return inv, false, err
		}
		q.Set("path", s.Path)
	}
	req, err := c.newRequest(ctx, http.MethodPost, path, q, bytes.NewReader(s.Body))
	if err != nil {
		return inv, false, err
	}
	if s.ContentType != "" {
		req.Header.Set("Content-Type", s.ContentType)
	}
	o := s.Options
	if o.CallbackURL != "" {
		req.Header.Set(HeaderCallbackURL, o.CallbackURL)
	}
	if o.IdempotencyKey != "" {
		req.Header.Set(HeaderIdempotencyKey, o.IdempotencyKey)
	}
	if o.MaxAttempts != 0 {
		req.Header.Set(HeaderMaxAttempts, strconv.Itoa(o.MaxAttempts))
	}
	if _, err := ParseInvocationOptions(req.Header.Get); err != nil {
		return inv, false, err
	}
	status, err := c.roundTrip(req, &inv, http.StatusAccepted, http.StatusOK)
	return inv, err == nil && status == http.StatusOK, err
}

// ListInvocations returns function name's invocations, newest first, at
// most limit (0: the server's default).
func (c *Client) ListInvocations(ctx context.Context, name string, limit int) ([]Invocation, error) {
	path, err := c.functionPath(name, "/invocations")
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out InvocationList
	_, err = c.do(ctx, http.MethodGet, path, q, nil, nil, &out, http.StatusOK)
	return out.Items, err
}

// GetInvocation returns one invocation of function name.
func (c *Client) GetInvocation(ctx context.Context, name, id string) (Invocation, error) {
	var out Invocation
	if !ValidInvocationID(id) {
		return out, invalid("id", "%q is not an invocation id (32 hex digits)", truncate(id))
	}
	path, err := c.functionPath(name, "/invocations/", id)
	if err != nil {
		return out, err
	}
	_, err = c.unary(ctx, http.MethodGet, path, nil, &out, http.StatusOK)
	if err != nil {
		return out, fmt.Errorf("get invocation %s: %w", id, err)
	}
	return out, nil
}
