package bpfsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/bpf"
)

// OriginFinder tells which VIP an accepted connection was meant for;
// *bpf.Loader is one.
type OriginFinder interface {
	FallbackOrigin(client netip.AddrPort) (bpf.Origin, bool, error)
}

// FallbackTargets points the eBPF programs at the fallback listeners;
// *bpf.Loader is one.
type FallbackTargets interface {
	// SetFallback is where host processes' connects to cold VIPs go.
	SetFallback(addr netip.AddrPort) error
	// SetReplicaFallback is where replicas' connects to any VIP go.
	SetReplicaFallback(addr netip.AddrPort) error
}

// FunctionNamer names the function behind a VIP's function id; *Syncer is
// one.
type FunctionNamer interface {
	FunctionByID(id uint32) (string, bool)
}

// FunctionServer serves a request with a named function's traffic split,
// whatever its Host; the router is one.
type FunctionServer interface {
	ServeFunction(ctx *fasthttp.RequestCtx, fn string)
}

// FallbackConfig configures a Fallback.
type FallbackConfig struct {
	// Addr is where it listens for host processes, an IPv4 loopback
	// address: the eBPF program rewrites their connects to cold VIPs to
	// it. Default "127.0.0.1:0", any free port.
	Addr string
	// ReplicaAddr, when set, is a second listener for replicas in network
	// namespaces of their own, which cannot reach the host's loopback: an
	// IPv4 address they reach, the node bridge's gateway, e.g.
	// "10.213.0.1:0". The eBPF program rewrites a replica's connects to any
	// VIP, warm or cold, to it, since replicas cannot reach one another.
	// It keeps connections alive: the replica's next connect would come
	// back here anyway. The address must exist when NewFallback runs.
	ReplicaAddr string
	// ReadHeaderTimeout bounds reading a request's header. Default 10s.
	ReadHeaderTimeout time.Duration
}

// FallbackDeps are the Fallback's collaborators, all required but the
// Registerer and the Logger.
type FallbackDeps struct {
	Origins OriginFinder
	// Targets is told where the listeners are when Run starts.
	Targets    FallbackTargets
	Functions  FunctionNamer
	Server     FunctionServer
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Fallback is the listener that connects to cold VIPs are sent to, and
// optionally the one replicas' VIP connects are sent to.
type Fallback struct {
	deps      FallbackDeps
	host      *fallbackListener
	replica   *fallbackListener // nil without ReplicaAddr
	requests  *prometheus.CounterVec
	readLimit time.Duration
}

// fallbackListener is one listening address and its server.
type fallbackListener struct {
	ln     net.Listener
	addr   netip.AddrPort
	server *fasthttp.Server
}

// NewFallback listens at once, so that the addresses are known before Run.
func NewFallback(cfg FallbackConfig, deps FallbackDeps) (*Fallback, error) {
	if deps.Origins == nil || deps.Targets == nil || deps.Functions == nil || deps.Server == nil {
		return nil, errors.New("bpfsync: FallbackDeps.Origins, Targets, Functions and Server are required")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	if cfg.ReadHeaderTimeout < 0 {
		return nil, errors.New("bpfsync: fallback ReadHeaderTimeout must not be negative")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fallback{
		deps: deps,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_ebpf_fallback_requests_total",
			Help: "Requests on connects to cold VIPs (and replicas' connects to any VIP), by outcome: served through the function's split, or unknown origin.",
		}, []string{"outcome"}),
		readLimit: cfg.ReadHeaderTimeout,
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if err := reg.Register(f.requests); err != nil {
		return nil, fmt.Errorf("bpfsync: register fallback metrics: %w", err)
	}
	// The host's callers are at zero: their next connect should go
	// straight to a replica, not through here again.
	host, err := f.listen(cfg.Addr, true)
	if err != nil {
		return nil, err
	}
	f.host = host
	if cfg.ReplicaAddr != "" {
		replica, err := f.listen(cfg.ReplicaAddr, false)
		if err != nil {
			_ = host.ln.Close()
			return nil, err
		}
		f.replica = replica
	}
	return f, nil
}

// listen opens one listener; closeAfter closes each connection after its
// response.
func (f *Fallback) listen(addr string, closeAfter bool) (*fallbackListener, error) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("bpfsync: fallback listen %s: %w", addr, err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	fl := &fallbackListener{
		ln:   originListener{Listener: ln, origins: f.deps.Origins},
		addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
	}
	fl.server = &fasthttp.Server{
		Handler:                      func(ctx *fasthttp.RequestCtx) { f.handle(ctx, closeAfter) },
		Name:                         "ebb",
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		NoDefaultDate:                true,
		ReadTimeout:                  f.readLimit,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
	}
	return fl, nil
}

// Addr is where the Fallback listens for host processes.
func (f *Fallback) Addr() netip.AddrPort { return f.host.addr }

// ReplicaAddr is where the Fallback listens for replicas; invalid without
// FallbackConfig.ReplicaAddr.
func (f *Fallback) ReplicaAddr() netip.AddrPort {
	if f.replica == nil {
		return netip.AddrPort{}
	}
	return f.replica.addr
}

// Run points the eBPF programs at the listeners, serves until ctx ends,
// then lets requests in flight finish for a few seconds.
func (f *Fallback) Run(ctx context.Context) error {
	listeners := []*fallbackListener{f.host}
	if f.replica != nil {
		listeners = append(listeners, f.replica)
	}
	// Without a replica listener this clears the replica address, so a
	// replica's VIP connects are refused rather than sent nowhere.
	err := f.deps.Targets.SetFallback(f.host.addr)
	if err == nil {
		err = f.deps.Targets.SetReplicaFallback(f.ReplicaAddr())
	}
	if err != nil {
		for _, fl := range listeners {
			_ = fl.ln.Close()
		}
		return fmt.Errorf("bpfsync: %w", err)
	}
	served := make(chan error, len(listeners))
	for _, fl := range listeners {
		go func() { served <- fl.server.Serve(fl.ln) }()
	}
	running := len(listeners)
	select {
	case serr := <-served:
		running--
		err = fmt.Errorf("bpfsync: fallback serve: %w", serr)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, fl := range listeners {
		_ = fl.server.ShutdownWithContext(sctx)
		// Shutdown closes only the listeners Serve has registered.
		_ = fl.ln.Close()
	}
	for range running {
		<-served
	}
	return err
}

func (f *Fallback) handle(ctx *fasthttp.RequestCtx, closeAfter bool) {
	fn, ok := f.origin(ctx)
	if !ok {
		f.requests.WithLabelValues("unknown_origin").Inc()
		ctx.SetConnectionClose()
		ctx.SetStatusCode(fasthttp.StatusMisdirectedRequest)
		ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
		ctx.Response.SetBodyString("ebb: this listener serves connects to function VIPs only\n")
		return
	}
	f.requests.WithLabelValues("served").Inc()
	f.deps.Server.ServeFunction(ctx, fn)
	if closeAfter {
		// The function is warm, or on its way: the client's next
		// connect to the VIP should go straight to a replica, not
		// through here again.
		ctx.SetConnectionClose()
	}
}

// origin names the function whose VIP the client dialed, as the loader
// told when the connection was accepted.
func (f *Fallback) origin(ctx *fasthttp.RequestCtx) (string, bool) {
	c, ok := ctx.Conn().(*originConn)
	if !ok || !c.ok {
		return "", false
	}
	return f.deps.Functions.FunctionByID(c.origin.FunctionID)
}

// originListener asks the loader, once per accepted connection, which VIP
// the client dialed: the programs remember it in an LRU map, which a
// connection kept alive for long could otherwise outlive.
type originListener struct {
	net.Listener
	origins OriginFinder
}

// originConn is an accepted connection with the origin the loader reported.
type originConn struct {
	net.Conn
	origin bpf.Origin
	ok     bool
}

func (l originListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	oc := &originConn{Conn: c}
	if ta, isTCP := c.RemoteAddr().(*net.TCPAddr); isTCP {
		o, ok, err := l.origins.FallbackOrigin(ta.AddrPort())
		oc.origin, oc.ok = o, ok && err == nil
	}
	return oc, nil
}
