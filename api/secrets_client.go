package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// secretsPath is the client's namespace's secret list; the default
// namespace keeps the /v1/secrets paths.
func (c *Client) secretsPath(name string) (string, error) {
	base := "/v1/secrets"
	if ns := c.Namespace(); ns != DefaultNamespace {
		if err := ValidateName("namespace", ns); err != nil {
			return "", err
		}
		base = "/v1/namespaces/" + ns + "/secrets"
	}
	if name == "" {
		return base, nil
	}
	if err := ValidateName("secret name", name); err != nil {
		return "", err
	}
	return base + "/" + name, nil
}

// SecretWrite says how PutSecret treats an existing secret.
type SecretWrite int

const (
	// SecretReplace creates the secret or replaces all of its data.
	SecretReplace SecretWrite = iota
	// SecretCreate creates the secret and fails (409) if it exists.
	SecretCreate
	// SecretMerge creates the secret or sets the given keys, keeping the
	// others.
	SecretMerge
)

// PutSecret writes secret name of the client's namespace. The answer
// describes it without values; created says it is new.
func (c *Client) PutSecret(ctx context.Context, name string, data map[string][]byte, how SecretWrite) (info SecretInfo, created bool, err error) {
	path, err := c.secretsPath(name)
	if err != nil {
		return info, false, err
	}
	var q url.Values
	if how == SecretMerge {
		q = url.Values{"merge": {"true"}}
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	body, err := json.Marshal(SecretData{Data: data})
	if err != nil {
		return info, false, fmt.Errorf("encode secret %s: %w", name, err)
	}
	req, err := c.newRequest(ctx, http.MethodPut, path, q, bytes.NewReader(body))
	if err != nil {
		return info, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	if how == SecretCreate {
		req.Header.Set("If-None-Match", "*")
	}
	status, err := c.roundTrip(req, &info, http.StatusOK, http.StatusCreated)
	return info, err == nil && status == http.StatusCreated, err
}

// GetSecret describes secret name (keys, users, never values).
func (c *Client) GetSecret(ctx context.Context, name string) (SecretInfo, error) {
	var out SecretInfo
	path, err := c.secretsPath(name)
	if err != nil {
		return out, err
	}
	_, err = c.unary(ctx, http.MethodGet, path, nil, &out, http.StatusOK)
	return out, err
}

// ListSecrets describes the secrets of the client's namespace.
func (c *Client) ListSecrets(ctx context.Context) ([]SecretInfo, error) {
	path, err := c.secretsPath("")
	if err != nil {
		return nil, err
	}
	return listPages(ctx, c, path, func(l *SecretList) ([]SecretInfo, string) { return l.Secrets, l.Continue })
}

// DeleteSecret deletes secret name; the API refuses (409) while a function
// uses it.
func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	path, err := c.secretsPath(name)
	if err != nil {
		return err
	}
	_, err = c.unary(ctx, http.MethodDelete, path, nil, nil, http.StatusNoContent)
	return err
}

// RotateSecretsKey re-wraps every secret's data key under a new
// key-encryption key.
func (c *Client) RotateSecretsKey(ctx context.Context) (RotateKeyResult, error) {
	var out RotateKeyResult
	_, err := c.unary(ctx, http.MethodPost, "/v1/secrets/rotate-key", nil, &out, http.StatusOK)
	return out, err
}
