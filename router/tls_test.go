package router

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	"github.com/ebbrun/ebb/store"
)

func (e *env) mapDomain(host, ns, fn string, redirect bool) {
	e.t.Helper()
	_, err := e.st.Txn(context.Background(), store.PutJSON(store.DomainKey(host),
		store.Domain{Host: host, Namespace: ns, Function: fn, Redirect: redirect}, store.AnyVersion))
	require.NoError(e.t, err)
}

func TestDomainMappings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, Config{}, Deps{})
		a, b := e.startMemBackend("a", nil), e.startMemBackend("b", nil)
		e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
		e.deploy("hello.team-a", []rev{{name: "hello.team-a-00001"}}, nil)
		e.endpoint("hello", "hello-00001", "r1", a.addr, 0)
		e.endpoint("hello.team-a", "hello.team-a-00001", "r2", b.addr, 0)
		e.mapDomain("api.example.com", "team-a", "hello", false)
		e.mapDomain("www.example.com", "default", "hello", true) // no TLS here: the redirect is moot
		e.mapDomain("orphan.example.com", "team-a", "gone", false)
		e.mapDomain("other.localhost", "default", "hello", false) // under the routing domain
		e.waitRoute("api.example.com", 1)
		for host, want := range map[string]string{
			"api.example.com":      "b",
			"API.Example.com:8080": "b",
			"www.example.com":      "a",
		} {
			code, body, _ := e.get(host, "/", nil)
			assert.Equal(t, 200, code, host)
			assert.Equal(t, want, body, host)
		}
		for _, host := range []string{"orphan.example.com", "other.localhost", "example.com", "x.api.example.com"} {
			code, _, _ := e.get(host, "/", nil)
			assert.Equal(t, 404, code, host)
		}

		// Deleting the mapping unroutes the host.
		_, err := e.st.Txn(context.Background(), store.Delete(store.DomainKey("api.example.com"), store.AnyVersion))
		require.NoError(t, err)
		synctest.Wait()
		code, _, _ := e.get("api.example.com", "/", nil)
		assert.Equal(t, 404, code)
	})
}

// testCert is a self-signed certificate whose common name is its first
// name.
func testCert(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// tlsEnv is a router that terminates TLS on a loopback port with one
// certificate per name.
func tlsEnv(t *testing.T, cfg Config, names ...string) (*env, string) {
	t.Helper()
	certs := map[string]*tls.Certificate{}
	for _, n := range names {
		c := testCert(t, n)
		certs[n] = &c
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e := newEnv(t, cfg, Deps{TLS: &TLS{
		Listener: ln,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := certs[hello.ServerName]; c != nil {
				return c, nil
			}
			return certs[names[0]], nil
		},
	}})
	return e, ln.Addr().String()
}

// tlsGet sends one HTTP/1.1 request over a new TLS connection with SNI
// host, as a client offering only http/1.1 by ALPN, and returns the
// response and the certificate and protocol the server chose.
func tlsGet(t *testing.T, addr, host, path string) (*http.Response, string, string) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	st := conn.ConnectionState()
	return resp, string(body), st.PeerCertificates[0].Subject.CommonName + " " + st.NegotiatedProtocol
}

func TestTLSTermination(t *testing.T) {
	e, addr := tlsEnv(t, Config{HSTSMaxAge: 24 * time.Hour}, "api.example.com", "www.example.com")
	a := startBackend(t, "a", nil)
	e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
	e.endpoint("hello", "hello-00001", "r1", a.addr, 0)
	e.mapDomain("api.example.com", "default", "hello", false)
	e.mapDomain("www.example.com", "default", "hello", true)
	e.waitRoute("www.example.com", 1)

	for _, host := range []string{"api.example.com", "www.example.com"} {
		resp, body, peer := tlsGet(t, addr, host, "/")
		assert.Equal(t, 200, resp.StatusCode, host)
		assert.Equal(t, "a", body)
		assert.Equal(t, host+" http/1.1", peer, "SNI picks the certificate; a client offering only http/1.1 gets it")
		assert.Equal(t, "max-age=86400", resp.Header.Get("Strict-Transport-Security"))
	}
	resp, body, _ := tlsGet(t, addr, "hello.localhost", "/")
	assert.Equal(t, 200, resp.StatusCode, "generated hosts are served over TLS too")
	assert.Equal(t, "a", body)

	// Plain HTTP: the mapping that asks for it is redirected, with its
	// path and query; HSTS is for TLS responses only.
	_, port, _ := net.SplitHostPort(addr)
	code, _, h := e.get("www.example.com", "/p?q=1", nil)
	assert.Equal(t, http.StatusPermanentRedirect, code)
	assert.Equal(t, "https://www.example.com:"+port+"/p?q=1", string(h.Peek("Location")))
	code, body, h = e.get("api.example.com", "/", nil)
	assert.Equal(t, 200, code)
	assert.Equal(t, "a", body)
	assert.Empty(t, h.Peek("Strict-Transport-Security"))

	// Below TLS 1.2 there is no handshake.
	_, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "api.example.com", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	require.Error(t, err)
	require.Eventually(t, func() bool { return e.metric("ebb_router_tls_handshake_errors_total") >= 1 }, 5*time.Second, time.Millisecond)
}

func TestTLSRedirectAll(t *testing.T) {
	e, _ := tlsEnv(t, Config{HTTPSRedirect: true}, "api.example.com")
	a := startBackend(t, "a", nil)
	e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
	e.endpoint("hello", "hello-00001", "r1", a.addr, 0)
	e.waitRoute("hello.localhost", 1)
	code, _, h := e.get("hello.localhost:8080", "/x", nil)
	assert.Equal(t, http.StatusPermanentRedirect, code)
	assert.True(t, strings.HasPrefix(string(h.Peek("Location")), "https://hello.localhost:"), string(h.Peek("Location")))
	code, _, _ = e.get("unknown.example.com", "/x", nil)
	assert.Equal(t, 404, code, "only routed hosts are redirected")
}

// A client offering h2 by ALPN is served over HTTP/2 by the same routing.
func TestTLSServesH2(t *testing.T) {
	e, addr := tlsEnv(t, Config{HSTSMaxAge: time.Minute}, "api.example.com")
	a := startBackend(t, "a", nil)
	e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
	e.endpoint("hello", "hello-00001", "r1", a.addr, 0)
	e.mapDomain("api.example.com", "default", "hello", false)
	e.waitRoute("api.example.com", 1)

	client := &http.Client{Transport: &http2.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialTLSContext: func(ctx context.Context, network, _ string, cfg *tls.Config) (net.Conn, error) {
			return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
		},
	}}
	resp, err := client.Get("https://api.example.com/")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Equal(t, "a", string(body))
	assert.Equal(t, "max-age=60", resp.Header.Get("Strict-Transport-Security"), "HSTS over HTTP/2 too")
}
