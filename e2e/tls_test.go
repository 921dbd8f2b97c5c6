package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/testenv"
)

// testCA is a certificate authority a test makes for itself.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a server certificate for names (DNS names or IPs) and
// returns it and its key in PEM.
func (ca *testCA) issue(t *testing.T, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, data, 0o600))
}

// writePair writes NAME.key then NAME.crt into dir, as an operator
// renewing a certificate in place would.
func (ca *testCA) writePair(t *testing.T, dir, name string, names ...string) {
	t.Helper()
	c, k := ca.issue(t, names...)
	writeFile(t, filepath.Join(dir, name+".key"), k)
	writeFile(t, filepath.Join(dir, name+".crt"), c)
}

// pebbleServer is a pebble ACME server on loopback that the test started.
type pebbleServer struct {
	dir, mgmt string
	client    *http.Client // trusts pebble's own HTTPS
}

// startPebble runs pebble with every challenge taken as valid
// (PEBBLE_VA_ALWAYS_VALID: it never dials the names it issues for, so
// nothing leaves 127.0.0.0/8), its HTTPS under ca.
func startPebble(t *testing.T, ca *testCA) *pebbleServer {
	t.Helper()
	bin := testenv.RequireBinary(t, "pebble")
	dir := t.TempDir()
	c, k := ca.issue(t, "127.0.0.1", "localhost")
	writeFile(t, filepath.Join(dir, "cert.pem"), c)
	writeFile(t, filepath.Join(dir, "key.pem"), k)
	p := &pebbleServer{
		dir:  fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		mgmt: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
	}
	cfg, err := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":           p.dir,
		"managementListenAddress": p.mgmt,
		"certificate":             filepath.Join(dir, "cert.pem"),
		"privateKey":              filepath.Join(dir, "key.pem"),
		"httpPort":                testenv.FreePort(t),
		"tlsPort":                 testenv.FreePort(t),
		"ocspResponderURL":        "",
	}})
	require.NoError(t, err)
	writeFile(t, filepath.Join(dir, "pebble.json"), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-config", filepath.Join(dir, "pebble.json"), "-dnsserver", "127.0.0.1:1")
	cmd.Env = append(os.Environ(), "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	log := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("pebble:\n%s", log.String())
		}
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	p.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	require.Eventually(t, func() bool {
		resp, err := p.client.Get("https://" + p.dir + "/dir")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "pebble answers")
	return p
}

// root is the PEM of the root pebble issues under (made at its start).
func (p *pebbleServer) root(t *testing.T) []byte {
	t.Helper()
	resp, err := p.client.Get("https://" + p.mgmt + "/roots/0")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return b
}

// curlTLS runs curl against the router's TLS port for host (resolved to
// 127.0.0.1), trusting only cafile, and returns its exit code, the status
// and the headers and body.
func curlTLS(t *testing.T, tlsAddr, host, path, cafile string, flags ...string) (int, string) {
	t.Helper()
	port := portOfAddr(tlsAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"-sS", "-i", "--max-time", "90",
		"--resolve", host + ":" + port + ":127.0.0.1", "--cacert", cafile}, flags...)
	out, err := exec.CommandContext(ctx, "curl", append(args, "https://"+host+":"+port+path)...).CombinedOutput()
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode(), string(out)
	}
	require.NoError(t, err)
	return 0, string(out)
}

// TestTLS checks issue 19's TLS acceptance through real ebbd, containerd
// and curl: SNI picks each mapped domain's certificate from the watched
// directory; a certificate replaced on disk is served to the next
// handshake without a restart while an open keep-alive connection goes
// on; an ACME issuance against pebble gives a mapped domain a
// pebble-signed certificate; and the HTTPS redirect and HSTS policies.
func TestTLS(t *testing.T) {
	testenv.RequireBinary(t, "curl")
	work := t.TempDir()
	ca := newTestCA(t, "ebb e2e CA")
	caFile := filepath.Join(work, "ca.pem")
	writeFile(t, caFile, ca.pem)
	certDir := filepath.Join(work, "certs")
	require.NoError(t, os.Mkdir(certDir, 0o700))
	ca.writePair(t, certDir, "api", "api.example.com")
	ca.writePair(t, certDir, "www", "www.example.com")
	pebble := startPebble(t, ca)

	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	d := startEbbd(t, "--tls-listen", tlsAddr, "--tls-cert-dir", certDir,
		"--acme-directory", "https://"+pebble.dir+"/dir", "--acme-ca-file", caFile, "--acme-email", "ops@example.com",
		"--hsts-max-age", "1h")
	d.pushHello()
	d.ebb("deploy", "hello", "--image", "hello:latest")
	d.ebb("domains", "add", "api.example.com", "--function", "hello")
	d.ebb("domains", "add", "www.example.com", "--function", "hello", "--redirect")
	assert.Contains(t, d.ebb("domains", "list"), "www.example.com  hello     https")

	t.Run("SNI picks each domain's certificate", func(t *testing.T) {
		// ALPN: a client offering h2 gets HTTP/2, one offering only
		// http/1.1 gets HTTP/1.1, from the same port and certificate.
		for _, host := range []string{"api.example.com", "www.example.com"} {
			for flag, status := range map[string]string{"--http2": "HTTP/2 200", "--http1.1": "HTTP/1.1 200"} {
				code, out := curlTLS(t, tlsAddr, host, "/", caFile, flag)
				require.Equal(t, 0, code, "curl verifies the certificate against %s: %s", host, out)
				assert.Contains(t, out, status, flag)
				assert.Contains(t, out, "revision=hello-00001")
				assert.Contains(t, strings.ToLower(out), "strict-transport-security: max-age=3600")
			}
		}
	})

	t.Run("redirect to HTTPS", func(t *testing.T) {
		req, err := http.NewRequest("GET", "http://"+d.httpAddr+"/path?q=1", nil)
		require.NoError(t, err)
		req.Host = "www.example.com"
		resp, err := (&http.Transport{}).RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusPermanentRedirect, resp.StatusCode)
		assert.Equal(t, "https://www.example.com:"+portOfAddr(tlsAddr)+"/path?q=1", resp.Header.Get("Location"))
		assert.Empty(t, resp.Header.Get("Strict-Transport-Security"), "HSTS is for HTTPS responses")

		req, err = http.NewRequest("GET", "http://"+d.httpAddr+"/", nil)
		require.NoError(t, err)
		req.Host = "api.example.com" // maps without --redirect
		resp, err = (&http.Transport{}).RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	})

	t.Run("a replaced certificate is served without a restart", func(t *testing.T) {
		// A keep-alive connection made with the old certificate.
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(ca.pem)
		conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: "api.example.com", RootCAs: roots})
		require.NoError(t, err)
		defer conn.Close()
		br := bufio.NewReader(conn)
		ask := func() {
			t.Helper()
			_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
			require.NoError(t, err)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			_, err = io.Copy(io.Discard, resp.Body)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
		}
		ask()

		// The new certificate is from another CA: curl trusting only that
		// one succeeds once, and only once, the router serves it.
		ca2 := newTestCA(t, "ebb e2e CA 2")
		ca2File := filepath.Join(work, "ca2.pem")
		writeFile(t, ca2File, ca2.pem)
		ca2.writePair(t, certDir, "api", "api.example.com")
		var out string
		require.Eventually(t, func() bool {
			var code int
			code, out = curlTLS(t, tlsAddr, "api.example.com", "/", ca2File)
			return code == 0
		}, 20*time.Second, 50*time.Millisecond, "the renewed certificate is served: %s", out)
		assert.Contains(t, out, "revision=hello-00001")
		code, _ := curlTLS(t, tlsAddr, "www.example.com", "/", caFile)
		assert.Equal(t, 0, code, "the other domain keeps its certificate")

		ask() // the connection made before the change still serves
		assert.Equal(t, ca.cert.Subject.CommonName, conn.ConnectionState().PeerCertificates[0].Issuer.CommonName)
	})

	t.Run("ACME issues a mapped domain's certificate", func(t *testing.T) {
		d.ebb("domains", "add", "acme.example.com", "--function", "hello")
		rootFile := filepath.Join(work, "pebble-root.pem")
		writeFile(t, rootFile, pebble.root(t))
		code, out := curlTLS(t, tlsAddr, "acme.example.com", "/", rootFile)
		require.Equal(t, 0, code, "curl trusting only pebble's root: %s\n%s", out, d.log)
		assert.Contains(t, out, "revision=hello-00001")

		entries, err := os.ReadDir(filepath.Join(d.dataDir, "acme"))
		require.NoError(t, err)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		assert.Contains(t, names, "acme.example.com", "the certificate is cached in the data dir")

		// A host nobody mapped gets no certificate issued.
		code, _ = curlTLS(t, tlsAddr, "unmapped.example.com", "/", rootFile)
		assert.NotEqual(t, 0, code)
	})
}
