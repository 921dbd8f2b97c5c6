package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/accesslog"
	"github.com/ebbrun/ebb/controlplane"
	"github.com/ebbrun/ebb/internal/nodecred"
	"github.com/ebbrun/ebb/internal/tracing/otlp"
	"github.com/ebbrun/ebb/router"
	"github.com/ebbrun/ebb/store"
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
// process, when it keeps them, or in the control-plane role the routers
// that advertise theirs.
func (d *daemon) accessLogs() controlplane.LogReader {
	if d.remoteAccess != nil {
		return d.remoteAccess
	}
	if d.access == nil {
		return nil
	}
	return accessReader{d.access.Read}
}

// accessReader adapts an access log reader to the API's LogReader.
type accessReader struct {
	read func(ctx context.Context, w io.Writer, q accesslog.Query) error
}

func (a accessReader) Logs(ctx context.Context, w io.Writer, req controlplane.LogRequest) error {
	return a.read(ctx, w, accesslog.Query{Function: req.Function, Tail: req.Tail, Follow: req.Follow})
}

// routersAccess reads the access lines of the routers that advertise them
// in the store, with this control plane's node credential.
func (d *daemon) routersAccess() controlplane.LogReader {
	remote := &accesslog.Remote{
		Addrs: func(ctx context.Context) ([]string, error) {
			kvs, _, err := store.ListJSON[store.Router](ctx, d.store, store.PrefixRouters)
			if err != nil {
				return nil, err
			}
			var addrs []string
			for _, kv := range kvs {
				if kv.Value.AccessAddr != "" {
					addrs = append(addrs, kv.Value.AccessAddr)
				}
			}
			return addrs, nil
		},
		Token:  d.cred.String(),
		Client: &http.Client{},
	}
	return accessReader{remote.Read}
}

// advertiseAccess, in the router role with an access log, returns the
// handler the health server serves it with (to control planes only) and
// records this router's address in the store until ctx ends. Without an
// access log it returns nil.
func (d *daemon) advertiseAccess(ctx context.Context, g *errgroup.Group) (http.Handler, error) {
	if d.access == nil {
		return nil, nil
	}
	key := store.RouterKey(d.cfg.NodeName)
	rec := store.Router{Name: d.cfg.NodeName, AccessAddr: d.cfg.MetricsAddr}
	if _, err := d.store.Txn(ctx, store.PutJSON(key, rec, store.AnyVersion)); err != nil {
		return nil, fmt.Errorf("advertise the access log: %w", err)
	}
	g.Go(func() error {
		<-ctx.Done()
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := d.store.Txn(dctx, store.Delete(key, store.AnyVersion)); err != nil {
			d.log.Warn("withdraw the access log's address", "err", err)
		}
		return nil
	})
	verifier := &nodecred.Verifier{Store: d.store, Roles: []string{nodecred.RoleControlPlane}}
	return nodecred.Require(verifier, d.log.With("component", "accesslog"), d.access.Handler("")), nil
}
