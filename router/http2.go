package router

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"golang.org/x/net/http2"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/fastconn"
	"github.com/ebbrun/ebb/internal/replicaset"
)

// StreamActivator is the activator for a request the router proxies
// itself, an HTTP/2 stream: it waits for a replica of revision with room
// (see activator.Acquire). done releases the replica once the stream is
// over, with the status it ended with. An error that has an HTTPStatus
// method says what to answer.
type StreamActivator interface {
	Acquire(ctx context.Context, function, revision string, deadline time.Time) (rep *replicaset.Replica, done func(status int), err error)
}

// HTTP/2 server limits. They bound what one client connection can make
// the router hold: MaxConcurrentStreams handlers, and per connection at
// most maxUploadBuffer bytes of request bodies it has not yet forwarded.
// x/net/http2 answers a stream past the limit with RST_STREAM, a flood of
// control frames or of streams reset before their handler ran (rapid
// reset, CVE-2023-44487) with GOAWAY ENHANCE_YOUR_CALM, and garbage with
// GOAWAY PROTOCOL_ERROR.
const (
	maxConcurrentStreams = 250
	maxUploadBuffer      = 1 << 20
	maxStreamUpload      = 256 << 10
	maxReadFrameSize     = 1 << 20
	// maxUpgradeBody bounds the body of an HTTP/1.1 request that asks to
	// upgrade to h2c; a larger one is served over HTTP/1.1 instead, which
	// RFC 9113 permits (the server may ignore Upgrade).
	maxUpgradeBody = 64 << 10
)

// h2 is the router's HTTP/2 side: a server for client connections and
// two proxies to replicas, one per protocol they speak.
type h2 struct {
	srv    *http2.Server
	base   *http.Server // carries the shutdown hook and timeouts to srv
	h1Tr   *http.Transport
	h2cTr  *http2.Transport
	conns  sync.WaitGroup
	open   atomic.Int32 // HTTP/2 connections being served
	errors *prometheus.CounterVec
	// streams counts HTTP/2 streams served, for tests and metrics.
	streams prometheus.Counter
}

func (r *Router) initHTTP2(reg prometheus.Registerer) error {
	dialer := &net.Dialer{Timeout: r.cfg.Proxy.DialTimeout}
	if dialer.Timeout == 0 {
		dialer.Timeout = 2 * time.Second
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if d := r.cfg.Proxy.Dial; d != nil {
			return d(addr)
		}
		return dialer.DialContext(ctx, network, addr)
	}
	h := &h2{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_router_http2_errors_total",
			Help: "HTTP/2 connection and stream errors the router's server counted, by x/net/http2's name for them (too_many_early_resets, over_max_streams, ...).",
		}, []string{"type"}),
		streams: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_router_http2_streams_total",
			Help: "HTTP/2 streams (requests) the router served, gRPC calls included.",
		}),
	}
	for _, c := range []prometheus.Collector{h.errors, h.streams} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	h.srv = &http2.Server{
		MaxConcurrentStreams:         maxConcurrentStreams,
		MaxReadFrameSize:             maxReadFrameSize,
		MaxUploadBufferPerConnection: maxUploadBuffer,
		MaxUploadBufferPerStream:     maxStreamUpload,
		IdleTimeout:                  r.cfg.IdleTimeout,
		CountError:                   func(t string) { h.errors.WithLabelValues(t).Inc() },
	}
	h.base = &http.Server{
		Handler:           http.HandlerFunc(r.serveStream),
		ReadHeaderTimeout: r.cfg.ReadHeaderTimeout,
		IdleTimeout:       r.cfg.IdleTimeout,
		MaxHeaderBytes:    r.cfg.MaxHeaderBytes,
		// x/net/http2 logs misbehaving clients here: debug, as fasthttp's.
		ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	if err := http2.ConfigureServer(h.base, h.srv); err != nil {
		return err
	}
	h.h1Tr = &http.Transport{
		// fastconn: raw syscalls, as on the HTTP/1.1 path's replica
		// connections, so the one P is not handed off mid-write.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return fastconn.Wrap(c), nil
		},
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     r.cfg.Proxy.IdleTimeout,
		DisableCompression:  true,
		// Replicas declared http1 are spoken to in HTTP/1.1 only.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	h.h2cTr = &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// A replica's connection carries the streams of many client
			// connections: its writes are batched as theirs are.
			return coalesce(fastconn.Wrap(c)), nil
		},
		DisableCompression: true,
		IdleConnTimeout:    r.cfg.Proxy.IdleTimeout,
		// A replica that stops answering pings is dropped rather than
		// holding its streams until their deadlines.
		ReadIdleTimeout: 30 * time.Second,
		PingTimeout:     10 * time.Second,
	}
	r.h2 = h
	return nil
}

// ServeHTTP2 serves one client connection that speaks HTTP/2: one that
// opened with the preface (the sniffing listener hands those over), or a
// TLS connection that negotiated "h2" by ALPN. It returns when the
// connection is over, and closes it.
func (r *Router) ServeHTTP2(c net.Conn) {
	r.h2.conns.Add(1)
	defer r.h2.conns.Done()
	// fasthttp's connection cap no longer counts a connection it handed
	// over, so HTTP/2 connections have one of their own, as large.
	if int(r.h2.open.Add(1)) > r.cfg.MaxConns {
		r.h2.open.Add(-1)
		r.h2.errors.WithLabelValues("max_conns").Inc()
		_ = c.Close()
		return
	}
	defer r.h2.open.Add(-1)
	r.h2.srv.ServeConn(coalesce(c), &http2.ServeConnOpts{BaseConfig: r.h2.base, Handler: r.h2.base.Handler})
}

// shutdownHTTP2 sends every HTTP/2 connection GOAWAY and waits, until
// ctx ends, for their streams to finish.
func (r *Router) shutdownHTTP2(ctx context.Context) {
	_ = r.h2.base.Shutdown(ctx)
	done := make(chan struct{})
	go func() { r.h2.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	r.h2.h1Tr.CloseIdleConnections()
	r.h2.h2cTr.CloseIdleConnections()
}

// stream is one HTTP/2 request in flight.
type stream struct {
	rev      *revState
	rep      *replicaset.Replica
	grpc     bool
	deadline time.Time
	// failed is the status the router answered itself, when it did.
	failed int
	// cold says the stream waited for a revision without replicas;
	// acquired is when it got its replica.
	cold     bool
	acquired time.Time
}

// streamHeader reads an HTTP/2 request's header for routing.
type streamHeader struct{ req *http.Request }

func (h streamHeader) Peek(name string) []byte {
	v := h.req.Header.Get(name)
	if v == "" {
		return nil
	}
	return []byte(v)
}

func (h streamHeader) Cookie(name string) []byte {
	c, err := h.req.Cookie(name)
	if err != nil || c.Value == "" {
		return nil
	}
	return []byte(c.Value)
}

// serveStream is the request path of an HTTP/2 stream: the same routing,
// limits, timeouts and accounting as handle, with the request proxied by
// forwardStream, which passes trailers and streams both ways.
func (r *Router) serveStream(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	r.h2.streams.Inc()
	if r.edge != nil {
		r.edge.secureStream(w, req)
	}
	grpc := isGRPC(req)
	rt := r.lookup([]byte(req.Host))
	if rt == nil {
		r.metrics.unknownHost.Inc()
		// Not logged: as on HTTP/1.1, only requests for a function are.
		streamError(w, grpc, http.StatusNotFound, "ebb: no function is served at this host\n")
		return
	}
	if req.Header.Get(api.HeaderInvoke) != "" {
		streamError(w, grpc, http.StatusNotImplemented, "ebb: asynchronous invocation takes HTTP/1.1\n")
		return
	}
	rev, setCookie := r.pick(streamHeader{req}, rt)
	r.serveRevision(w, req, rev, setCookie, start)
}

// serveH1ToH2C serves an HTTP/1.1 request for a revision whose replicas
// speak h2c only: through fasthttp's net/http adaptor, which streams the
// body both ways, onto the HTTP/2 path. Only such revisions pay for it.
func (r *Router) serveH1ToH2C(ctx *fasthttp.RequestCtx, rev *revState, setCookie bool) {
	fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.serveRevision(w, req, rev, setCookie, ctx.Time())
	}))(ctx)
}

// serveRevision serves a request that picked rev: a free replica, else
// the activator.
func (r *Router) serveRevision(w http.ResponseWriter, req *http.Request, rev *revState, setCookie bool, start time.Time) {
	sw := &statusWriter{ResponseWriter: w}
	body := &countingBody{ReadCloser: req.Body}
	req.Body = body
	st := &stream{rev: rev}
	if r.observing() {
		tr := r.beginStreamObservation(req, start)
		defer func() { r.endStream(tr, st, sw, body.n.Load(), req.Proto) }()
	}
	grpc := isGRPC(req)
	deadline := start.Add(rev.timeout)
	if grpc {
		if d, ok := parseGRPCTimeout(req.Header.Get("Grpc-Timeout")); ok && start.Add(d).Before(deadline) {
			deadline = start.Add(d)
		}
	}
	ctx, cancel := context.WithDeadline(req.Context(), deadline)
	defer cancel()
	st.grpc, st.deadline = grpc, deadline
	if setCookie {
		sw.Header().Add("Set-Cookie", rev.cookie)
	}

	if st.rep = rev.set.TryAcquire(); st.rep != nil {
		st.acquired = time.Now()
		rev.stats.Start()
		defer func() {
			rev.set.Release(st.rep)
			rev.stats.End()
			status := sw.result()
			rev.codes.Inc(status)
			took := time.Since(start)
			if st.failed >= http.StatusInternalServerError {
				rev.stats.Outcomes().Failed()
			} else if st.failed != 0 {
				rev.stats.Outcomes().Ended(st.failed)
			} else {
				rev.stats.Outcomes().Answered(status, took)
			}
			rev.latency.Observe(took.Seconds())
		}()
		r.proxyStream(ctx, sw, req, st)
		return
	}
	r.handoffStream(ctx, sw, req, st, start)
}

// handoffStream serves a stream that found no replica with room through
// the activator, which waits for one, and accounts for it as handoff
// does for HTTP/1.1.
func (r *Router) handoffStream(ctx context.Context, sw *statusWriter, req *http.Request, st *stream, start time.Time) {
	rev := st.rev
	act, _ := r.deps.Activator.(StreamActivator)
	if act == nil {
		rev.codes.Inc(http.StatusServiceUnavailable)
		rev.stats.Outcomes().Failed()
		sw.Header().Set("Retry-After", "1")
		streamError(sw, st.grpc, http.StatusServiceUnavailable, "ebb: no replica of "+rev.function+" is ready\n")
		return
	}
	cold := rev.set.Len() == 0
	st.cold = cold
	r.metrics.handoffs.WithLabelValues(namespaceOf(rev.function), rev.function, rev.name).Inc()
	rep, done, err := act.Acquire(ctx, rev.function, rev.name, st.deadline)
	if err != nil {
		status := http.StatusServiceUnavailable
		var hs interface{ HTTPStatus() int }
		if errors.As(err, &hs) {
			status = hs.HTTPStatus()
		}
		var ra interface{ RetryAfterSeconds() int }
		if errors.As(err, &ra) && ra.RetryAfterSeconds() > 0 {
			sw.Header().Set("Retry-After", strconv.Itoa(ra.RetryAfterSeconds()))
		}
		if status != 499 {
			streamError(sw, st.grpc, status, err.Error())
		}
		sw.status = status
	} else {
		st.rep, st.acquired = rep, time.Now()
		func() {
			defer func() { done(sw.result()) }()
			r.proxyStream(ctx, sw, req, st)
		}()
	}
	status := sw.result()
	took := time.Since(start).Seconds()
	rev.codes.Inc(status)
	// As for HTTP/1.1: the outcome counts, the time a cold start took
	// does not.
	rev.stats.Outcomes().Ended(status)
	rev.latency.Observe(took)
	if cold {
		r.metrics.coldStarts.WithLabelValues(namespaceOf(rev.function), rev.function, rev.name).Inc()
		r.metrics.coldLatency.WithLabelValues(namespaceOf(rev.function), rev.function).Observe(took)
	}
}

// proxyStream proxies one stream to st.rep (forwardStream). A replica
// that breaks off mid-response aborts the handler (http.ErrAbortHandler),
// which resets the client's stream; the status recorded for it is 502.
func (r *Router) proxyStream(ctx context.Context, sw *statusWriter, req *http.Request, st *stream) {
	defer func() {
		if p := recover(); p != nil {
			sw.aborted = true
			panic(p)
		}
	}()
	r.forwardStream(ctx, sw, req, st)
}

// proxyError answers a stream whose replica could not be reached or did
// not answer in time; nothing was written to the client yet.
func (r *Router) proxyError(w http.ResponseWriter, st *stream, err error) {
	status := http.StatusBadGateway
	msg := "ebb: function " + st.rev.function + " failed to answer\n"
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
		msg = "ebb: function " + st.rev.function + " did not answer within " + time.Until(st.deadline).Round(time.Millisecond).String() + "\n"
		if left := st.deadline.Sub(time.Now()); left <= 0 {
			msg = "ebb: function " + st.rev.function + " did not answer in time\n"
		}
	case errors.Is(err, context.Canceled):
		// The client reset the stream: nobody reads the answer.
		status = 499
		st.failed = status
		if sw, ok := w.(*statusWriter); ok {
			sw.status = status
		}
		return
	default:
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			st.rep.MarkDown(time.Second)
		}
	}
	st.failed = status
	r.log.Debug("proxy failed", "revision", st.rev.name, "status", status, "err", err, "proto", "HTTP/2.0")
	streamError(w, st.grpc, status, msg)
}

// isGRPC reports whether req is a gRPC call.
func isGRPC(req *http.Request) bool {
	ct := req.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc")
}

// grpcCodes maps the statuses the router answers itself onto gRPC codes,
// as gRPC's own HTTP mapping does, except for a deadline, which is
// DEADLINE_EXCEEDED rather than UNAVAILABLE.
func grpcCode(status int) int {
	switch status {
	case http.StatusGatewayTimeout:
		return 4 // DEADLINE_EXCEEDED
	case http.StatusNotFound, http.StatusNotImplemented:
		return 12 // UNIMPLEMENTED
	case http.StatusTooManyRequests:
		return 8 // RESOURCE_EXHAUSTED
	case http.StatusBadRequest:
		return 13 // INTERNAL
	default:
		return 14 // UNAVAILABLE
	}
}

// streamError answers a stream with an error of the router's own: plain
// text for HTTP, a trailers-only gRPC response for gRPC, whose clients
// read grpc-status rather than the HTTP status.
func streamError(w http.ResponseWriter, grpc bool, status int, msg string) {
	if sw, ok := w.(*statusWriter); ok {
		sw.status = status
		w = sw.ResponseWriter
	}
	h := w.Header()
	if grpc {
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(grpcCode(status)))
		h.Set("Grpc-Message", grpcMessage(strings.TrimSpace(msg)))
		h.Set("Ebb-Status", strconv.Itoa(status))
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

// grpcMessage percent-encodes msg as the grpc-message header requires.
func grpcMessage(msg string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < ' ' || c > '~' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// parseGRPCTimeout reads a grpc-timeout header: at most 8 digits and a
// unit (H, M, S, m, u, n).
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// grpcTimeout formats d as a grpc-timeout header, rounded up to the
// microsecond so a replica never sees more time than is left.
func grpcTimeout(d time.Duration) string {
	if d <= 0 {
		return "0n"
	}
	us := (d + time.Microsecond - 1) / time.Microsecond
	if us < 1e8 {
		return strconv.FormatInt(int64(us), 10) + "u"
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms < 1e8 {
		return strconv.FormatInt(int64(ms), 10) + "m"
	}
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10) + "S"
}

// statusWriter records the status and size of a stream's response.
type statusWriter struct {
	http.ResponseWriter
	status  int
	n       int64
	aborted bool // the response broke off
	// failedLate is the status a response that began well ended with
	// (a gRPC deadline mid-stream: 504).
	failedLate int
}

func (w *statusWriter) WriteHeader(code int) {
	if code >= 200 && w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Flush implements http.Flusher, which streaming needs.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the stream's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// result is the status the stream ended with: 502 for a response that
// broke off, whatever its header said.
func (w *statusWriter) result() int {
	switch {
	case w.aborted:
		return http.StatusBadGateway
	case w.failedLate != 0:
		return w.failedLate
	case w.status == 0:
		return http.StatusOK
	}
	return w.status
}

// countingBody counts the request body's bytes.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
