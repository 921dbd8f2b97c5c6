package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/router"
	"github.com/ebbrun/ebb/router/tlsedge"
	"github.com/ebbrun/ebb/store"
)

// validateTLS checks the TLS and custom-domain settings.
func (c Config) validateTLS() error {
	if c.HSTSMaxAge < 0 {
		return fmt.Errorf("--hsts-max-age %s: must not be negative", c.HSTSMaxAge)
	}
	if c.TLSListen == "" {
		switch {
		case c.TLSCertDir != "" || c.ACMEDirectory != "":
			return errors.New("--tls-cert-dir and --acme-directory need --tls-listen, the router's TLS address")
		case c.HTTPSRedirect || c.HSTSMaxAge > 0:
			return errors.New("--https-redirect and --hsts-max-age need --tls-listen, the router's TLS address")
		}
		return nil
	}
	if _, port, err := net.SplitHostPort(c.TLSListen); err != nil || port == "" {
		return fmt.Errorf("--tls-listen %q: must be host:port", c.TLSListen)
	}
	if c.TLSCertDir == "" && c.ACMEDirectory == "" {
		return errors.New("--tls-listen needs certificates: --tls-cert-dir, --acme-directory or both")
	}
	if c.TLSCertDir != "" && !filepath.IsAbs(c.TLSCertDir) {
		return fmt.Errorf("--tls-cert-dir %q: must be an absolute directory path", c.TLSCertDir)
	}
	if c.ACMEDirectory != "" {
		if u, err := url.Parse(c.ACMEDirectory); err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("--acme-directory %q: must be an https:// URL", c.ACMEDirectory)
		}
	}
	if c.ACMECAFile != "" && !filepath.IsAbs(c.ACMECAFile) {
		return fmt.Errorf("--acme-ca-file %q: must be an absolute path", c.ACMECAFile)
	}
	return nil
}

// routerTLS builds the router's certificate source from the TLS settings:
// the watched directory (run in g) and ACME for the hosts domains maps.
// It is nil without --tls-listen.
func (d *daemon) routerTLS(ctx context.Context, g *errgroup.Group, domains *store.Cache[store.Domain]) (*router.TLS, error) {
	if d.cfg.TLSListen == "" {
		return nil, nil
	}
	certs := &tlsedge.Certificates{Mapped: func(host string) bool {
		_, ok := domains.Snapshot().Get(store.DomainKey(host))
		return ok
	}}
	if d.cfg.TLSCertDir != "" {
		dir, err := tlsedge.OpenDir(d.cfg.TLSCertDir, d.log.With("component", "tls-certs"))
		if err != nil {
			return nil, err
		}
		g.Go(func() error { return dir.Run(ctx) })
		certs.Dir = dir
	}
	if d.cfg.ACMEDirectory != "" {
		m, err := tlsedge.NewACME(tlsedge.ACMEConfig{
			DirectoryURL: d.cfg.ACMEDirectory,
			Email:        d.cfg.ACMEEmail,
			CacheDir:     filepath.Join(d.cfg.DataDir, "acme"),
			CAFile:       d.cfg.ACMECAFile,
		}, certs.Mapped)
		if err != nil {
			return nil, err
		}
		certs.ACME = m
	}
	return &router.TLS{
		GetCertificate: certs.GetCertificate,
		NextProtos:     certs.NextProtos(),
		HTTPChallenge:  certs.HTTPChallenge(),
	}, nil
}
