package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/internal/redisconn"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/embedded"
	"github.com/ebbrun/ebb/store/redis"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ebbd: %v\n", err)
		os.Exit(1)
	}
}

// run starts the configured role and blocks until ctx ends or a component
// fails; either way every component is stopped before it returns.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "teardown-network" {
		return teardownNetwork(ctx, args[1:], stderr)
	}
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logger := newLogger(cfg.LogLevel, stderr)
	redisconn.LogTo(logger)
	if lim, err := raiseOpenFileLimit(); err != nil {
		logger.Warn("cannot read the open-file limit", "err", err)
	} else {
		logger.Info("open-file limit", "soft", lim.Cur, "hard", lim.Max)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &daemon{cfg: cfg, log: logger, store: st, reg: reg}
	g, gctx := errgroup.WithContext(ctx)
	if err := d.start(gctx, g); err != nil {
		// Stop whatever started before the failure, then clean up.
		cancel()
		_ = g.Wait()
		d.close()
		return err
	}
	defer d.close()
	logger.Info("ebbd running", "role", cfg.Role, "node", cfg.NodeName, "api", cfg.APIAddr, "http", cfg.HTTPAddr, "store", storeName(cfg))
	err = g.Wait()
	logger.Info("ebbd stopped", "err", err)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func storeName(cfg Config) string {
	if cfg.Store == "embedded" {
		return "embedded:" + filepath.Join(cfg.DataDir, "state.db")
	}
	return "redis"
}

func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	if cfg.Store == "embedded" {
		st, err := embedded.Open(filepath.Join(cfg.DataDir, "state.db"), embedded.Options{})
		if err != nil {
			return nil, fmt.Errorf("open embedded store: %w", err)
		}
		return st, nil
	}
	st, err := redis.Open(ctx, cfg.Store, redis.Options{})
	if err != nil {
		return nil, fmt.Errorf("open redis store: %w", err)
	}
	return st, nil
}
