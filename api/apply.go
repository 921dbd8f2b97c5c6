package api

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
)

// Apply actions, ApplyResult.Action.
const (
	ApplyCreated    = "created"
	ApplyConfigured = "configured"
	ApplyUnchanged  = "unchanged"
	ApplyDeleted    = "deleted"
)

// ApplyResult is the outcome of one manifest document of POST /v1/apply.
type ApplyResult struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Action is empty when Error is set: the document changed nothing.
	Action   string       `json:"action,omitempty"`
	Error    *ErrorDetail `json:"error,omitempty"`
	Warnings []string     `json:"warnings"`
}

// ApplyResponse is the body of POST /v1/apply's answer: one result per
// document, in order.
type ApplyResponse struct {
	Results []ApplyResult `json:"results"`
}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// DryRun validates everything on the server and writes nothing.
	DryRun bool
	// Lenient turns unsupported Knative fields into warnings.
	Lenient bool
}

// Apply sends a manifest stream (YAML or JSON documents) to POST
// /v1/namespaces/{ns}/apply of the client's namespace, the namespace of
// documents that name none. A document that fails is reported in its
// result, not as an error.
func (c *Client) Apply(ctx context.Context, manifest []byte, opts ApplyOptions) (ApplyResponse, error) {
	var out ApplyResponse
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	path, err := namespacePath(c.Namespace())
	if err != nil {
		return out, err
	}
	q := url.Values{}
	if opts.DryRun {
		q.Set("dryRun", "server")
	}
	if opts.Lenient {
		q.Set("lenient", "true")
	}
	req, err := c.newRequest(ctx, http.MethodPost, path+"/apply", q, bytes.NewReader(manifest))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/yaml")
	_, err = c.roundTrip(req, &out, http.StatusOK)
	return out, err
}
