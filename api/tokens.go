package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// TokenRequest asks for a new API token (POST /v1/tokens, or
// /v1/namespaces/{ns}/tokens, which implies the namespace).
type TokenRequest struct {
	// Role is admin, developer, viewer or metrics.
	Role string `json:"role"`
	// Namespace is required for developer and viewer, refused for admin
	// and metrics, which act in every namespace.
	Namespace   string `json:"namespace,omitempty"`
	Description string `json:"description,omitempty"`
	// ExpiresIn is a Go duration ("24h", "90m"); empty means never.
	ExpiresIn string `json:"expiresIn,omitempty"`
}

// Token describes an API token. Token, the secret itself, is set only in
// the answer to its creation: the server keeps only a hash.
type Token struct {
	ID          string     `json:"id"`
	Role        string     `json:"role"`
	Namespace   string     `json:"namespace,omitempty"`
	Description string     `json:"description,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
	ExpiresAt   *time.Time `json:"expiresAt,omitempty"`
	Expired     bool       `json:"expired,omitempty"`
	Token       string     `json:"token,omitempty"`
}

// TokenList is the answer of GET /v1/tokens.
type TokenList struct {
	Tokens []Token `json:"tokens"`
	// Continue is set when more remain: pass it as ?continue= for the next page.
	Continue string `json:"continue,omitempty"`
}

// CreateToken creates a token and returns it with its secret, which is
// shown this once.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (Token, error) {
	var t Token
	_, err := c.unary(ctx, http.MethodPost, "/v1/tokens", req, &t, http.StatusCreated)
	return t, err
}

// ListTokens lists every token, or with a namespace only that namespace's.
func (c *Client) ListTokens(ctx context.Context, namespace string) ([]Token, error) {
	path := "/v1/tokens"
	if namespace != "" {
		if err := ValidateName("namespace", namespace); err != nil {
			return nil, err
		}
		path = "/v1/namespaces/" + namespace + "/tokens"
	}
	return listPages(ctx, c, path, func(l *TokenList) ([]Token, string) { return l.Tokens, l.Continue })
}

// RevokeToken deletes a token by id; it stops working at once.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	if id == "" || len(id) > 64 {
		return &ValidationError{Field: "token id", Reason: "must be a token id as `ebb tokens list` shows it"}
	}
	_, err := c.unary(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil, http.StatusNoContent)
	return err
}
