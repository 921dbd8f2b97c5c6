package router

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/ebbrun/ebb/internal/fastconn"
)

// TLS is what the router needs to terminate TLS: certificates (see
// router/tlsedge) and, optionally, the HTTP/2 server.
type TLS struct {
	// Listener, when set, is served instead of listening on
	// Config.TLSAddr.
	Listener net.Listener
	// GetCertificate picks a connection's certificate by SNI. Required.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// NextProtos are ALPN protocols GetCertificate answers itself beside
	// h2 and http/1.1 (ACME's acme-tls/1).
	NextProtos []string
	// HTTPChallenge answers ACME http-01 challenges
	// (/.well-known/acme-challenge/...) on the plain-HTTP port; optional.
	HTTPChallenge http.Handler
}

// edge is the router's TLS state: the listener's config and the policy
// for plain and TLS requests.
type edge struct {
	config *tls.Config
	ln     net.Listener // nil: listen on Config.TLSAddr in Run
	addr   string
	// portSuffix is ":{port}" of the TLS listener in redirects, "" for 443.
	portSuffix  string
	redirectAll bool
	hsts        string // the Strict-Transport-Security value; "" is off
	challenge   fasthttp.RequestHandler
	h2          func(net.Conn)
}

// acmeChallengePath is where ACME's http-01 challenges are fetched.
var acmeChallengePath = []byte("/.well-known/acme-challenge/")

// newEdge builds the TLS state; h2 serves a connection that negotiated
// "h2" by ALPN, after its handshake (Router.ServeHTTP2).
func newEdge(cfg Config, t *TLS, h2 func(net.Conn)) (*edge, error) {
	if t.GetCertificate == nil {
		return nil, errors.New("router: TLS needs GetCertificate")
	}
	e := &edge{ln: t.Listener, addr: cfg.TLSAddr, redirectAll: cfg.HTTPSRedirect, h2: h2}
	if e.ln != nil {
		e.addr = e.ln.Addr().String()
	}
	_, port, err := net.SplitHostPort(e.addr)
	if err != nil {
		return nil, fmt.Errorf("router: TLS address %q: %w", e.addr, err)
	}
	if port != "443" {
		e.portSuffix = ":" + port
	}
	if cfg.HSTSMaxAge > 0 {
		e.hsts = "max-age=" + strconv.FormatInt(int64(cfg.HSTSMaxAge/time.Second), 10)
	}
	if t.HTTPChallenge != nil {
		e.challenge = fasthttpadaptor.NewFastHTTPHandler(t.HTTPChallenge)
	}
	protos := append([]string{"h2", "http/1.1"}, t.NextProtos...)
	e.config = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: t.GetCertificate,
		NextProtos:     protos,
	}
	return e, nil
}

// intercept answers what a plain request gets before routing: an ACME
// http-01 challenge. It reports whether it answered.
func (e *edge) intercept(ctx *fasthttp.RequestCtx) bool {
	if e.challenge == nil || ctx.IsTLS() || !bytes.HasPrefix(ctx.Path(), acmeChallengePath) {
		return false
	}
	e.challenge(ctx)
	return true
}

// redirect answers a plain request for a routed host with a 308 to HTTPS
// when the policy asks for it, and reports whether it did. The host is
// one the table routes, so the redirect never points elsewhere.
func (e *edge) redirect(ctx *fasthttp.RequestCtx, rt *route) bool {
	if !(e.redirectAll || rt.redirect) || ctx.IsTLS() {
		return false
	}
	host := ctx.Request.Header.Host()
	if h, _, err := net.SplitHostPort(string(host)); err == nil {
		host = []byte(h)
	}
	loc := make([]byte, 0, 8+len(host)+len(e.portSuffix)+len(ctx.RequestURI()))
	loc = append(loc, "https://"...)
	loc = append(loc, host...)
	loc = append(loc, e.portSuffix...)
	loc = append(loc, ctx.RequestURI()...)
	ctx.Response.Header.SetBytesV("Location", loc)
	ctx.SetStatusCode(fasthttp.StatusPermanentRedirect)
	return true
}

// secure adds Strict-Transport-Security to a response over TLS.
func (e *edge) secure(ctx *fasthttp.RequestCtx) {
	if e.hsts != "" && ctx.IsTLS() {
		ctx.Response.Header.Set("Strict-Transport-Security", e.hsts)
	}
}

// secureStream is secure for an HTTP/2 stream: x/net sets req.TLS on a
// connection that came through the TLS listener.
func (e *edge) secureStream(w http.ResponseWriter, req *http.Request) {
	if e.hsts != "" && req.TLS != nil {
		w.Header().Set("Strict-Transport-Security", e.hsts)
	}
}

// serveTLS accepts connections on raw, completes their handshakes (each
// in its own goroutine, bounded by ReadHeaderTimeout) and hands each to
// the HTTP/2 server when it negotiated h2, else to the same fasthttp
// server the plain port has, until ctx ends.
func (r *Router) serveTLS(ctx context.Context, raw net.Listener) error {
	ln := newListener(fastconn.Listener(raw), r.cfg.MaxConnsPerIP, r.log, r.metrics.acceptShortages, r.metrics.refusedPerIP)
	q := &connQueue{ch: make(chan net.Conn), done: make(chan struct{}), addr: raw.Addr()}
	r.log.Info("serving TLS", "addr", raw.Addr().String(), "alpn", r.edge.config.NextProtos)
	served := make(chan error, 1)
	go func() { served <- r.server.Serve(q) }()
	go func() {
		<-ctx.Done()
		ln.Close()
		q.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			q.Close()
			serr := <-served
			if ctx.Err() != nil {
				return nil
			}
			return errors.Join(fmt.Errorf("router: accept TLS: %w", err), serr)
		}
		go r.handshake(c, q)
	}
}

func (r *Router) handshake(c net.Conn, q *connQueue) {
	tc := tls.Server(c, r.edge.config)
	_ = c.SetDeadline(time.Now().Add(r.cfg.ReadHeaderTimeout))
	if err := tc.Handshake(); err != nil {
		r.metrics.tlsHandshakeErrors.Inc()
		r.log.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		r.edge.h2(tc)
		return
	}
	select {
	case q.ch <- tc:
	case <-q.done:
		tc.Close()
	}
}

// connQueue is a net.Listener of connections whose TLS handshake is done,
// which the fasthttp server accepts from.
type connQueue struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
