// Package tlsedge finds the certificate the router's TLS listener presents
// for a connection's SNI name, from a directory of certificate files and,
// for mapped custom domains, from an ACME certificate authority.
//
// A Dir holds the cert/key pairs of a directory (NAME.crt with NAME.key,
// or NAME.pem holding both) as an immutable Index, and reloads it when the
// directory changes (fsnotify), so a renewed certificate is served to the
// next handshake without a restart while established connections keep the
// one they negotiated. A pair that fails to load (a certificate written
// before its key, say) keeps its last good version. Index.Pick chooses by
// SNI: an exact name first, then a wildcard one level up (*.example.com
// for api.example.com), then the default pair (NAME "default", else the
// first by name).
//
// ACME issuance uses golang.org/x/crypto/acme/autocert rather than lego:
// it is maintained with Go's own x/ repositories, adds no dependency
// beyond x/crypto, and is built around exactly the shape the router
// needs, a tls.Config GetCertificate that issues on the first handshake
// for a host its HostPolicy allows (here: a host that is mapped to a
// function), caches the certificate (a directory under ebbd's data dir,
// so it survives restarts), and renews it in the background RenewBefore
// its expiry. It answers tls-alpn-01 challenges on the TLS port and,
// through HTTPHandler, http-01 on the plain one. Lego's strength, dozens
// of DNS providers for dns-01 and wildcard certificates, is not something
// per-host mappings need. The cache is per router: routers on several
// machines each issue their own certificate for a host (Let's Encrypt's
// duplicate-certificate limit is 5 a week), which a store-backed
// autocert.Cache would share.
//
// Certificates combines the two into the router's GetCertificate: files
// win (exact, then wildcard), then ACME for a mapped host, then the
// default file.
package tlsedge
