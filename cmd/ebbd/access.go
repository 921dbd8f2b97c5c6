package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/accesslog"
	"github.com/ebbrun/ebb/controlplane"
	"github.com/ebbrun/ebb/internal/tracing/otlp"
	"github.com/ebbrun/ebb/router"
)

// startObservability opens the router's access log and trace exporter as
// configured, runs them in g, and sets the router's deps. With neither
// configured it leaves deps alone: the router then neither times nor
// traces requests.
func (d *daemon) startObservability(ctx context.Context, g *errgroup.Group, deps *router.Deps) error {
	if d.cfg.AccessLog != "" {
		l, err := accesslog.New(d.cfg.accessLogConfig(), os.Stdout)
		if err != nil {
			return fmt.Errorf("access log: %w", err)
		}
		d.access = l
		deps.AccessLog = l
		g.Go(func() error { return l.Run(ctx) })
	}
	if d.cfg.OTLPEndpoint != "" {
		exp, err := otlp.New(ctx, otlp.Config{Endpoint: d.cfg.OTLPEndpoint})
		if err != nil {
			return err
		}
		deps.Tracer = exp
		g.Go(func() error {
			<-ctx.Done()
			// The last spans get a few seconds to leave.
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := exp.Shutdown(sctx); err != nil {
				d.log.Warn("trace exporter shutdown", "err", err)
			}
			return nil
		})
	}
	return nil
}

// accessLogs is what the API reads access lines from: the router in this
// process, when it keeps them.
func (d *daemon) accessLogs() controlplane.LogReader {
	if d.access == nil {
		return nil
	}
	return accessReader{d.access}
}

// accessReader adapts the router's access log to the API's LogReader.
type accessReader struct{ log *accesslog.Logger }

func (a accessReader) Logs(ctx context.Context, w io.Writer, req controlplane.LogRequest) error {
	return a.log.Read(ctx, w, accesslog.Query{Function: req.Function, Tail: req.Tail, Follow: req.Follow})
}
