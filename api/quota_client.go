package api

import (
	"context"
	"net/http"
)

// GetQuota returns namespace ns's quota; zero caps nothing.
func (c *Client) GetQuota(ctx context.Context, ns string) (Quota, error) {
	var out Quota
	path, err := namespacePath(ns)
	if err != nil {
		return out, err
	}
	_, err = c.unary(ctx, http.MethodGet, path+"/quota", nil, &out, http.StatusOK)
	return out, err
}

// SetQuota replaces namespace ns's quota: a cap left zero is no cap.
func (c *Client) SetQuota(ctx context.Context, ns string, q Quota) (Quota, error) {
	var out Quota
	path, err := namespacePath(ns)
	if err != nil {
		return out, err
	}
	if err := q.Validate(); err != nil {
		return out, err
	}
	_, err = c.unary(ctx, http.MethodPut, path+"/quota", q, &out, http.StatusOK)
	return out, err
}

// CreateNamespaceWithQuota is CreateNamespace with a quota for the new
// namespace. created is false when it existed already; its quota is then
// left as it was.
func (c *Client) CreateNamespaceWithQuota(ctx context.Context, ns string, q Quota) (out Namespace, created bool, err error) {
	path, err := namespacePath(ns)
	if err != nil {
		return out, false, err
	}
	if err := q.Validate(); err != nil {
		return out, false, err
	}
	status, err := c.unary(ctx, http.MethodPut, path, NamespaceSpec{Quota: q}, &out, http.StatusCreated, http.StatusOK)
	return out, err == nil && status == http.StatusCreated, err
}
