package tlsedge

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Certificates is the router's certificate source: a directory, ACME, or
// both.
type Certificates struct {
	// Dir holds the certificate files; optional.
	Dir *Dir
	// ACME issues certificates for mapped hosts; optional.
	ACME *autocert.Manager
	// Mapped says whether a host is mapped; ACME issues only for those.
	Mapped Mapped
}

// GetCertificate is tls.Config.GetCertificate: a directory pair for the
// exact name, then for a wildcard, then ACME's for a mapped host (issued
// on the first handshake, cached, renewed), then the directory's default.
// An ACME tls-alpn-01 challenge goes to ACME.
func (c *Certificates) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c.ACME != nil && slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
		return c.ACME.GetCertificate(hello)
	}
	var ix *Index
	if c.Dir != nil {
		ix = c.Dir.Index()
		if cert := ix.Match(hello.ServerName); cert != nil {
			return cert, nil
		}
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if c.ACME != nil && name != "" && c.Mapped != nil && c.Mapped(name) {
		return c.ACME.GetCertificate(hello)
	}
	if ix != nil {
		if cert := ix.Default(); cert != nil {
			return cert, nil
		}
	}
	return nil, fmt.Errorf("tls: no certificate for %q", hello.ServerName)
}

// NextProtos are the ALPN protocols the source answers itself, beside
// the router's: ACME's tls-alpn-01.
func (c *Certificates) NextProtos() []string {
	if c.ACME == nil {
		return nil
	}
	return []string{acme.ALPNProto}
}

// HTTPChallenge answers ACME http-01 challenges on the plain-HTTP port;
// nil without ACME. It must only see paths under
// /.well-known/acme-challenge/.
func (c *Certificates) HTTPChallenge() http.Handler {
	if c.ACME == nil {
		return nil
	}
	return c.ACME.HTTPHandler(http.NotFoundHandler())
}
