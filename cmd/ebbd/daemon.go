package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/controlplane"
	"github.com/ebbrun/ebb/internal/containerdproc"
	"github.com/ebbrun/ebb/internal/imagestore"
	"github.com/ebbrun/ebb/store"
)

// daemon holds what the roles share while ebbd runs.
type daemon struct {
	cfg   Config
	log   *slog.Logger
	store store.Store
	reg   *prometheus.Registry

	// containerd is connected lazily by the roles that need it.
	containerd *containerd.Client
	closers    []func()
}

// close releases what start opened, last opened first.
func (d *daemon) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// start builds the components of the configured role and runs each in g.
func (d *daemon) start(ctx context.Context, g *errgroup.Group) error {
	switch d.cfg.Role {
	case RoleAll:
		return d.startAll(ctx, g)
	case RoleControlPlane:
		return d.startControlPlane(ctx, g)
	default:
		return fmt.Errorf("role %s is not available in this build yet", d.cfg.Role)
	}
}

func (d *daemon) startAll(ctx context.Context, g *errgroup.Group) error {
	return d.startControlPlane(ctx, g)
}

// startControlPlane runs the API server. It imports images into containerd,
// so it connects to (or starts) containerd too.
func (d *daemon) startControlPlane(ctx context.Context, g *errgroup.Group) error {
	client, err := d.connectContainerd(ctx, g)
	if err != nil {
		return err
	}
	importer, err := imagestore.New(client, imagestore.Config{})
	if err != nil {
		return err
	}
	token, err := controlplane.LoadOrCreateToken(filepath.Join(d.cfg.DataDir, "token"))
	if err != nil {
		return err
	}
	spool := filepath.Join(d.cfg.DataDir, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return fmt.Errorf("create spool dir: %w", err)
	}
	api, err := controlplane.New(controlplane.Config{
		Addr:       d.cfg.APIAddr,
		Token:      token,
		Domain:     d.cfg.Domain,
		RouterPort: portOf(d.cfg.HTTPAddr),
		SpoolDir:   spool,
	}, controlplane.Deps{
		Store:      d.store,
		Images:     importer,
		Logger:     d.log.With("component", "api"),
		Registerer: d.reg,
		Gatherer:   d.reg,
	})
	if err != nil {
		return err
	}
	// Bind now, so a port clash fails the start with a clear error.
	l, err := net.Listen("tcp", d.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api listen %s: %w", d.cfg.APIAddr, err)
	}
	g.Go(func() error { return api.Serve(ctx, l) })
	return nil
}

// connectContainerd returns a client for the configured containerd, or for
// a private one that ebbd starts and supervises when none answers.
func (d *daemon) connectContainerd(ctx context.Context, g *errgroup.Group) (*containerd.Client, error) {
	if d.containerd != nil {
		return d.containerd, nil
	}
	sup, err := containerdproc.New(containerdproc.Config{
		Address: d.cfg.ContainerdAddress,
		DataDir: filepath.Join(d.cfg.DataDir, "containerd"),
	}, d.log.With("component", "containerd"))
	if err != nil {
		return nil, err
	}
	addr, err := sup.Start(ctx)
	if err != nil {
		return nil, err
	}
	g.Go(func() error { return sup.Run(ctx) })
	client, err := containerd.New(addr, containerd.WithTimeout(10*time.Second))
	if err != nil {
		sup.Stop()
		return nil, fmt.Errorf("connect containerd at %s: %w", addr, err)
	}
	d.containerd = client
	d.closers = append(d.closers, func() { client.Close() })
	return client, nil
}

// serveHealth serves /healthz, /readyz and /metrics for roles that do not
// run the API, which serves them itself.
func (d *daemon) serveHealth(ctx context.Context, g *errgroup.Group) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := d.store.Get(r.Context(), "readyz"); err != nil && !isNotFound(err) {
			http.Error(w, "store unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	l, err := net.Listen("tcp", d.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", d.cfg.MetricsAddr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		go func() {
			<-ctx.Done()
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdownCtx)
		}()
		if err := srv.Serve(l); err != http.ErrServerClosed {
			return fmt.Errorf("metrics serve: %w", err)
		}
		return nil
	})
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// portOf returns the port of a host:port address, for building URLs.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
