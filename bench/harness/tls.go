package harness

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// TLSResult is issue 19's TLS benchmark: req/s and p99 through ebb's TLS
// port against HAProxy terminating TLS (one thread) in front of the same
// replica, with keep-alive and with a new connection (a full handshake)
// per request.
type TLSResult struct {
	Backend        string `json:"backend"`
	Certificate    string `json:"certificate"`
	Rounds         int    `json:"rounds"`
	EbbdGOMAXPROCS int    `json:"ebbdGOMAXPROCS"`
	Wrk            string `json:"wrk"`
	// KeepAlive are the runs over kept-alive connections.
	KeepAlive    []*TargetResult `json:"keepAlive"`
	EbbVsHAProxy Spread          `json:"ebbRPSOverHAProxy"`
	EbbP99OverHA Spread          `json:"ebbP99OverHAProxyP99"`
	// Handshakes are the runs with Connection: close, so each request
	// pays a TCP and TLS handshake.
	HandshakeWrk   string          `json:"handshakeWrk"`
	Handshakes     []*TargetResult `json:"handshakes"`
	HSEbbVsHAProxy Spread          `json:"handshakeEbbRPSOverHAProxy"`
	HSEbbP99OverHA Spread          `json:"handshakeEbbP99OverHAProxyP99"`
	Plot           string          `json:"plot"`
}

// benchCert writes a self-signed ECDSA P-256 certificate for name into
// dir: default.crt and default.key for ebbd's --tls-cert-dir (the pair
// called default answers every SNI name), and haproxy.pem (both in one
// file) for HAProxy's crt.
func benchCert(dir, name string) (haproxyPEM string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	haproxyPEM = filepath.Join(dir, "haproxy.pem")
	for path, data := range map[string][]byte{
		filepath.Join(dir, "default.crt"): certPEM,
		filepath.Join(dir, "default.key"): keyPEM,
		haproxyPEM:                        append(append([]byte{}, certPEM...), keyPEM...),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return "", err
		}
	}
	return haproxyPEM, nil
}

// haproxyTLSConfig is haproxyConfig terminating TLS: one thread, TLS 1.2
// at least, ALPN http/1.1, the same certificate as ebb's.
func haproxyTLSConfig(listen, crt, backend string) string {
	return strings.Replace(haproxyConfig(listen, backend), "    bind "+listen+"\n",
		"    bind "+listen+" ssl crt "+crt+" alpn http/1.1 ssl-min-ver TLSv1.2\n", 1)
}

// StartHAProxyTLS starts HAProxy terminating TLS with the certificate crt.
func (h *Harness) StartHAProxyTLS(ctx context.Context, crt, backend string) (*Peer, error) {
	dir, err := os.MkdirTemp(h.work, "haproxy-tls-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyTLSConfig(loopback(port), crt, backend)), 0o644); err != nil {
		return nil, err
	}
	name, addr := "haproxy-tls", loopback(port)
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("haproxy", "-db", "-f", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := h.procs.Start(name, cmd)
	if err != nil {
		return nil, err
	}
	peer := &Peer{Name: name, Addr: addr, proc: p, h: h}
	// startPeer's readiness check speaks plain HTTP; this one completes a
	// TLS handshake.
	if err := poll(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, error) {
		if ok, werr := p.Exited(); ok {
			b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
			return false, fmt.Errorf("%s exited (%v): %s", name, werr, oneLine(string(b), 500))
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 50 * time.Millisecond}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	}); err != nil {
		peer.Stop()
		return nil, err
	}
	return peer, nil
}

func (h *Harness) tlsSection(ctx context.Context) (Result, error) {
	res := &TLSResult{Rounds: 3, EbbdGOMAXPROCS: h.cfg.EbbdGOMAXPROCS}
	certDir, err := os.MkdirTemp(h.work, "tls-certs-")
	if err != nil {
		return nil, err
	}
	crt, err := benchCert(certDir, "tls.bench.test")
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	res.Certificate = "self-signed ECDSA P-256, the same for both"
	tlsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "tls", Args: []string{"--tls-listen", loopback(tlsPort), "--tls-cert-dir", certDir}})
	if err != nil {
		return nil, err
	}
	defer e.Stop()
	backend, err := h.warmFunction(ctx, e, "tlsb")
	if err != nil {
		return nil, err
	}
	res.Backend = "one warm replica of examples/hello (net/http, in containerd, CPU limit 1, " + e.isolationNote() + ") at " + backend
	ha, err := h.StartHAProxyTLS(ctx, crt, backend)
	if err != nil {
		return nil, err
	}
	defer ha.Stop()
	host := "tlsb.localhost"
	targets := []Target{
		{Name: "ebb-tls", Method: fmt.Sprintf("wrk → ebbd router TLS port (GOMAXPROCS=%d) → replica", h.cfg.EbbdGOMAXPROCS), URL: "https://" + loopback(tlsPort) + "/", Host: host},
		{Name: "haproxy-tls", Method: "wrk → HAProxy 2.6 terminating TLS (nbthread 1, keep-alive, http-reuse always) → replica", URL: "https://" + ha.Addr + "/", Host: host},
		{Name: "ebb-plain", Method: "wrk → ebbd router plain HTTP → replica (the cost of TLS, for reference)", URL: "http://" + e.HTTPAddr + "/", Host: host},
	}
	d := h.wrkDuration()
	res.Wrk = fmt.Sprintf("wrk -t2 -c32 -d%s --latency", d)
	if res.KeepAlive, err = h.measureTargets(ctx, targets, res.Rounds, d, wrkLoad); err != nil {
		return nil, err
	}
	closeScript := filepath.Join(certDir, "close.lua")
	if err := os.WriteFile(closeScript, []byte(`wrk.headers["Connection"] = "close"`+"\n"), 0o644); err != nil {
		return nil, err
	}
	hs := make([]Target, 2)
	for i, t := range targets[:2] {
		t.Script = closeScript
		hs[i] = t
	}
	res.HandshakeWrk = res.Wrk + " -s close.lua (Connection: close: a TCP and TLS handshake per request)"
	if res.Handshakes, err = h.measureTargets(ctx, hs, res.Rounds, d, wrkLoad); err != nil {
		return nil, err
	}
	ratios := func(ts []*TargetResult) (rps, p99 Spread) {
		a, b := ts[0].Runs, ts[1].Runs
		rps = SpreadOf(Ratios(runsOf(a, func(w WrkResult) float64 { return w.RPS }), runsOf(b, func(w WrkResult) float64 { return w.RPS })))
		p99 = SpreadOf(Ratios(runsOf(a, func(w WrkResult) float64 { return w.P99 }), runsOf(b, func(w WrkResult) float64 { return w.P99 })))
		return rps, p99
	}
	res.EbbVsHAProxy, res.EbbP99OverHA = ratios(res.KeepAlive)
	res.HSEbbVsHAProxy, res.HSEbbP99OverHA = ratios(res.Handshakes)
	res.Plot = "tls.png"
	if err := plotTargets(filepath.Join(h.cfg.OutDir, res.Plot), ", keep-alive", res.KeepAlive); err != nil {
		return res, fmt.Errorf("plot: %w", err)
	}
	return res, nil
}

// Rows implements Result.
func (r *TLSResult) Rows() []Row {
	var rows []Row
	add := func(ts []*TargetResult, shape, wrk string, ratio Spread) {
		for _, t := range ts {
			row := Row{Figure: "TLS req/s and p99 (" + shape + "): " + t.Name, Value: t.RPS.Format("%.0f") + " req/s, p99 " + t.P99.Format("%.2f") + " ms",
				Method: wrk + ", " + t.Method + "; " + fmt.Sprint(r.Rounds) + " rounds alternating"}
			if t.Name == "ebb-tls" {
				row.Baseline = "HAProxy (TLS, 1 thread)"
				row.Ratio = ratio.Format("%.2f×") + " req/s"
			}
			rows = append(rows, row)
		}
	}
	add(r.KeepAlive, "keep-alive", r.Wrk, r.EbbVsHAProxy)
	add(r.Handshakes, "a handshake per request", r.HandshakeWrk, r.HSEbbVsHAProxy)
	return rows
}

// Goals implements Result.
func (r *TLSResult) Goals() []Goal {
	errs := int64(0)
	for _, t := range append(append([]*TargetResult{}, r.KeepAlive...), r.Handshakes...) {
		errs += t.Errs
	}
	return []Goal{
		{Source: "issue 19", Goal: "TLS req/s through ebb vs HAProxy terminating TLS (1 thread), keep-alive", Value: r.EbbVsHAProxy.Format("%.2f×") + ", p99 " + r.EbbP99OverHA.Format("%.2f×"), Status: goalIf(r.EbbVsHAProxy.Median >= 1.0)},
		{Source: "issue 19", Goal: "TLS req/s vs HAProxy with a handshake per request", Value: r.HSEbbVsHAProxy.Format("%.2f×") + ", p99 " + r.HSEbbP99OverHA.Format("%.2f×"), Status: goalIf(r.HSEbbVsHAProxy.Median >= 1.0)},
		{Source: "BENCHMARKS", Goal: "no errors in any TLS run", Value: fmt.Sprintf("%d non-2xx or socket errors", errs), Status: goalIf(errs == 0)},
	}
}

// Markdown implements Result.
func (r *TLSResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: `%s` with `Host: tlsb.localhost` over TLS (wrk's OpenSSL negotiates TLS 1.3), %d rounds alternating ebb's TLS port, HAProxy terminating TLS and ebb's plain port (A B C × %d) after a 1 s warm-up of each; "+
		"certificate: %s; every path ends at the same backend: %s. ebbd runs with GOMAXPROCS=%d, HAProxy with nbthread 1. Ratios are per round: median (min–max).\n\n",
		r.Wrk, r.Rounds, r.Rounds, r.Certificate, r.Backend, r.EbbdGOMAXPROCS)
	b.WriteString(targetTable(r.KeepAlive))
	fmt.Fprintf(&b, "\nKeep-alive: ebb / HAProxy req/s %s; ebb p99 / HAProxy p99 %s.\n\n", r.EbbVsHAProxy.Format("%.2f×"), r.EbbP99OverHA.Format("%.2f×"))
	fmt.Fprintf(&b, "A handshake per request: `%s`, alternating ebb and HAProxy.\n\n", r.HandshakeWrk)
	b.WriteString(targetTable(r.Handshakes))
	fmt.Fprintf(&b, "\nHandshakes: ebb / HAProxy req/s %s; ebb p99 / HAProxy p99 %s.\n", r.HSEbbVsHAProxy.Format("%.2f×"), r.HSEbbP99OverHA.Format("%.2f×"))
	fmt.Fprintf(&b, "\n![tls](results/%s)\n", r.Plot)
	return b.String()
}
