package tlsedge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ACMEConfig configures issuance through an ACME certificate authority.
type ACMEConfig struct {
	// DirectoryURL is the CA's directory; default Let's Encrypt's.
	DirectoryURL string
	// Email is the account's contact; optional.
	Email string
	// CacheDir keeps the account key and the certificates, so a restart
	// issues nothing again. Required.
	CacheDir string
	// CAFile, when set, holds PEM roots the CA's directory is trusted by,
	// beside the system's (a private CA, or pebble in tests).
	CAFile string
	// RenewBefore is how long before expiry a certificate is renewed;
	// default autocert's (30 days).
	RenewBefore time.Duration
}

// Mapped reports whether a host may be given a certificate: it is mapped
// to a function.
type Mapped func(host string) bool

// ErrNotMapped is the answer for a host that is not mapped to a function.
var ErrNotMapped = errors.New("host is not mapped to a function")

// NewACME builds the autocert manager for cfg, issuing only for hosts
// mapped says are mapped.
func NewACME(cfg ACMEConfig, mapped Mapped) (*autocert.Manager, error) {
	if cfg.CacheDir == "" {
		return nil, errors.New("acme: a cache directory is required")
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	client := &acme.Client{DirectoryURL: cfg.DirectoryURL}
	if client.DirectoryURL == "" {
		client.DirectoryURL = autocert.DefaultACMEDirectory
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("acme: CA file: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("acme: CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		client.HTTPClient = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	return &autocert.Manager{
		Prompt:      autocert.AcceptTOS,
		Cache:       autocert.DirCache(cfg.CacheDir),
		Client:      client,
		Email:       cfg.Email,
		RenewBefore: cfg.RenewBefore,
		HostPolicy: func(_ context.Context, host string) error {
			if !mapped(host) {
				return fmt.Errorf("acme: %s: %w", host, ErrNotMapped)
			}
			return nil
		},
	}, nil
}
