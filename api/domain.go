package api

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Domain maps a host name a user owns (api.example.com) to a function of a
// namespace: the router serves requests for that host, over HTTP and
// HTTPS, with the function's traffic split. A host has one owner: a
// namespace other than the one that mapped it cannot map it again.
type Domain struct {
	Host      string `json:"host"`
	Namespace string `json:"namespace"`
	Function  string `json:"function"`
	// Redirect answers plain-HTTP requests for the host with a redirect
	// to HTTPS, when the router terminates TLS.
	Redirect  bool      `json:"redirect,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// DomainSpec is the body of PUT .../domains/{host}.
type DomainSpec struct {
	Function string `json:"function"`
	Redirect bool   `json:"redirect,omitempty"`
}

// DomainList is the answer to GET .../domains.
type DomainList struct {
	Domains []Domain `json:"domains"`
}

// MaxHostLength is the longest host name DNS can carry.
const MaxHostLength = 253

// ValidateHost checks that host can be mapped: a lowercase DNS name of at
// least two labels (each a DNS label), at most MaxHostLength bytes, with
// a top-level label that is not all digits. IP addresses, wildcards,
// ports, trailing dots and anything else a Host header or an SNI name
// could not match exactly are refused.
func ValidateHost(field, host string) error {
	switch {
	case host == "":
		return invalid(field, "must not be empty")
	case len(host) > MaxHostLength:
		return invalid(field, "%q is longer than %d characters", truncate(host), MaxHostLength)
	case strings.ContainsRune(host, '*'):
		return invalid(field, "%q: wildcards cannot be mapped; map each host", truncate(host))
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return invalid(field, "%q is an IP address, not a DNS name", truncate(host))
	}
	labels := strings.Split(host, ".")
	if len(labels) < 2 {
		return invalid(field, "%q must have at least two labels, such as api.example.com", truncate(host))
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || !dnsLabel.MatchString(l) {
			return invalid(field, "%q must be a lowercase DNS name: labels of 1 to 63 letters, digits and '-', separated by '.'", truncate(host))
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return invalid(field, "%q: the last label must not be all digits", truncate(host))
	}
	return nil
}

// domainsPath is the client's namespace's domain list, or one host of it.
func (c *Client) domainsPath(host string) (string, error) {
	base := "/v1/domains"
	if ns := c.Namespace(); ns != DefaultNamespace {
		if err := ValidateName("namespace", ns); err != nil {
			return "", err
		}
		base = "/v1/namespaces/" + ns + "/domains"
	}
	if host == "" {
		return base, nil
	}
	if err := ValidateHost("host", host); err != nil {
		return "", err
	}
	return base + "/" + host, nil
}

// PutDomain maps host to a function of the client's namespace; created
// says the mapping is new. A host another namespace owns is refused (409).
func (c *Client) PutDomain(ctx context.Context, host string, spec DomainSpec) (d Domain, created bool, err error) {
	path, err := c.domainsPath(strings.ToLower(host))
	if err != nil {
		return d, false, err
	}
	status, err := c.unary(ctx, http.MethodPut, path, spec, &d, http.StatusOK, http.StatusCreated)
	return d, err == nil && status == http.StatusCreated, err
}

// ListDomains lists the client's namespace's domain mappings, by host.
func (c *Client) ListDomains(ctx context.Context) ([]Domain, error) {
	path, err := c.domainsPath("")
	if err != nil {
		return nil, err
	}
	var out DomainList
	_, err = c.unary(ctx, http.MethodGet, path, nil, &out, http.StatusOK)
	return out.Domains, err
}

// DeleteDomain removes the client's namespace's mapping of host.
func (c *Client) DeleteDomain(ctx context.Context, host string) error {
	path, err := c.domainsPath(strings.ToLower(host))
	if err != nil {
		return err
	}
	_, err = c.unary(ctx, http.MethodDelete, path, nil, nil, http.StatusNoContent)
	return err
}
