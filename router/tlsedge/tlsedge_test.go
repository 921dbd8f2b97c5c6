package tlsedge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// selfSigned makes a certificate for names and returns its PEM and its
// key's.
func selfSigned(t *testing.T, cn string, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func pair(t *testing.T, name string, names ...string) Pair {
	t.Helper()
	c, k := selfSigned(t, name, names...)
	cert, err := tls.X509KeyPair(c, k)
	require.NoError(t, err)
	return Pair{Name: name, Cert: &cert}
}

func writePair(t *testing.T, dir, name string, names ...string) {
	t.Helper()
	c, k := selfSigned(t, name, names...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".key"), k, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".crt"), c, 0o644))
}

func cnOf(c *tls.Certificate) string {
	if c == nil {
		return ""
	}
	return c.Leaf.Subject.CommonName
}

func TestIndexPick(t *testing.T) {
	ix := NewIndex([]Pair{
		pair(t, "api", "api.example.com"),
		pair(t, "wild", "*.example.com"),
		pair(t, "other", "other.test", "www.other.test"),
		pair(t, "cn-only"), // CN is the name
		pair(t, "b-dup", "dup.test"),
		pair(t, "a-dup", "dup.test"),
	})
	tests := []struct {
		sni, want string
	}{
		{"api.example.com", "api"},
		{"API.Example.COM", "api"},  // case
		{"api.example.com.", "api"}, // trailing dot
		{"web.example.com", "wild"},
		{"a.b.example.com", "a-dup"}, // a wildcard covers one label only: default
		{"example.com", "a-dup"},     // nor the parent itself
		{"www.other.test", "other"},
		{"cn-only", "cn-only"},
		{"dup.test", "a-dup"}, // first by pair name
		{"", "a-dup"},         // no SNI: the default, first by name
		{"unknown.test", "a-dup"},
	}
	for _, tt := range tests {
		t.Run(tt.sni, func(t *testing.T) {
			assert.Equal(t, tt.want, cnOf(ix.Pick(tt.sni)))
		})
	}

	withDefault := NewIndex([]Pair{pair(t, "api", "api.example.com"), pair(t, DefaultPair, "fallback.test")})
	assert.Equal(t, DefaultPair, cnOf(withDefault.Pick("nothing.test")), "a pair called default is the default")
	assert.Nil(t, NewIndex(nil).Pick("api.example.com"))
}

func TestDirReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, "api", "api.example.com")
	c, k := selfSigned(t, "both", "both.test")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "both.pem"), append(c, k...), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lonely.crt"), c, 0o644)) // no key: skipped
	d, err := OpenDir(dir, nil)
	require.NoError(t, err)
	first := d.Index().Match("api.example.com")
	require.NotNil(t, first)
	assert.Equal(t, "both", cnOf(d.Index().Match("both.test")), "a .pem with the key in it")

	// A new certificate written before its key: the pair keeps the old one.
	c2, k2 := selfSigned(t, "api", "api.example.com")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "api.crt"), c2, 0o644))
	require.Error(t, d.Reload())
	assert.Same(t, first, d.Index().Match("api.example.com"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "api.key"), k2, 0o600))
	require.NoError(t, d.Reload())
	assert.NotSame(t, first, d.Index().Match("api.example.com"), "the renewed pair is served")

	require.NoError(t, os.Remove(filepath.Join(dir, "both.pem")))
	require.NoError(t, d.Reload())
	assert.Nil(t, d.Index().Match("both.test"), "a removed pair is dropped")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.crt"), []byte("garbage"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.key"), []byte("garbage"), 0o600))
	_, err = OpenDir(dir, nil)
	require.Error(t, err, "a broken pair at start is an error")
}

func TestDirWatch(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, "api", "api.example.com")
	d, err := OpenDir(dir, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	// The watch is set up once Run started; a change before that would be
	// missed, so keep writing until a reload sees the new pair.
	require.Eventually(t, func() bool {
		if d.Index().Match("new.example.com") != nil {
			return true
		}
		writePair(t, dir, "new", "new.example.com")
		return false
	}, 10*time.Second, 50*time.Millisecond, "a pair added to the directory is served without a restart")
}

func TestCertificatesOrder(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, "api", "api.example.com")
	writePair(t, dir, "wild", "*.example.com")
	writePair(t, dir, DefaultPair, "default.test")
	d, err := OpenDir(dir, nil)
	require.NoError(t, err)
	c := &Certificates{Dir: d}
	get := func(sni string) string {
		cert, err := c.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
		require.NoError(t, err)
		return cnOf(cert)
	}
	assert.Equal(t, "api", get("api.example.com"))
	assert.Equal(t, "wild", get("web.example.com"))
	assert.Equal(t, DefaultPair, get("mapped.test"))
	assert.Nil(t, c.NextProtos())
	assert.Nil(t, c.HTTPChallenge())

	empty := &Certificates{}
	_, err = empty.GetCertificate(&tls.ClientHelloInfo{ServerName: "x.test"})
	require.Error(t, err, "no source: the handshake fails")
}

func TestNewACMEPolicy(t *testing.T) {
	m, err := NewACME(ACMEConfig{CacheDir: filepath.Join(t.TempDir(), "acme")}, func(h string) bool { return h == "api.example.com" })
	require.NoError(t, err)
	require.NoError(t, m.HostPolicy(context.Background(), "api.example.com"))
	require.ErrorIs(t, m.HostPolicy(context.Background(), "evil.example.com"), ErrNotMapped)
	_, err = NewACME(ACMEConfig{}, nil)
	require.Error(t, err)
	_, err = NewACME(ACMEConfig{CacheDir: t.TempDir(), CAFile: filepath.Join(t.TempDir(), "missing.pem")}, nil)
	require.Error(t, err)
}
