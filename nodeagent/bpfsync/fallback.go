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
	// Addr is where it listens, an IPv4 loopback address: the eBPF
	// program rewrites connects to it. Default "127.0.0.1:0", any free
	// port.
	Addr string
	// ReadHeaderTimeout bounds reading a request's header. Default 10s.
	ReadHeaderTimeout time.Duration
}

// FallbackDeps are the Fallback's collaborators, all required but the
// Registerer and the Logger.
type FallbackDeps struct {
	Origins    OriginFinder
	Functions  FunctionNamer
	Server     FunctionServer
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Fallback is the listener that connects to cold VIPs are sent to.
type Fallback struct {
	deps     FallbackDeps
	ln       net.Listener
	addr     netip.AddrPort
	server   *fasthttp.Server
	requests *prometheus.CounterVec
}

// NewFallback listens at once, so that Addr can be handed to the loader
// before Run.
func NewFallback(cfg FallbackConfig, deps FallbackDeps) (*Fallback, error) {
	if deps.Origins == nil || deps.Functions == nil || deps.Server == nil {
		return nil, errors.New("bpfsync: FallbackDeps.Origins, Functions and Server are required")
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
			Help: "Requests on connects to cold VIPs, by outcome: served through the function's split, or unknown origin.",
		}, []string{"outcome"}),
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if err := reg.Register(f.requests); err != nil {
		return nil, fmt.Errorf("bpfsync: register fallback metrics: %w", err)
	}
	ln, err := net.Listen("tcp4", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("bpfsync: fallback listen %s: %w", cfg.Addr, err)
	}
	f.ln = ln
	f.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	f.addr = netip.AddrPortFrom(f.addr.Addr().Unmap(), f.addr.Port())
	f.server = &fasthttp.Server{
		Handler:                      f.handle,
		Name:                         "ebb",
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		NoDefaultDate:                true,
		ReadTimeout:                  cfg.ReadHeaderTimeout,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
	}
	return f, nil
}

// Addr is where the Fallback listens, for bpf.Loader.SetFallback.
func (f *Fallback) Addr() netip.AddrPort { return f.addr }

// Run serves until ctx ends, then lets requests in flight finish for a few
// seconds.
func (f *Fallback) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- f.server.Serve(f.ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("bpfsync: fallback serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f.server.ShutdownWithContext(sctx)
	<-served
	return nil
}

func (f *Fallback) handle(ctx *fasthttp.RequestCtx) {
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
	// The function is warm, or on its way: the client's next connect to
	// the VIP should go straight to a replica, not through here again.
	ctx.SetConnectionClose()
}

// origin names the function whose VIP the client dialed.
func (f *Fallback) origin(ctx *fasthttp.RequestCtx) (string, bool) {
	ta, ok := ctx.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return "", false
	}
	o, ok, err := f.deps.Origins.FallbackOrigin(ta.AddrPort())
	if err != nil || !ok {
		return "", false
	}
	return f.deps.Functions.FunctionByID(o.FunctionID)
}
